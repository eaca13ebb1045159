"""TensorRT parts of the device check (run only where tensorrt and pycuda import).

Fixture engines (tools/device_check/tiny_artifacts.py: tiny real ONNX nets with the
pipeline's I/O contract) are built by the project's own builder
(build.trt.build_engines) and run through the runtime's backends, so this checks
the code paths a deployment uses: TensorRT vs ONNX Runtime outputs, the fused
DynPoseDecode engine against runtime/heads/decode.py, and whether router/small/large
on three streams overlap. Not run in CI (no GPU); see docs/plugin.md, "Device check".
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from runtime.heads import decode as D
from runtime.pose.preprocess import net_input_hw

from .checks import compare_decode, compare_outputs, overlap_ratio

ROLES = ("router", "small", "large")


def target_name() -> str:
    return "orin" if Path("/etc/nv_tegra_release").exists() else "x86-gpu"


def _batch(manifest: dict[str, Any], role: str, n: int = 8, seed: int = 0) -> np.ndarray:
    """Random crops at the net's own input size (its manifest entry)."""
    hw = net_input_hw(manifest, role)
    return np.random.default_rng(seed).uniform(-2, 2, size=(n, 3, *hw)).astype(np.float32)


def _fixture(root: Path) -> dict[str, Any]:
    from build.trt import build_engines
    from tools.device_check.tiny_artifacts import make_artifacts

    manifest = make_artifacts(root, int8_router=False, target=target_name())
    return dict(build_engines(root, manifest, target_name()))


def run_trt_vs_ort(work: Path) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """Per role: TensorRT outputs vs ONNX Runtime on the same batch. Returns (results, timings, backends)."""
    from runtime.backends.ort import OrtBackend
    from runtime.backends.trt import TrtBackend

    root = work / "fixture"
    manifest = _fixture(root)
    trt_be, ort_be = TrtBackend(root, manifest), OrtBackend(root, manifest)
    trt_be.check()
    results, timings = {}, {}
    s_trt, s_ort = trt_be.new_stream("check"), ort_be.new_stream("check")
    for role in ROLES:
        x = _batch(manifest, role)
        with trt_be.open_runner(role) as rt, ort_be.open_runner(role) as ro:
            got = rt.infer(x, s_trt)
            t0 = time.perf_counter()
            for _ in range(10):
                got = rt.infer(x, s_trt)
            timings[f"trt/{role}"] = {"ms": 1e3 * (time.perf_counter() - t0) / 10, "batch": len(x)}
            results[role] = compare_outputs(got, ro.infer(x, s_ort))
    s_trt.close()
    s_ort.close()
    ort_be.close()
    return results, timings, (root, manifest, trt_be)


def run_stream_overlap(root: Path, manifest: dict[str, Any], trt_be: Any, reps: int = 20) -> dict[str, Any]:
    """Wall time of router+small+large one after another vs on three streams at once."""
    xs = [_batch(manifest, role, 16, seed=1) for role in ROLES]
    runners = [trt_be.open_runner(r).activate() for r in ROLES]
    streams = [trt_be.new_stream(r) for r in ROLES]
    try:
        for r, s, x in zip(runners, streams, xs):
            r.infer(x, s)  # warm-up
        t0 = time.perf_counter()
        for _ in range(reps):
            for r, s, x in zip(runners, streams, xs):
                r.infer(x, s)
        serial = (time.perf_counter() - t0) / reps
        t0 = time.perf_counter()
        for _ in range(reps):
            pend = [r.infer_async(x, s) for r, s, x in zip(runners, streams, xs)]
            for p in pend:
                p.wait()
        concurrent = (time.perf_counter() - t0) / reps
    finally:
        for r in runners:
            r.deactivate()
        for s in streams:
            s.close()
    ratio = overlap_ratio(serial, concurrent)
    return {"ok": True, "serial_ms": 1e3 * serial, "concurrent_ms": 1e3 * concurrent, "overlap": ratio}


def run_fused_plugin(work: Path, trt_headers: Path, sm: str) -> dict[str, Any]:
    """Build the plugin for this GPU, a fused-decode engine, and compare its keypoints with numpy."""
    from build.trt import build_engines
    from build.trt.targets import BuildOptions
    from kernels.plugin_build import build_plugin_lib
    from runtime.backends.ort import OrtBackend
    from runtime.backends.trt import TrtBackend
    from tools.device_check.tiny_artifacts import make_artifacts

    lib = build_plugin_lib(trt_headers, arch=sm.replace(".", ""), out_root=work)
    root = work / "fixture-plugin"
    manifest = make_artifacts(root, int8_router=False, plugin_large=True, target=target_name())
    manifest["models"]["large"]["variants"]["plugin"]["plugin_library"] = str(lib)
    build_engines(root, manifest, target_name(), BuildOptions(plugin_lib=str(lib)))
    x = _batch(manifest, "large", 8, seed=2)
    trt_be, ort_be = TrtBackend(root, manifest, plugin_lib=str(lib)), OrtBackend(root, manifest)
    with trt_be.open_runner("large") as rt, ort_be.open_runner("large") as ro:
        got = rt.infer(x, trt_be.new_stream("plugin"))
        hm = ro.infer(x, ort_be.new_stream("ref"))["heatmaps"]
    ref_kp, ref_sc = D.decode_logits(hm)  # the fixture node: probmap mode, logits in, COCO sigmas
    res = compare_decode(got["keypoints"], ref_sc, ref_kp, ref_sc, exact=False)
    res["plugin_library"] = str(lib)
    return {"keypoints": res}
