"""The fused SimCC decode through the engine builder and the TensorRT backend, on the real
TensorRT 10.3 / 11.4 Python bindings (tests/trt_harness; DYNPOSE_TRT_HARNESS=10|11).

The large net of a tiny dyn artifact set is swapped for an exported net with an RTMCC head's
outputs; ``--plugin-lib`` makes the builder fuse DynPoseSimCCDecode into the chosen precision's
ONNX, and the engine's outputs are keypoints and scores only. At execute time the harness runs
the plugin's kernel source on the CPU (kernels/simcc_rowmath.cuh via the host build), so the
keypoints reaching the runtime are the kernel's arithmetic, compared with decode_simcc.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

import runtime.backends.trt as trt_backend
from build.plugin_nodes import SIMCC_DECODE_OP, add_decode_plugin
from build.trt import build_engines
from build.trt.targets import BuildOptions
from runtime.artifacts.manifest import sha256_file
from runtime.backends.ort_session import open_session
from runtime.heads import registry
from runtime.heads.base import DecodeContext
from runtime.heads.simcc import SPEC as SIMCC
from runtime.heads.simcc import SimCCDecoder, decode_simcc
from tests.abi_stub import write_abi_stub
from tests.simcc_net import HY, WX, export_tiny_simcc
from tools.device_check.tiny_artifacts import make_artifacts

pytestmark = pytest.mark.trt


@pytest.fixture
def simcc_root(trt_world, tmp_path: Path, monkeypatch) -> tuple[Path, dict, Path]:
    """A tiny dyn artifact set whose large net has a SimCC head, built with the plugin library."""
    monkeypatch.setitem(registry.DECODERS, SIMCC.kind, SimCCDecoder())  # as the RTMCC head registers it
    root = tmp_path / "dyn-simcc"
    manifest = make_artifacts(root, plugin_large=True)
    export_tiny_simcc(root / "large.onnx", seed=3)
    (root / "large.fp16.onnx").write_bytes((root / "large.onnx").read_bytes())  # stands for calib's FP16
    fused = add_decode_plugin(onnx.load(str(root / "large.onnx")), SIMCC.kind)
    onnx.save(fused, str(root / "large.plugin.onnx"))
    large = manifest["models"]["large"]
    large["head"] = SIMCC.manifest_kind
    large["outputs"] = [
        {"name": "simcc_x", "shape": ["N", 17, WX], "dtype": "float32"},
        {"name": "simcc_y", "shape": ["N", 17, HY], "dtype": "float32"},
    ]
    large["sha256"] = sha256_file(root / "large.onnx")
    for rec in large["variants"].values():
        rec["sha256"] = sha256_file(root / rec["onnx"])
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    lib = tmp_path / "libdynpose_plugins.so"
    write_abi_stub(lib, trt_world.trt.__version__)  # a loadable library with the ABI record
    trt_world.plugin_libs[str(lib)] = ["DynPoseDecode", SIMCC_DECODE_OP]
    build_engines(root, manifest, "x86-gpu", BuildOptions(plugin_lib=str(lib)))
    return root, manifest, lib


def test_builder_fuses_the_simcc_decode_and_records_it(simcc_root) -> None:
    root, manifest, lib = simcc_root
    rec = manifest["models"]["large"]["engine"]
    assert rec["plugin_library"] == str(lib) and rec["plugin_ops"] == [f"ai.onnx::{SIMCC_DECODE_OP}"]
    assert (rec["onnx"], rec["precision"]) == ("large.plugin.fp16.onnx", "fp16")
    variant = manifest["models"]["large"]["variants"]["plugin_fp16"]
    assert variant["from"] == "large.fp16.onnx" and variant["outputs"] == ["keypoints", "keypoint_scores"]
    assert [t["name"] for t in rec["io"] if t["mode"] == "output"] == ["keypoints", "keypoint_scores"]
    fused = onnx.load(str(root / "large.plugin.fp16.onnx"))
    node = fused.graph.node[-1]
    assert (node.op_type, list(node.input)) == (SIMCC_DECODE_OP, ["simcc_x", "simcc_y"])
    assert manifest["models"]["small"]["engine"]["plugin_library"] is None


def test_engine_returns_the_kernels_keypoints(simcc_root) -> None:
    root, manifest, _ = simcc_root
    be = trt_backend.TrtBackend(root, manifest)
    be.check()
    large = be.open_runner("large").activate()
    x = np.random.default_rng(5).normal(size=(6, 3, 256, 192)).astype(np.float32)
    out = large.infer_async(x, be.new_stream("large")).wait()
    assert sorted(out) == ["keypoint_scores", "keypoints"]  # no SimCC row left the "GPU"
    sx, sy = open_session(root / "large.onnx").run(["simcc_x", "simcc_y"], {"input": x})
    want_kp, want_sc = decode_simcc(sx, sy)
    np.testing.assert_array_equal(out["keypoints"], want_kp)
    np.testing.assert_array_equal(out["keypoint_scores"], want_sc)
    assert (want_sc > 0).any() and (want_sc <= 0).any(), "both score branches must be exercised"
    net = SimCCDecoder().decode(out, DecodeContext(input_hw=(256, 192)))  # the runtime's read
    assert net.grid_hw == (256, 192)
    np.testing.assert_array_equal(net.coords, want_kp)
