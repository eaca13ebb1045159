"""The engine builder end to end against the checked TensorRT fakes (version from DYNPOSE_TRT_HARNESS)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import onnx
import pytest

from build.trt import add_trt_arguments, build_engines, build_or_plan, compat
from build.trt.builder import EngineBuildError
from build.trt.targets import BuildOptions
from tests.abi_stub import write_abi_stub
from tools.device_check.tiny_artifacts import make_artifacts, pose_model

pytestmark = pytest.mark.trt


def _calls(world, cls: str, attr: str) -> list[tuple]:
    return [(a, k) for c, m, a, k in world.calls if c == cls and m == attr]


def _plan(path: Path) -> dict:
    return json.loads(path.read_bytes())  # the harness serialises its "plan" as JSON


def test_orin_build_precision_profiles_dla_and_records(trt_world, tmp_path: Path) -> None:
    trt_world.dla_cores = 2
    root = tmp_path / "dyn-test-orin"
    manifest = make_artifacts(root, int8_router=True, fp16_small=True)
    build_engines(root, manifest, "orin")
    trt = trt_world.trt
    rec = {r: manifest["models"][r]["engine"] for r in ("router", "small", "large")}
    # precision = the ONNX chosen: INT8 Q/DQ where calibrated, else FP16, else fp32
    assert [(rec[r]["precision"], rec[r]["onnx"]) for r in rec] == [
        ("int8", "router.int8_trt.onnx"),
        ("fp16", "small.fp16.onnx"),
        ("fp32", "large.onnx"),
    ]
    # router on DLA core 0 with a static profile where the release has DLA; pose nets dynamic 1..64
    router_plan = _plan(root / "router.engine")
    if compat.dla_typing(trt.__version__) is not None:  # 10.3: weakly typed DLA network
        assert rec["router"]["dla_core"] == 0 and rec["router"]["profiles"] == [
            {"min": 32, "opt": 32, "max": 32}
        ]
        assert rec["router"]["static_batch"] == 32 and rec["router"]["dla_layers"] > 0
        assert router_plan["dla_core"] == 0 and router_plan["flags"] == ["FP16", "GPU_FALLBACK", "INT8"]
        assert router_plan["profiles"]["input"] == [[32, 3, 256, 192]] * 3
    else:  # 11.4.0: no DLA in this release
        assert rec["router"]["dla_core"] is None and rec["router"]["profiles"] == [
            {"min": 1, "opt": 32, "max": 128}
        ]
        assert router_plan["flags"] == [] and rec["router"]["static_batch"] is None
    for r in ("small", "large"):
        assert rec[r]["dla_core"] is None and rec[r]["profiles"] == [{"min": 1, "opt": 16, "max": 64}]
    assert _plan(root / "small.engine")["flags"] == []  # never a precision flag on the GPU
    assert _plan(root / "large.engine")["profiles"]["input"] == [
        [1, 3, 256, 192],
        [16, 3, 256, 192],
        [64, 3, 256, 192],
    ]
    # strongly typed network, workspace pool for Orin, optimisation level
    strongly = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    nets = [a[0] for a, _ in _calls(trt_world, "Builder", "create_network")]
    weak_dla = compat.dla_typing(trt.__version__) == "weak"
    assert nets == ([0] if weak_dla else [strongly]) + [strongly] * 2  # only 10.x DLA is weakly typed
    pools = _calls(trt_world, "IBuilderConfig", "set_memory_pool_limit")
    assert {(a[0].name, a[1]) for a, _ in pools} == {("WORKSPACE", 2048 << 20)}
    assert _calls(trt_world, "IBuilderConfig", "builder_optimization_level=") == [((3,), {})] * 3
    # sidecar: the machine facts the runtime compares, beside the engine and in the manifest
    for r, record in rec.items():
        assert record["trt_version"] == trt.__version__ and record["gpu"] == "Orin" and record["sm"] == "8.7"
        assert len(record["onnx_sha256"]) == 64 and record["build_time_s"] >= 0
        assert json.loads((root / f"{r}.engine.json").read_text()) == record
        assert [t["name"] for t in record["io"]] == ["input", "score" if r == "router" else "heatmaps"]


def test_no_dla_cores_builds_router_on_gpu(trt_world, tmp_path: Path) -> None:
    trt_world.dla_cores = 0  # Orin Nano, dGPU, or TensorRT 11.0-11.4.0 on Jetson
    root = tmp_path / "a"
    manifest = make_artifacts(root)
    build_engines(root, manifest, "orin")
    rec = manifest["models"]["router"]["engine"]
    assert rec["dla_core"] is None and rec["profiles"] == [{"min": 1, "opt": 32, "max": 128}]
    assert not _calls(trt_world, "IBuilderConfig", "DLA_core=")


def test_timing_cache_persisted_and_reused(trt_world, tmp_path: Path) -> None:
    root = tmp_path / "a"
    manifest = make_artifacts(root)
    cache = tmp_path / "my.cache"
    build_engines(root, manifest, "x86-gpu", BuildOptions(timing_cache=str(cache)))
    first = cache.read_bytes()
    assert b"router.int8_trt.onnx" in first and b"large.onnx" in first
    trt_world.calls.clear()
    build_engines(root, manifest, "x86-gpu", BuildOptions(timing_cache=str(cache)))
    loaded = [a[0] for a, _ in _calls(trt_world, "IBuilderConfig", "create_timing_cache")]
    assert loaded == [first]  # one cache object per run, seeded from the file
    assert manifest["models"]["small"]["engine"]["timing_cache"] == str(cache)


def test_plugin_nodes_need_the_library(trt_world, tmp_path: Path) -> None:
    root = tmp_path / "a"
    manifest = make_artifacts(root, plugin_large=True)
    onnx.save(pose_model(2, plugin=True), str(root / "large.fp16.onnx"))  # an ONNX that holds plugin nodes
    with pytest.raises(EngineBuildError, match="--plugin-lib"):
        build_engines(root, manifest, "x86-gpu")
    onnx.save(pose_model(2), str(root / "large.fp16.onnx"))
    lib = tmp_path / "libdynpose_plugins.so"
    write_abi_stub(lib, trt_world.trt.__version__)  # a loadable library with the ABI record
    trt_world.plugin_libs[str(lib)] = ["DynPoseDecode"]
    build_engines(root, manifest, "x86-gpu", BuildOptions(plugin_lib=str(lib)))
    rec = manifest["models"]["large"]["engine"]
    assert rec["plugin_library"] == str(lib) and rec["plugin_ops"] == [
        "ai.onnx::DynPoseDecode"
    ]  # add_decode_plugin: default domain
    # the fused-decode variant OF THE CHOSEN PRECISION (FP16 here), not the fp32 one
    assert (rec["onnx"], rec["precision"]) == ("large.plugin.fp16.onnx", "fp16")
    assert manifest["models"]["large"]["variants"]["plugin_fp16"]["from"] == "large.fp16.onnx"
    assert [t["name"] for t in rec["io"] if t["mode"] == "output"] == ["keypoints", "keypoint_scores"]
    assert [a for a, _ in _calls(trt_world, "IPluginRegistry", "load_library")] == [(str(lib),)]
    assert manifest["models"]["small"]["engine"]["plugin_library"] is None


def test_target_defaults_and_flag_overrides(trt_world, tmp_path: Path) -> None:
    root = tmp_path / "a"
    manifest = make_artifacts(root)
    build_engines(root, manifest, "orin-nano")
    assert manifest["models"]["large"]["engine"]["profiles"] == [{"min": 1, "opt": 8, "max": 32}]
    assert manifest["models"]["large"]["engine"]["workspace_mb"] == 768
    opts = BuildOptions(max_batch_router=64, max_batch_pose=16, workspace_mb=512, opt_level=5, dla="off")
    build_engines(root, manifest, "orin", opts)
    eng = {r: manifest["models"][r]["engine"] for r in ("router", "small")}
    assert (
        eng["router"]["profiles"] == [{"min": 1, "opt": 32, "max": 64}] and eng["router"]["dla_core"] is None
    )
    assert eng["small"]["profiles"] == [{"min": 1, "opt": 16, "max": 16}]
    assert eng["small"]["workspace_mb"] == 512 and eng["small"]["builder_optimization_level"] == 5


def test_build_or_plan_builds_when_trt_and_gpu_present(trt_world, tmp_path: Path, capsys) -> None:
    parser = argparse.ArgumentParser()
    add_trt_arguments(parser)
    root = tmp_path / "dyn-test-orin"
    manifest = make_artifacts(root)
    rc = build_or_plan(root, manifest, parser.parse_args(["--target", "orin", "--require-trt"]))
    assert rc == 0 and capsys.readouterr().out == ""
    assert all((root / f"{r}.engine").is_file() for r in ("router", "small", "large"))
    assert (root / "build_plan.sh").is_file() and manifest["trt_plan"]["target"] == "orin"
