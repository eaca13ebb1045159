"""Load-time verification of artifacts (issue 15): a tampered or swapped file, a malformed or
incomplete manifest, and engine records written after a trtexec build.

Each case edits a copy of the session's real CPU artifacts (conftest ``cpu_artifacts``) and
asserts the one-line ManifestError that names the file or field and the rebuild command.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.artifacts.manifest import ManifestError, load_manifest

REPO = Path(__file__).resolve().parents[1]


def error_line(stderr: str, code: int, rc: int, needle: str) -> str:
    assert rc == code, f"exit {rc}, expected {code}; stderr:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1, f"expected one error line, got {lines}"
    assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


# -- load-time verification ------------------------------------------------------------------------
def _copy(built: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "art"
    shutil.copytree(built, dst)
    return dst


def test_tampered_onnx_is_refused_at_load_with_the_rebuild_command(cpu_artifacts, tmp_path) -> None:
    art = _copy(cpu_artifacts, tmp_path)
    load_manifest(art)  # cached hash of the good file
    data = bytearray((art / "small.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the content changes
    (art / "small.onnx").write_bytes(bytes(data))
    with pytest.raises(
        ManifestError, match=r"small.onnx does not match.*rebuild with python -m build.engines"
    ):
        load_manifest(art)


def test_another_builds_onnx_is_refused(cpu_artifacts, tmp_path) -> None:
    art = _copy(cpu_artifacts, tmp_path)
    shutil.copy(art / "router.onnx", art / "large.onnx")
    with pytest.raises(ManifestError, match=r"models.large.onnx"):
        load_manifest(art)


@pytest.mark.slow
def test_tampered_artifacts_refused_by_the_runtime_cli(cpu_artifacts, tmp_path, coco_mini) -> None:
    art = _copy(cpu_artifacts, tmp_path)
    (art / "router.onnx").write_bytes((art / "router.onnx").read_bytes()[:-10])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from runtime.errors import guarded; from runtime.images "
            "import main; sys.exit(guarded(main, sys.argv[1:], prog='python -m runtime.images'))",
            "--engines",
            str(art),
            "--images",
            str(coco_mini),
            "--dets",
            str(coco_mini / "person_detections.json"),
            "--out",
            str(tmp_path / "r.json"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    error_line(r.stderr, 2, r.returncode, "router.onnx")
    assert not (tmp_path / "r.json").exists()


MANIFEST_EDITS = {
    "no-routing": (lambda m: m.pop("routing"), "routing"),
    "k1-above-k2": (lambda m: m["routing"].update(k1=0.9, k2=0.1), "k1"),
    "k2-string": (lambda m: m["routing"].update(k2="0.5"), "routing.k2"),
    "no-small": (lambda m: m["models"].pop("small"), "models.small"),
    "onnx-escapes-folder": (lambda m: m["models"]["small"].update(onnx="../small.onnx"), "models.small.onnx"),
    "onnx-absolute": (lambda m: m["models"]["small"].update(onnx="/etc/passwd"), "models.small.onnx"),
    "no-sha256": (lambda m: m["models"]["router"].pop("sha256"), "models.router.sha256"),
    "head-missing": (lambda m: m["models"]["large"].pop("head"), "models.large.head"),
    "schema-version-2": (lambda m: m.update(schema_version=2), "schema_version"),
    "models-a-list": (lambda m: m.update(models=[]), "models"),
    "detector-role-file-missing": (
        lambda m: m["models"].update(detector={"onnx": "det.onnx", "sha256": "0" * 64}),
        "det.onnx",
    ),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_EDITS))
def test_manifest_schema_refusals(case: str, cpu_artifacts, tmp_path) -> None:
    art = _copy(cpu_artifacts, tmp_path)
    m = json.loads((art / "manifest.json").read_text())
    edit, needle = MANIFEST_EDITS[case]
    edit(m)
    (art / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError) as e:
        load_manifest(art)
    assert needle in str(e.value) and "\n" not in str(e.value) and "build.engines" in str(e.value)


def test_extra_role_is_accepted_when_valid(cpu_artifacts, tmp_path) -> None:
    from runtime.artifacts.manifest import sha256_file

    art = _copy(cpu_artifacts, tmp_path)
    m = json.loads((art / "manifest.json").read_text())
    shutil.copy(art / "router.onnx", art / "detector.onnx")
    m["models"]["detector"] = {"onnx": "detector.onnx", "sha256": sha256_file(art / "detector.onnx")}
    (art / "manifest.json").write_text(json.dumps(m))
    assert set(load_manifest(art)["models"]) == {"router", "small", "large", "detector"}


def test_plan_records_keep_loading_with_engine_hashes(tmp_path, monkeypatch) -> None:
    """build_plan.sh -> build.trt.record writes engine sha256s; the runtime checks them at load."""
    import builtins

    from build.trt import add_trt_arguments, build_or_plan
    from calib.stage import add_calib_arguments
    from tools.device_check.tiny_artifacts import make_artifacts

    real_import = builtins.__import__

    def no_tensorrt(name, *a, **k):  # this machine may have the harness bindings on its path
        if name == "tensorrt":
            raise ImportError("no tensorrt")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_tensorrt)
    root = tmp_path / "dyn-test-orin"
    manifest = make_artifacts(root, int8_router=False)
    p = argparse.ArgumentParser()
    add_calib_arguments(p)
    add_trt_arguments(p)
    assert build_or_plan(root, manifest, p.parse_args(["--target", "orin", "--dla", "off"])) == 0
    (root / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(builtins, "__import__", real_import)
    trtexec = tmp_path / "trtexec"
    trtexec.write_text(
        '#!/usr/bin/env bash\nfor a in "$@"; do case "$a" in --saveEngine=*) o="${a#--saveEngine=}";; '
        'esac; done\necho "[I] Selected Device: Orin"\necho "[I] Compute Capability: 8.7"\n'
        'echo "[I] TensorRT version: 10.3.0"\necho "$*" > "$o"\n'
    )
    trtexec.chmod(0o755)
    env = {**os.environ, "TRTEXEC": str(trtexec), "DYNPOSE_REPO": str(REPO)}
    run = subprocess.run(
        ["bash", str(root / "build_plan.sh")], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    m = load_manifest(root)
    assert all(len(m["models"][r]["engine"]["sha256"]) == 64 for r in ("router", "small", "large"))
    (root / "small.engine").write_text("swapped")
    with pytest.raises(ManifestError, match="models.small.engine"):
        load_manifest(root)
