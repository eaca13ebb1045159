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
from tools.device_check.tiny_artifacts import make_artifacts

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
    rc = build_or_plan(
        root, manifest, _args("--target", "orin", "--plugin-lib", "/opt/dynpose/libdynpose_plugins.so")
    )
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
    for role, onnx, shapes in [
        ("router", "router.int8_trt.onnx", ("32", "32", "32")),
        ("small", "small.onnx", ("1", "16", "64")),
        ("large", "large.plugin.fp16.onnx", ("1", "16", "64")),
    ]:
        cmds = re.findall(rf"--onnx={re.escape(onnx)} \\\n(.*?)tee {role}.trtexec.log", text, re.S)
        for cmd in cmds:
            assert f"--saveEngine={role}.engine" in cmd
            assert "--memPoolSize=workspace:2048M" in cmd and '--timingCacheFile="$CACHE"' in cmd
            assert ('--dynamicPlugins="$PLUGIN_LIB"' in cmd) == (role == "large")
            dla = "--useDLACore=0" in cmd
            assert dla == ("--allowGPUFallback" in cmd) == ("--exportLayerInfo" in cmd)
            batch = shapes if dla or role != "router" else ("1", "32", "128")
            for flag, n in zip(("min", "opt", "max"), batch):
                assert f"--{flag}Shapes=input:{n}x3x256x192" in cmd
            # the DLA rule: 10.x DLA weakly typed (--fp16 --int8, never --stronglyTyped), else strongly typed
            weak = dla and "--fp16" in cmd
            assert ("--stronglyTyped" in cmd) != weak
            assert ("--int8" in cmd) == weak
        if role == "router":  # weak DLA, strong DLA, and the GPU fallbacks of each
            assert sum("--useDLACore=0" in c and "--fp16" in c for c in cmds) == 1
            assert sum("--useDLACore=0" in c and "--stronglyTyped" in c for c in cmds) == 1
        else:
            assert len(cmds) == 1 and "--useDLACore" not in cmds[0]
    assert (
        "# router: int8" in text
        and "# small: fp32" in text
        and "# large: fp16 from large.plugin.fp16.onnx" in text
    )
    gpu_cmds = [c for c in re.findall(r'"\$TRTEXEC" \\\n(.*?)tee ', text, re.S) if "--useDLACore" not in c]
    assert not any("--fp16" in c or "--int8" in c for c in gpu_cmds)  # removed in TensorRT 11
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
# stand-in for trtexec of release FAKE_TRT_V (banner number, 100300 = 10.3.0) with the documented
# behaviour our plan must respect: 11.x has no --fp16/--int8; trtexec 10.x cannot build
# --stronglyTyped with --useDLACore (NVIDIA/TensorRT#4228); 11.0-11.4.0 have no DLA.
V="${FAKE_TRT_V:-100300}"
for a in "$@"; do [ "$a" = --help ] && { echo "&&&& RUNNING TensorRT.trtexec [TensorRT v$V] # trtexec --help"; exit 0; }; done
strong=0; dla=0; prec=0; layers=""; onnx=""
for a in "$@"; do
  case "$a" in
    --saveEngine=*) out="${a#--saveEngine=}" ;;
    --onnx=*) onnx="${a#--onnx=}" ;;
    --exportLayerInfo=*) layers="${a#--exportLayerInfo=}" ;;
    --stronglyTyped) strong=1 ;;
    --fp16|--int8) prec=1 ;;
    --useDLACore=*) dla=1; [ -n "${FAIL_DLA:-}" ] && { echo "[E] DLA not available"; exit 1; } ;;
  esac
done
if [ "$V" -ge 110000 ] && [ $prec = 1 ]; then echo "[E] Unknown option: --fp16/--int8"; exit 1; fi
if [ "$V" -lt 110000 ] && [ $strong = 1 ] && [ $dla = 1 ]; then
  echo "[E] IBuilder::buildSerializedNetwork: kFP16 set on a strongly typed network"; exit 1; fi
if [ $dla = 1 ] && [ "$V" -ge 110000 ] && [ "$V" -lt 110401 ]; then echo "[E] no DLA in this release"; exit 1; fi
if [ -n "${FAIL_INT8:-}" ] && [[ "$onnx" == *int8* ]]; then echo "[E] [checkLinks] Error Code 2: Internal Error"; exit 1; fi
echo "[I] === Device Information ==="
echo "[I] Selected Device: Orin"
echo "[I] Compute Capability: 8.7"
echo "[I] TensorRT version: $((V / 10000)).$((V / 100 % 100)).$((V % 100))"
if [ -n "$layers" ]; then
  if [ -n "${NO_DLA_LAYERS:-}" ]; then echo '{"Layers": [{"Name": "conv", "LayerType": "CaskConvolution"}]}' > "$layers"
  else echo '{"Layers": [{"Name": "{ForeignNode[conv]}", "LayerType": "DLA"}]}' > "$layers"; fi
fi
echo "[I] Input inference shape : input=8x3x256x192"
echo "[I] GPU Compute Time: min = 1.1 ms, max = 2.9 ms, mean = 1.7 ms, median = ${FAKE_GPU_MS:-1.6} ms, percentile(90%) = 2.5 ms"
echo "$*" > "$out"
"""

SCENARIOS = {  # name -> (env, router dla_core, router precision, stderr needle)
    "10.3": ({"FAKE_TRT_V": "100300"}, 0, "int8", None),
    "10.3-dla-fails": ({"FAKE_TRT_V": "100300", "FAIL_DLA": "1"}, None, "int8", "DLA build failed"),
    "10.3-no-layer-on-dla": (
        {"FAKE_TRT_V": "100300", "NO_DLA_LAYERS": "1"},
        None,
        "int8",
        "no layer runs on DLA",
    ),
    "10.3-int8-fails": ({"FAKE_TRT_V": "100300", "FAIL_INT8": "1"}, None, "fp32", "INT8 engine build failed"),
    "11.4.0": ({"FAKE_TRT_V": "110400"}, None, "int8", "no DLA with TensorRT v110400"),
    "11.4.1": ({"FAKE_TRT_V": "110401"}, 0, "int8", None),
    "dla-off": ({"FAKE_TRT_V": "100300", "DYNPOSE_DLA": "off"}, None, "int8", "DYNPOSE_DLA=off"),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_running_the_plan_records_engines(planned, tmp_path: Path, scenario: str) -> None:
    root, _, _, _ = planned
    extra, dla_core, precision, needle = SCENARIOS[scenario]
    trtexec = tmp_path / "trtexec"
    trtexec.write_text(FAKE_TRTEXEC)
    trtexec.chmod(0o755)
    lib = tmp_path / "libdynpose_plugins.so"
    lib.write_bytes(b"\x7fELF")
    env = {**os.environ, "TRTEXEC": str(trtexec), "DYNPOSE_REPO": str(REPO), "PLUGIN_LIB": str(lib), **extra}
    run = subprocess.run(
        ["bash", str(root / "build_plan.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    if needle:
        assert needle in run.stderr
    manifest = json.loads((root / "manifest.json").read_text())
    router = manifest["models"]["router"]["engine"]
    v = int(extra["FAKE_TRT_V"])
    assert router["trt_version"] == f"{v // 10000}.{v // 100 % 100}.{v % 100}"
    assert (router["gpu"], router["sm"], router["built_with"]) == ("Orin", "8.7", "trtexec")
    assert router["precision"] == precision and len(router["onnx_sha256"]) == 64
    engine_args = (root / "router.engine").read_text()
    assert router["dla_core"] == dla_core
    if dla_core is None:
        assert router["profiles"] == [{"min": 1, "opt": 32, "max": 128}] and router["static_batch"] is None
        assert "--useDLACore" not in engine_args and "--stronglyTyped" in engine_args
    else:
        assert router["profiles"] == [{"min": 32, "opt": 32, "max": 32}] and router["static_batch"] == 32
        assert router["dla_layers"] == 1
        weak = v < 110000
        assert ("--fp16" in engine_args and "--int8" in engine_args) == weak
        assert ("--stronglyTyped" in engine_args) == (not weak)
    if precision == "fp32":  # INT8 failed: the fp32 ONNX (the router has no FP16 one), one line, a record
        assert router["onnx"] == "router.onnx" and router["fallback"]["from"] == "int8"
        assert "--onnx=router.onnx" in engine_args
    assert str(lib) in (root / "large.engine").read_text()
    assert manifest["models"]["large"]["engine"]["plugin_ops"] == ["ai.onnx::DynPoseDecode"]
    assert manifest["models"]["large"]["engine"]["plugin_library"] == str(lib)
    assert manifest["models"]["small"]["engine"]["plugin_library"] is None
    # trtexec's own timing lands in the routing costs (same fake time for every net: the warning fires)
    (trt_costs,) = [e for e in manifest["routing"]["costs"]["entries"] if e["backend"] == "trt"]
    assert trt_costs["ms_per_crop"]["small"] == pytest.approx(1.6 / 8) and trt_costs["source"] == "trtexec"
    assert manifest["routing"]["costs"]["routing_pays"] is False
    assert "ROUTING CANNOT PAY" in run.stderr and "--policy large" in run.stderr
