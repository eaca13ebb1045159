"""No TensorRT here: build_or_plan writes a valid build_plan.sh, prints one line, exits 0.

The plan is also *run* with a stand-in trtexec (a shell script that writes the
engine and prints trtexec's device lines) to prove the commands, the DLA ->
GPU fallback and the manifest records after a trtexec build.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from build.trt import add_trt_arguments, build_or_plan
from tools.trt_harness.artifacts import make_artifacts

REPO = Path(__file__).resolve().parents[1]


def _args(*argv: str) -> argparse.Namespace:
    """The build CLI's own flags (--precision comes from the calibration stage)."""
    from calib.stage import add_calib_arguments

    p = argparse.ArgumentParser()
    add_calib_arguments(p)
    add_trt_arguments(p)
    return p.parse_args(list(argv))


@pytest.fixture
def no_trt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError


@pytest.fixture
def planned(no_trt, tmp_path: Path, capsys):
    root = tmp_path / "dyn-test-orin"
    manifest = make_artifacts(root, plugin_large=True)
    rc = build_or_plan(root, manifest, _args("--target", "orin", "--plugin-lib", "/opt/dynpose/libdynpose_plugins.so"))
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))  # what build/engines.py does next
    return root, manifest, rc, capsys.readouterr()


def test_no_trt_prints_one_line_and_exits_0(planned) -> None:
    root, manifest, rc, out = planned
    assert rc == 0 and out.err == ""
    lines = out.out.strip().splitlines()
    assert len(lines) == 1
    assert "engines must be built on the device" in lines[0] and "no TensorRT Python bindings" in lines[0]
    assert f"--config dyn-test --target orin --out {root.parent}" in lines[0]
    assert str(root / "build_plan.sh") in lines[0]
    assert not any("engine" in m for m in manifest["models"].values())  # nothing claimed as built
    assert set(manifest["trt_plan"]["engines"]) == {"router", "small", "large"}


def test_plan_passes_bash_n_and_names_every_engine(planned) -> None:
    root, _, _, _ = planned
    plan = root / "build_plan.sh"
    assert subprocess.run(["bash", "-n", str(plan)], capture_output=True).returncode == 0
    text = plan.read_text()
    assert os.access(plan, os.X_OK)
    for role, onnx, shapes in [("router", "router.int8_trt.onnx", ("32", "32", "32")),
                               ("small", "small.onnx", ("1", "16", "64")),
                               ("large", "large.plugin.onnx", ("1", "16", "64"))]:
        cmd = re.search(rf'--onnx={re.escape(onnx)} \\\n(.*?)tee {role}.trtexec.log', text, re.S).group(1)
        assert f"--saveEngine={role}.engine" in cmd and "--stronglyTyped" in cmd
        for flag, n in zip(("min", "opt", "max"), shapes):
            assert f"--{flag}Shapes=input:{n}x3x256x192" in cmd
        assert "--memPoolSize=workspace:2048M" in cmd and '--timingCacheFile="$CACHE"' in cmd
        assert ("--useDLACore=0 \\\n    --allowGPUFallback" in cmd) == (role == "router")
        assert ('--dynamicPlugins="$PLUGIN_LIB"' in cmd) == (role == "large")
    assert "# router: int8" in text and "# small: fp32" in text and "# large: fp32 from large.plugin.onnx" in text
    assert "--fp16" not in text and "--int8" not in text          # removed in TensorRT 11
    assert 'export PLUGIN_LIB="${PLUGIN_LIB:-/opt/dynpose/libdynpose_plugins.so}"' in text


def test_require_trt_is_an_error(no_trt, tmp_path: Path, capsys) -> None:
    root = tmp_path / "x-orin"
    manifest = make_artifacts(root)
    assert build_or_plan(root, manifest, _args("--target", "orin", "--require-trt")) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: TensorRT engines not built") and (root / "build_plan.sh").is_file()


def test_cpu_target_needs_no_engines(no_trt, tmp_path: Path, capsys) -> None:
    root = tmp_path / "x-cpu"
    manifest = make_artifacts(root)
    assert build_or_plan(root, manifest, _args("--target", "cpu")) == 0
    assert not (root / "build_plan.sh").exists() and capsys.readouterr().out == ""


def test_bad_flags_name_the_fix(no_trt, tmp_path: Path) -> None:
    root = tmp_path / "x"
    manifest = make_artifacts(root, int8_router=False)
    with pytest.raises(SystemExit, match="--dla must be auto, off or a core index"):
        build_or_plan(root, manifest, _args("--target", "orin", "--dla", "yes"))
    with pytest.raises(SystemExit, match=r"router: no ONNX for precision 'int8'.*calibration"):
        build_or_plan(root, manifest, _args("--target", "orin", "--precision", "int8"))


FAKE_TRTEXEC = r"""#!/usr/bin/env bash
# stand-in for trtexec: prints the device lines trtexec prints, writes --saveEngine
for a in "$@"; do
  case "$a" in
    --saveEngine=*) out="${a#--saveEngine=}" ;;
    --useDLACore=*) [ -n "${FAIL_DLA:-}" ] && { echo "[E] DLA not available"; exit 1; } ;;
  esac
done
echo "[I] === Device Information ==="
echo "[I] Selected Device: Orin"
echo "[I] Compute Capability: 8.7"
echo "[I] TensorRT version: 10.3.0"
echo "$*" > "$out"
"""


@pytest.mark.parametrize("fail_dla", [False, True])
def test_running_the_plan_records_engines(planned, tmp_path: Path, fail_dla: bool) -> None:
    root, _, _, _ = planned
    trtexec = tmp_path / "trtexec"
    trtexec.write_text(FAKE_TRTEXEC)
    trtexec.chmod(0o755)
    lib = tmp_path / "libdynpose_plugins.so"
    lib.write_bytes(b"\x7fELF")
    env = {**os.environ, "TRTEXEC": str(trtexec), "DYNPOSE_REPO": str(REPO), "PLUGIN_LIB": str(lib),
           **({"FAIL_DLA": "1"} if fail_dla else {})}
    run = subprocess.run(["bash", str(root / "build_plan.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    manifest = json.loads((root / "manifest.json").read_text())
    router = manifest["models"]["router"]["engine"]
    assert (router["trt_version"], router["gpu"], router["sm"], router["built_with"]) == ("10.3.0", "Orin", "8.7", "trtexec")
    assert router["precision"] == "int8" and len(router["onnx_sha256"]) == 64
    if fail_dla:
        assert "DLA build failed" in run.stderr
        assert router["dla_core"] is None and router["profiles"] == [{"min": 1, "opt": 32, "max": 128}]
        assert "--useDLACore" not in (root / "router.engine").read_text()
    else:
        assert router["dla_core"] == 0 and router["profiles"] == [{"min": 32, "opt": 32, "max": 32}]
    assert str(lib) in (root / "large.engine").read_text()
    assert manifest["models"]["large"]["engine"]["plugin_ops"] == ["dynpose::DynPoseDecode"]
    assert manifest["models"]["large"]["engine"]["plugin_library"] == str(lib)
    assert manifest["models"]["small"]["engine"]["plugin_library"] is None
