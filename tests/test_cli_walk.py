"""Every command, both ways it is started (``python -m X`` and ``dynpose ...``): ``--help`` exits 0 and
one bad input each gives exactly one stderr line with the documented exit code, no traceback.

Why one module for all of them: a new entry point that skips the shared parser or the error boundary
shows up here (the discovery test fails until it has a case). The bad inputs are refused by the
parsers, before any network is loaded, so the whole walk costs process start-ups only; the
subprocesses run in parallel.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("build", "runtime", "calib", "bench", "tools", "tests/trt_harness")
TIMEOUT_S = 90


def _inputs(root: Path) -> dict[str, str]:
    """The bad inputs' files: an empty folder, a file, a folder with a (fake) manifest.json, JSON files."""
    (root / "empty").mkdir()
    (root / "file.txt").write_text("x")
    (root / "fake_art").mkdir()
    (root / "fake_art" / "manifest.json").write_text("{}")
    (root / "bad.json").write_text("{not json")
    (root / "list.json").write_text("[]")
    (root / "gt_empty.json").write_text('{"images": [], "annotations": [], "categories": []}')
    return {
        k: str(root / v)
        for k, v in (
            ("T", "."),
            ("EMPTY", "empty"),
            ("FILE", "file.txt"),
            ("ART", "fake_art"),
            ("BAD", "bad.json"),
            ("LIST", "list.json"),
            ("GT0", "gt_empty.json"),
        )
    }


# python -m module -> (one bad input, exit code, text the error line must hold); {X} are _inputs' paths
CASES: dict[str, tuple[list[str], int, str]] = {
    "build.engines": (["--out", "{T}/o", "--triton-instances", "0"], 2, "--triton-instances"),
    "build.router": (
        ["--config", "fixture-dyn", "--data", "{T}/nope.json", "--images", "{EMPTY}"],
        2,
        "--data",
    ),
    "build.synth": (["--video", "{T}/v", "--seed", "-1"], 2, "--seed"),
    "build.train.fixtures": (["--minutes", "x"], 2, "--minutes"),
    "build.train.rtm_fixture": (["--minutes", "x"], 2, "--minutes"),
    "build.train.detector": (["--iters", "x"], 2, "--iters"),
    "build.zoo": (["fetch", "nope-model"], 2, "nope-model"),
    "build.train.double": (["--eval-only", "--out", "{EMPTY}"], 2, "large-dh.onnx"),
    "build.triton_repo": (["--engines", "{EMPTY}", "--out", "{T}/repo"], 2, "manifest.json"),
    "build.trt.record": (["{EMPTY}"], 2, "manifest.json"),
    "calib.coverage": (["--engines", "{ART}", "--json", "{EMPTY}"], 2, "--json"),
    "runtime.pose.costs": (["{ART}", "--rounds", "x"], 2, "--rounds"),
    "runtime.images": (
        ["--engines", "{ART}", "--images", "{EMPTY}", "--dets", "{LIST}", "--credible", "1.5"],
        2,
        "--credible",
    ),
    "runtime.video": (
        ["--engines", "{ART}", "--source", "{FILE}", "--max-boxes", "0"],
        2,
        "--max-boxes",
    ),
    "bench.accuracy": (["--engines", "{ART}", "--work", "{T}/acc", "--json", "{EMPTY}"], 2, "--json"),
    "bench.coco_eval": (["--gt", "{GT0}", "--results", "{LIST}"], 2, "annotations"),
    "bench.ex_oks": (["--gt", "{GT0}", "--results", "{LIST}"], 2, "annotations"),
    "bench.cropcoco": (["--src", "{EMPTY}", "--out", "{T}/cc", "--strength", "2"], 2, "--strength"),
    "bench.sweep": (["--engines", "{T}/nope"], 2, "--engines"),
    "bench.conditions": (["--batch", "-1"], 2, "--batch"),
    "bench.detector_eval": (["--engines", "{T}/nope"], 2, "--engines"),
    "bench.gates": (["{LIST}", "--tolerance", "nan"], 2, "--tolerance"),
    "bench.results_page": (["{T}/nope.json"], 2, "nope.json"),
    "bench.track_eval": (["--clip", "{EMPTY}"], 2, "person_keypoints.json"),
    "bench.triton_serving": (["--engines", "{EMPTY}"], 2, "manifest.json"),
    "bench.video_eval": (["--gt", "{BAD}", "--jsonl", "{FILE}"], 2, "--gt"),
    "tools.device_check": (["--out", "{FILE}"], 2, "--out"),
    "tools.overlay_screenshot": (["--engines", "{EMPTY}"], 2, "manifest.json"),
    "tools.rtsp_server": (["--video", "{T}/nope.mp4"], 2, "--video"),
    "tools.triton_server": (["--repo", "{FILE}"], 2, "is not a folder"),
    "tests.trt_harness.probe": (["--major", "12"], 2, "--major"),
}
NOT_IN_DYNPOSE = {"tests.trt_harness.probe"}  # the TensorRT harness's own meta-test driver


def _fill(args: list[str], paths: dict[str, str]) -> list[str]:
    return [a.format(**paths) for a in args]


def entry_modules() -> set[str]:
    """Every module with a ``__main__`` guard or a ``__main__.py`` (package name for the latter)."""
    found = set()
    for pkg in PACKAGES:
        for f in (REPO / pkg).rglob("*.py"):
            text = f.read_text(errors="replace")
            if f.name == "__main__.py" or 'if __name__ == "__main__"' in text:
                mod = ".".join(f.relative_to(REPO).with_suffix("").parts)
                found.add(mod.removesuffix(".__main__"))
    return found - {"runtime.cli"}  # the dispatcher itself is walked below


def _run(cmd: list[str]) -> dict[str, Any]:
    try:
        p = subprocess.run(
            [sys.executable, *cmd],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            env=_env(),
        )
        return {"rc": p.returncode, "out": p.stdout, "err": p.stderr}
    except subprocess.TimeoutExpired:
        return {"rc": "timeout", "out": "", "err": f"no answer in {TIMEOUT_S} s"}


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(REPO), "DYNPOSE_DEBUG": "0"}


# one subprocess walks every dynpose subcommand in-process (one import of each module, not two per leaf)
_DYNPOSE_WALK = r"""
import contextlib, io, json, sys
from runtime.cli.main import COMMANDS, main
cases = json.loads(sys.argv[1])
res = {}
def leaves(table, path):
    for name, e in table.items():
        yield from (leaves(e, path + [name]) if isinstance(e, dict) else [(path + [name], e[0])])
for path, module in leaves(COMMANDS, []):
    for kind, extra in (("help", ["--help"]), ("bad", cases[module.removesuffix(".__main__")])):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(path + extra)
        res[" ".join(path) + " " + kind] = {"rc": rc, "out": out.getvalue(), "err": err.getvalue(), "module": module}
print(json.dumps(res))
"""


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    paths = _inputs(tmp_path_factory.mktemp("walk"))
    jobs = {f"{m} help": ["-m", m, "--help"] for m in CASES}
    jobs.update({f"{m} bad": ["-m", m, *_fill(CASES[m][0], paths)] for m in CASES})
    jobs["dynpose --help"] = ["-m", "runtime.cli", "--help"]
    jobs["dynpose (no command)"] = ["-m", "runtime.cli"]
    jobs["dynpose walk"] = [
        "-c",
        _DYNPOSE_WALK,
        json.dumps({m: _fill(a, paths) for m, (a, _, _) in CASES.items()}),
    ]
    with ThreadPoolExecutor(4) as ex:
        results = dict(zip(jobs, ex.map(_run, jobs.values())))
    walked = results["dynpose walk"]
    if walked["rc"] == 0:  # else the dynpose tests fail on it; the python -m ones still report
        results.update({f"dynpose {k}": v for k, v in json.loads(walked["out"].splitlines()[-1]).items()})
    return results


def assert_one_line(r: dict[str, Any], code: int, names: str) -> None:
    err = [line for line in r["err"].splitlines() if line.strip()]
    assert r["rc"] == code, f"exit {r['rc']}, wanted {code}; stderr:\n{r['err'][-3000:]}"
    assert "Traceback" not in r["err"] and "internal error" not in r["err"], r["err"][-3000:]
    assert len(err) == 1 and err[0].startswith("error: "), f"wanted one error line, got:\n{r['err'][-3000:]}"
    assert names in err[0], f"{names!r} not named in: {err[0]}"


def test_every_entry_point_has_a_case() -> None:
    assert entry_modules() == set(CASES)


@pytest.mark.parametrize("module", sorted(CASES))
def test_python_m_help_and_one_bad_input(walk: dict[str, dict[str, Any]], module: str) -> None:
    h = walk[f"{module} help"]
    assert h["rc"] == 0 and h["out"].startswith("usage: "), h["err"][-2000:]
    _, code, names = CASES[module]
    assert_one_line(walk[f"{module} bad"], code, names)


def test_dynpose_lists_every_subcommand(walk: dict[str, dict[str, Any]]) -> None:
    from runtime.cli.main import COMMANDS

    h = walk["dynpose --help"]
    assert h["rc"] == 0, h["err"]
    for name, entry in COMMANDS.items():
        assert re.search(rf"^  {re.escape(name)} ", h["out"], re.M), name
        if isinstance(entry, dict):
            assert " | ".join(entry) in h["out"]
    assert_one_line(walk["dynpose (no command)"], 2, "needs a command")
    covered = {
        e[0].removesuffix(".__main__")
        for v in COMMANDS.values()
        for e in (v.values() if isinstance(v, dict) else [v])
    }
    assert covered == set(CASES) - NOT_IN_DYNPOSE


def test_dynpose_subcommands_help_and_one_bad_input(walk: dict[str, dict[str, Any]]) -> None:
    assert walk["dynpose walk"]["rc"] == 0, walk["dynpose walk"]["err"][-2000:]
    leaves = {
        k.rsplit(" ", 1)[0]
        for k in walk
        if k.startswith("dynpose ") and k.endswith((" help", " bad")) and "module" in walk[k]
    }
    assert len(leaves) >= 20
    for leaf in sorted(leaves):
        h, bad = walk[f"{leaf} help"], walk[f"{leaf} bad"]
        assert h["rc"] == 0 and h["out"].startswith(f"usage: {leaf} "), (
            leaf,
            h["out"][:200],
            h["err"][-1000:],
        )
        _, code, names = CASES[bad["module"].removesuffix(".__main__")]
        assert_one_line(bad, code, names)
        assert f"see {leaf}" in bad["err"] or "--help" not in bad["err"], bad[
            "err"
        ]  # names the dynpose command


def test_dynpose_is_the_console_script() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, func = scripts["dynpose"].split(":")
    assert (module, func) == ("runtime.cli.main", "main")


def test_dynpose_unknown_and_missing_commands(capsys: pytest.CaptureFixture[str]) -> None:
    from runtime.cli.main import resolve
    from runtime.errors import InputError

    with pytest.raises(
        InputError, match="unknown command 'nope'.*choose one of build, router, images, video"
    ):
        resolve(["nope"])
    with pytest.raises(InputError, match="dynpose eval needs a command.*coco"):
        resolve(["eval"])
    entry, prog, rest = resolve(["eval", "coco", "--gt", "x"])
    assert (
        entry is not None
        and entry[0] == "bench.coco_eval"
        and prog == "dynpose eval coco"
        and rest == ["--gt", "x"]
    )


def test_dynpose_names_the_extra_a_missing_module_needs() -> None:
    from runtime.cli.main import load
    from runtime.errors import EXIT_INCOMPLETE, UserError

    with pytest.raises(UserError, match=r"dynpose x needs tools, which is not installed") as e:
        load(("tools.not_installed_here", "main", "python -m tools.not_installed_here", ""), "dynpose x")
    assert e.value.code == EXIT_INCOMPLETE
    with pytest.raises(ModuleNotFoundError):  # a bug (an unknown module), not a missing extra: not hidden
        load(("no_such_package_anywhere", "main", "", ""), "dynpose x")
