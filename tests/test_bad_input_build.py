"""Bad-input corpus for the build commands (issue 15, build half).

Subprocess cases and the rebuilds (late failure, signals) are marked ``slow``
(they each start an interpreter with torch); the rest run in the unit step.
Every case runs a real command (``python -m ...`` subprocesses for one case per
command, the same ``cli()`` boundary in-process for the rest) and asserts: the
documented exit code, exactly one ``error:`` line that names the input, no
traceback, and that what existed before (a real artifacts folder built once
per module) is still loadable and bit-identical, with no staging folder left.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from build.engines import cli as engines_cli
from build.router import cli as router_cli
from build.synth.__main__ import cli as synth_cli
from build.train.fixtures import cli as fixtures_cli
from runtime.artifacts.manifest import load_manifest

REPO = Path(__file__).resolve().parents[1]
CONFIG = "fixture-dyn"


# -- helpers ---------------------------------------------------------------------------------------
def snapshot(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under ``folder`` (bit-identity check)."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def error_line(stderr: str, code: int, rc: int, needle: str) -> str:
    assert rc == code, f"exit {rc}, expected {code}; stderr:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1, f"expected one error line, got {lines}"
    assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def run_module(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_untouched(out_root: Path, before: dict[str, str]) -> None:
    final = out_root / f"{CONFIG}-cpu"
    assert snapshot(final) == before
    assert [p.name for p in out_root.iterdir()] == [final.name], "a staging folder was left behind"
    load_manifest(final)  # still loadable, every sha256 still matches


# -- one real build per module ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, coco_mini: Path) -> tuple[Path, dict[str, str]]:
    out = tmp_path_factory.mktemp("rel-build")
    assert (
        engines_cli(
            ["--config", CONFIG, "--target", "cpu", "--out", str(out), "--calib-data", str(coco_mini)]
        )
        == 0
    )
    return out, snapshot(out / f"{CONFIG}-cpu")


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory, coco_mini: Path) -> dict[str, Path]:
    """Real bad inputs on disk: broken checkpoints, broken calibration folders."""
    d = tmp_path_factory.mktemp("bad")
    from build.configs import get_config
    from build.models import build_pose_net

    cfg = get_config(CONFIG)
    small_sd = build_pose_net(cfg.small.arch, cfg.small.head).state_dict()
    large_sd = build_pose_net(cfg.large.arch, cfg.large.head).state_dict()
    f = {}
    (f.setdefault("garbage", d / "garbage.pth")).write_bytes(os.urandom(2048))
    (f.setdefault("text", d / "notes.pth")).write_text("not a checkpoint\n")
    torch.save({"state_dict": large_sd}, d / "full.pth")
    f["truncated"] = d / "truncated.pth"
    f["truncated"].write_bytes((d / "full.pth").read_bytes()[:4000])
    torch.save({"state_dict": small_sd}, f.setdefault("wrong_keys", d / "small_as_large.pth"))
    torch.save(
        {"state_dict": large_sd, "meta": argparse.Namespace(epoch=3)},
        f.setdefault("pickled", d / "pickled.pth"),
    )
    torch.save([1, 2, 3], f.setdefault("list", d / "list.pth"))
    torch.save({"state_dict": {}}, f.setdefault("empty", d / "empty.pth"))
    shapes = {k: torch.zeros(*(s + 1 for s in v.shape)) if v.ndim else v for k, v in small_sd.items()}
    torch.save({"state_dict": shapes}, f.setdefault("wrong_shape", d / "wrong_shape.pth"))
    (f.setdefault("empty_dir", d / "empty_dir")).mkdir()
    (f.setdefault("txt", d / "calib.txt")).write_text("x")
    bad_json = d / "bad_json"
    bad_json.mkdir()
    (bad_json / "person_keypoints.json").write_text("{not json")
    f["bad_json"] = bad_json
    no_imgs = d / "no_images"
    no_imgs.mkdir()
    for name in ("person_keypoints.json", "person_detections.json"):
        shutil.copy(coco_mini / name, no_imgs / name)
    f["no_images"] = no_imgs
    (f.setdefault("file", d / "a_file")).write_text("x")
    return f


# -- build.engines: refused at the edge (argparse types), nothing touched -------------------------
EDGE_CASES = {
    "p-over-100": (["--p", "150"], "--p"),
    "p-negative": (["--p", "-1"], "--p"),
    "p-not-a-number": (["--p", "half"], "--p"),
    "theta-over-1": (["--theta", "1.5"], "--theta"),
    "theta-nan": (["--theta", "nan"], "--theta"),
    "seed-negative": (["--seed", "-3"], "--seed"),
    "opset-too-old": (["--opset", "5"], "--opset"),
    "calib-data-missing": (["--calib-data", "/nonexistent/coco"], "--calib-data"),
    "large-ckpt-missing": (["--large-ckpt", "/nonexistent/large.pth"], "--large-ckpt"),
    "calib-max-crops-zero": (["--calib-max-crops", "0"], "--calib-max-crops"),
    "max-batch-pose-zero": (["--max-batch-pose", "0"], "--max-batch-pose"),
    "workspace-negative": (["--workspace-mb", "-5"], "--workspace-mb"),
    "target-unknown": (["--target", "tpu"], "--target"),
    "precision-unknown": (["--precision", "int4"], "--precision"),
    "unknown-flag": (["--bogus"], "--bogus"),
    "config-unknown": (["--config", "nope"], "--config"),
    "dla-bogus": (["--target", "orin", "--dla", "yes"], "--dla"),
}


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_engines_edge_refusals(case: str, built, capfd) -> None:
    out, before = built
    argv, needle = EDGE_CASES[case]
    if case != "config-unknown":
        argv = ["--config", CONFIG, *argv]
    rc = engines_cli([*argv, "--out", str(out)])
    error_line(capfd.readouterr().err, 2, rc, needle)
    assert_untouched(out, before)


# -- build.engines: refused after parsing, still before any export --------------------------------
FILE_CASES = {
    "large-ckpt-random-bytes": ("--large-ckpt", "garbage", "not a PyTorch checkpoint"),
    "large-ckpt-text": ("--large-ckpt", "text", "not a PyTorch checkpoint"),
    "large-ckpt-truncated": ("--large-ckpt", "truncated", "damaged"),
    "large-ckpt-wrong-keys": ("--large-ckpt", "wrong_keys", "does not fit the large network"),
    "large-ckpt-needs-unpickling": ("--large-ckpt", "pickled", "--trust-checkpoint"),
    "large-ckpt-a-list": ("--large-ckpt", "list", "no state_dict"),
    "large-ckpt-empty-dict": ("--large-ckpt", "empty", "no state_dict"),
    "small-ckpt-wrong-shapes": ("--small-ckpt", "wrong_shape", "wrong shape"),
    "large-ckpt-is-a-folder": ("--large-ckpt", "empty_dir", "--large-ckpt"),
    "calib-data-empty-folder": ("--calib-data", "empty_dir", "--calib-data"),
    "calib-data-text-file": ("--calib-data", "txt", "--calib-data"),
    "calib-data-bad-json": ("--calib-data", "bad_json", "--calib-data"),
    "calib-data-images-missing": ("--calib-data", "no_images", "--calib-data"),
    "out-is-a-file": ("--out", "file", "--out"),
}


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_engines_bad_files(case: str, built, bad_files, capfd) -> None:
    out, before = built
    flag, key, needle = FILE_CASES[case]
    argv = ["--config", CONFIG, "--target", "cpu", flag, str(bad_files[key])]
    if flag != "--out":
        argv += ["--out", str(out)]
    rc = engines_cli(argv)
    line = error_line(capfd.readouterr().err, 2, rc, needle)
    if flag.endswith("-ckpt"):
        assert flag in line and str(bad_files[key]) in line  # names the flag and the file
    assert_untouched(out, before)


def test_bad_checkpoint_is_refused_before_any_export(bad_files, tmp_path) -> None:
    """API: export_all loads every checkpoint first, so a bad --large-ckpt writes no ONNX at all."""
    from build.artifacts import export_all
    from build.checkpoint import CheckpointMismatch
    from build.configs import get_config

    with pytest.raises(CheckpointMismatch, match="--large-ckpt"):
        export_all(get_config(CONFIG), tmp_path, {"large": str(bad_files["wrong_keys"])})
    assert list(tmp_path.iterdir()) == []


def test_trust_checkpoint_loads_what_weights_only_refuses(bad_files) -> None:
    from build.checkpoint import CheckpointUnreadable, load_strict
    from build.configs import get_config
    from build.models import build_pose_net

    cfg = get_config(CONFIG)
    net = build_pose_net(cfg.large.arch, cfg.large.head)
    with pytest.raises(CheckpointUnreadable, match="full unpickling"):
        load_strict(net, bad_files["pickled"], "large")
    assert load_strict(net, bad_files["pickled"], "large", trust=True)["source"] == "checkpoint"


# -- real subprocesses: one per command ------------------------------------------------------------
@pytest.mark.slow
def test_engines_subprocess_p150_and_garbage_ckpt(built, bad_files) -> None:
    out, before = built
    r = run_module("build.engines", "--config", CONFIG, "--out", str(out), "--p", "150")
    error_line(r.stderr, 2, r.returncode, "--p")
    r = run_module(
        "build.engines", "--config", CONFIG, "--out", str(out), "--large-ckpt", str(bad_files["garbage"])
    )
    error_line(r.stderr, 2, r.returncode, "--large-ckpt")
    assert_untouched(out, before)


@pytest.mark.slow
def test_debug_prints_the_traceback(built, bad_files) -> None:
    out, before = built
    r = run_module(
        "build.engines",
        "--config",
        CONFIG,
        "--out",
        str(out),
        "--large-ckpt",
        str(bad_files["wrong_keys"]),
        "--debug",
    )
    assert r.returncode == 2 and "Traceback" in r.stderr and "CheckpointMismatch" in r.stderr
    assert_untouched(out, before)


@pytest.mark.slow
def test_other_commands_subprocess(tmp_path) -> None:
    for module, args, needle in (
        ("build.router", ["--config", CONFIG, "--data", "/nope.json", "--images", "."], "--data"),
        ("build.train.fixtures", ["--scale", "0", "--out", str(tmp_path)], "--scale"),
        ("build.synth", ["--out", str(tmp_path / "s"), "--n-images", "0"], "--n-images"),
    ):
        r = run_module(module, *args)
        error_line(r.stderr, 2, r.returncode, needle)
    assert list(tmp_path.iterdir()) == []


# -- build.router / build.train.fixtures / build.synth in-process ----------------------------------
@pytest.fixture(scope="module")
def tiny_coco(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from build.synth.coco import write_dataset

    return write_dataset(tmp_path_factory.mktemp("coco"), 2, seed=1, photos=[])


ROUTER_CASES = {
    "data-missing": (["--data", "/nope.json"], "--data"),
    "images-not-a-folder": (["--images", "{file}"], "--images"),
    "epochs-zero": (["--epochs", "0"], "--epochs"),
    "jitter-negative": (["--jitter", "-1"], "--jitter"),
    "max-images-zero": (["--max-images", "0"], "--max-images"),
    "data-not-json": (["--data", "{file}"], "--data"),
    "data-json-list": (["--data", "{list_json}"], "--data"),
    "dets-json-object": (["--dets", "{kp}"], "--dets"),
    "large-ckpt-garbage": (["--large-ckpt", "{garbage}"], "--large-ckpt"),
    "out-is-a-file": (
        ["--out", "{file}"],
        "--out",
    ),  # --out is a folder (DIR/router.pth) since the dynpose round
    "images-missing": (["--images", "{empty_dir}"], "--images"),
}


@pytest.mark.parametrize("case", sorted(ROUTER_CASES))
def test_router_refusals(case: str, tiny_coco, bad_files, tmp_path, capfd) -> None:
    (tmp_path / "list.json").write_text("[1, 2]")
    fill = {
        "file": bad_files["file"],
        "list_json": tmp_path / "list.json",
        "kp": tiny_coco["keypoints"],
        "garbage": bad_files["garbage"],
        "dir": tmp_path,
        "empty_dir": bad_files["empty_dir"],
    }
    extra, needle = ROUTER_CASES[case]
    extra = [a.format(**fill) for a in extra]
    out = tmp_path / "router.pth"
    base = {
        "--config": CONFIG,
        "--data": str(tiny_coco["keypoints"]),
        "--images": str(tiny_coco["images"]),
        "--out": str(out),
        "--epochs": "1",
    }
    for k, v in zip(extra[::2], extra[1::2]):
        base[k] = v
    rc = router_cli([x for kv in base.items() for x in kv])
    error_line(capfd.readouterr().err, 2, rc, needle)
    assert not out.exists()


FIXTURE_CASES = {
    "scale-zero": (["--scale", "0"], "--scale"),
    "threads-zero": (["--threads", "0"], "--threads"),
    "resume-unknown-role": (["--resume", "medium"], "--resume"),
    "minutes-one-number": (["--minutes", "1"], "--minutes"),
    "theta-over-1": (["--theta", "2"], "--theta"),
    "eval-only-without-fixtures": (["--eval-only"], "--out"),
    "reuse-garbage-checkpoint": (["--reuse", "small"], "--out"),
    "photos-missing": (["--photos", "/nonexistent/photos"], "--photos"),
    "config-unknown": (["--config", "nope"], "--config"),
    "config-not-a-fixture": (["--config", "dyn-r50-h32"], "--config"),
    "config-two-files-for-a-net": (["--config", "fixture-dyn-dh"], "--config"),
    "config-rtm-nets-missing": (["--config", "fixture-rtm", "--reuse", "small,large"], "--out"),
    "config-rtm-would-train-simcc": (["--config", "fixture-rtm", "--reuse", "small"], "--reuse"),
}


@pytest.mark.parametrize("case", sorted(FIXTURE_CASES))
def test_fixtures_refusals(case: str, tmp_path, bad_files, capfd) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    out.mkdir()
    if case == "reuse-garbage-checkpoint":
        shutil.copy(bad_files["garbage"], out / "small.pth")
    extra, needle = FIXTURE_CASES[case]
    rc = fixtures_cli(["--out", str(out), "--work", str(work), "--scale", "0.01", *extra])
    error_line(capfd.readouterr().err, 2, rc, needle)
    assert not work.exists(), "synthetic sets were drawn before the input was checked"


SYNTH_CASES = {
    "n-images-zero": (["--n-images", "0"], "--n-images"),
    "seed-negative": (["--seed", "-1"], "--seed"),
    "photos-missing": (["--photos", "/nonexistent/photos"], "--photos"),
    "out-is-a-file": (["--out", "{file}"], "--out"),
    "level-unknown": (["--level", "extreme"], "--level"),
}


@pytest.mark.parametrize("case", sorted(SYNTH_CASES))
def test_synth_refusals(case: str, tmp_path, bad_files, capfd) -> None:
    extra, needle = SYNTH_CASES[case]
    argv = ["--out", str(tmp_path / "s"), *[a.format(file=bad_files["file"]) for a in extra]]
    rc = synth_cli(argv)
    error_line(capfd.readouterr().err, 2, rc, needle)
    assert not (tmp_path / "s").exists()


# -- transactional rebuilds: late failure and signals ----------------------------------------------
@pytest.mark.slow
def test_failed_late_rebuild_leaves_the_folder_bit_identical(built, tmp_path, capfd) -> None:
    """``--require-trt`` without TensorRT fails only after export, routing and calibration ran
    (exit 3): the folder it would replace stays bit-identical and loadable."""
    out, _ = built
    prev = tmp_path / f"{CONFIG}-orin"
    shutil.copytree(out / f"{CONFIG}-cpu", prev)
    before = snapshot(prev)
    rc = engines_cli(
        [
            "--config",
            CONFIG,
            "--target",
            "orin",
            "--precision",
            "fp32",
            "--require-trt",
            "--seed",
            "7",
            "--out",
            str(tmp_path),
        ]
    )
    error_line(capfd.readouterr().err, 3, rc, "TensorRT engines not built")
    assert snapshot(prev) == before
    assert [p.name for p in tmp_path.iterdir()] == [prev.name]
    load_manifest(prev)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["sigterm", "sigint"])
def test_signal_mid_rebuild_keeps_the_old_artifacts(built, tmp_path, sig, code) -> None:
    out, _ = built
    root = tmp_path / "out"
    shutil.copytree(out / f"{CONFIG}-cpu", root / f"{CONFIG}-cpu")
    before = snapshot(root / f"{CONFIG}-cpu")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # A job started with `&` by a non-interactive shell (as CI runners do) inherits SIGINT
    # *ignored* (POSIX), and Python then keeps ignoring it; a terminal's Ctrl-C reaches a process
    # with the default disposition, which is what this test is about, so the child gets that.
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "build.engines",
            "--config",
            CONFIG,
            "--target",
            "cpu",
            "--out",
            str(root),
            "--seed",
            "5",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:  # wait until it has written an ONNX
        if any(root.glob(f".{CONFIG}-cpu.staging-*/*.onnx")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the build ended before it could be interrupted"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    error_line(err, code, proc.returncode, "") if code == 143 else None
    assert proc.returncode == code and "Traceback" not in err, err
    assert snapshot(root / f"{CONFIG}-cpu") == before
    assert [p.name for p in root.iterdir()] == [f"{CONFIG}-cpu"], "staging folder left behind"


def test_stale_staging_of_a_killed_build_is_removed(tmp_path) -> None:
    from build.staging import StagedDir

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".a.staging-{dead.pid}-beef"
    stale.mkdir()
    (stale / "x.onnx").write_bytes(b"half")
    with StagedDir(tmp_path / "a") as st:
        (st.path / "m.json").write_text("{}")
        st.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"] and (tmp_path / "a" / "m.json").is_file()


SWALLOWED = """
import os, signal, sys
from pathlib import Path
from build.staging import StagedDir
root = Path(sys.argv[1])
(root / "a").mkdir(); (root / "a" / "old").write_text("old")
with StagedDir(root / "a") as st:
    (st.path / "new").write_text("new")
    try:                      # a library's own except BaseException swallows the signal's exception
        os.kill(os.getpid(), getattr(signal, sys.argv[2]))
    except BaseException:
        pass
    st.commit()
"""


@pytest.mark.parametrize("sig,code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_swallowed_signal_still_blocks_the_commit(tmp_path, sig, code) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from runtime.errors import guarded\n"
            f"import sys\nsys.exit(guarded(lambda a: exec({SWALLOWED!r}), []))",
            str(tmp_path),
            sig,
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        preexec_fn=_default_sigint,
        timeout=60,
    )
    assert proc.returncode == code and "Traceback" not in proc.stderr, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"] and (tmp_path / "a" / "old").is_file()
