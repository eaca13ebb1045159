"""The Makefile's habit targets (issue 27): install, test, lint and bench exist and do what they say;
``make lint`` runs the static checks (ruff, mypy, import-linter: tools/lint.sh, also the first step
of tools/test.sh) over the repository and passes (dev extra)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", f"PYTHON={sys.executable}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_habit_targets_name_the_commands() -> None:
    r = _make("-n", "install", "test", "lint", "bench")
    assert r.returncode == 0, r.stderr
    assert f"{sys.executable} -m pip install torch==2.13.0 -e '.[dev]'" in r.stdout
    assert f"PYTHON={sys.executable} bash tools/test.sh" in r.stdout
    assert f"bash tools/lint.sh {sys.executable}" in r.stdout and "bench.gates" in r.stdout
    r = _make("-n", "install", "EXTRAS=", "TORCH=")  # a runtime-only device: no torch, no extras
    assert r.stdout.split() == [sys.executable, "-m", "pip", "install", "-e", "'.'"], r.stdout


def test_make_lint_passes() -> None:
    r = _make("lint")
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "All checks passed" in r.stdout, out  # ruff check
    assert "Success: no issues found" in r.stdout, out  # mypy
    assert re.search(r"Contracts: \d+ kept, 0 broken\.", r.stdout), out  # import-linter


def test_test_command_runs_the_static_checks_first() -> None:
    """tools/test.sh: the static checks are its first suite, before the unit tests."""
    text = (REPO / "tools" / "test.sh").read_text()
    assert text.index("bash tools/lint.sh") < text.index('step "unit tests"')
    lint = (REPO / "tools" / "lint.sh").read_text()
    for tool in ("-m ruff check .", "-m ruff format --check .", "-m mypy", "lint_imports_command"):
        assert tool in lint, tool


def test_each_optional_package_is_in_the_extra_its_message_names() -> None:
    """runtime.errors.EXTRAS (the one-line "install the X extra" message) against pyproject.toml."""
    import re

    import tomllib

    from runtime.errors import EXTRAS

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    dist = {"gi": "pygobject"}  # import name -> distribution name, where they differ

    def names(reqs: list[str]) -> set[str]:
        return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in reqs}

    extras = {k: names(v) for k, v in project["optional-dependencies"].items()}
    assert not {dist.get(m, m) for m in EXTRAS} & names(project["dependencies"]), (
        "an optional package is core"
    )
    for module, extra in EXTRAS.items():
        assert dist.get(module, module) in extras[extra], (module, extra)
    assert {"dynpose-trt"} <= extras["dev"]  # dev = build + eval + triton + the test tools
    assert "dynpose-trt[build,eval,triton]" in project["optional-dependencies"]["dev"]


def test_a_missing_optional_package_is_one_line_naming_its_extra(capsys) -> None:
    from runtime.errors import EXIT_INCOMPLETE, guarded

    def needs_motmetrics(argv: list[str]) -> int:
        raise ModuleNotFoundError("No module named 'motmetrics'", name="motmetrics")

    assert guarded(needs_motmetrics, []) == EXIT_INCOMPLETE
    err = capsys.readouterr().err
    assert err == (
        "error: python package motmetrics is not installed (the eval extra): "
        "pip install 'dynpose-trt[eval]' (in a clone: pip install -e '.[eval]')\n"
    )

    def needs_something_else(argv: list[str]) -> int:  # not an optional package of ours: a bug
        raise ModuleNotFoundError("No module named 'nosuch'", name="nosuch")

    assert guarded(needs_something_else, []) == 1 and "internal error" in capsys.readouterr().err
