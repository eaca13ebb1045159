"""Tiny but real artifacts dirs (ONNX nets + manifest): the device check's TensorRT stage builds
them into engines, and the builder and backend tests (tests/trt_harness) use them too; they live
here because tools/ may not import tests/.

The nets keep the ONNX contract (input ``input`` [N,3,H,W], 256x192 unless a role is given
another size, outputs ``score`` / ``heatmaps`` at stride 4) and compute something
input-dependent, so a backend that mixes up crops, buffers or streams produces wrong numbers.
``spot=True`` pose nets make every keypoint's heatmap the crop's red channel pooled at stride
4, so the keypoints land on the brightest red spot of the crop: a known image position for
testing that crops and their inverse map agree at any input size.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from runtime.heads.registry import HEATMAP

OPSET = 17
DEFAULT_HW = (256, 192)


def _io(name: str, shape: list, dtype: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def router_model(qdq: bool = False, input_hw: tuple[int, int] = DEFAULT_HW) -> onnx.ModelProto:
    nodes, inits, src = [], [], "input"
    if qdq:  # explicit quantization: what calib/ emits for the TensorRT INT8 path
        inits += [
            numpy_helper.from_array(np.array(0.02, np.float32), "s"),
            numpy_helper.from_array(np.array(0, np.int8), "z"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"]),
        ]
        src = "dq"
    inits.append(numpy_helper.from_array(np.array([-1, 1], np.int64), "shp"))
    nodes += [
        helper.make_node("ReduceMean", [src], ["m"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["m", "shp"], ["r"]),
        helper.make_node("Sigmoid", ["r"], ["score"]),
    ]
    g = helper.make_graph(
        nodes, "router", [_io("input", ["N", 3, *input_hw])], [_io("score", ["N", 1])], inits
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])


def pose_model(
    seed: int, plugin: bool = False, input_hw: tuple[int, int] = DEFAULT_HW, spot: bool = False
) -> onnx.ModelProto:
    w = np.random.default_rng(seed).normal(size=(17, 3, 1, 1)).astype(np.float32)
    if spot:  # every heatmap = the red channel (RGB input, channel 0)
        w = np.zeros((17, 3, 1, 1), np.float32)
        w[:, 0] = 1.0
    nodes = [
        helper.make_node("AveragePool", ["input"], ["p"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Conv", ["p", "w"], ["heatmaps"]),
    ]
    outputs = [_io("heatmaps", ["N", 17, *heatmap_hw(input_hw)])]
    opsets = [helper.make_opsetid("", OPSET)]
    if plugin:  # a fused decode node TensorRT can only parse with the plugin library loaded
        nodes.append(helper.make_node("DynPoseDecode", ["heatmaps"], ["keypoints"], domain="dynpose"))
        outputs.append(_io("keypoints", ["N", 17, 2]))
        opsets.append(helper.make_opsetid("dynpose", 1))
    g = helper.make_graph(
        nodes, f"pose{seed}", [_io("input", ["N", 3, *input_hw])], outputs, [numpy_helper.from_array(w, "w")]
    )
    return helper.make_model(g, opset_imports=opsets)


def heatmap_hw(input_hw: tuple[int, int]) -> list[int]:
    return [input_hw[0] // 4, input_hw[1] // 4]


def _entry(
    role: str, onnx_name: str, outputs: list[tuple[str, list]], input_hw: tuple[int, int]
) -> dict[str, Any]:
    return {
        "role": role,
        "onnx": onnx_name,
        "opset": OPSET,
        "head": "score" if role == "router" else HEATMAP,
        "inputs": [{"name": "input", "shape": ["N", 3, *input_hw], "dtype": "float32"}],
        "outputs": [{"name": n, "shape": s, "dtype": "float32"} for n, s in outputs],
        "variants": {},
    }


def make_artifacts(
    root: Path,
    int8_router: bool = True,
    fp16_small: bool = False,
    plugin_large: bool = False,
    config: str = "dyn-test",
    target: str = "orin",
    input_hw: dict[str, tuple[int, int]] | None = None,
    spot: bool = False,
) -> dict[str, Any]:
    """Write router/small/large ONNX (+ variants) and manifest.json into ``root``; return the manifest.

    ``input_hw`` gives a role's crop (H, W) (default 256x192; the router's defaults to the small
    net's); ``spot`` makes the pose nets the red-spot finders described above."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    hw = {"small": DEFAULT_HW, "large": DEFAULT_HW, **(input_hw or {})}
    hw.setdefault("router", hw["small"])
    onnx.save(router_model(input_hw=hw["router"]), str(root / "router.onnx"))
    onnx.save(pose_model(1, input_hw=hw["small"], spot=spot), str(root / "small.onnx"))
    onnx.save(pose_model(2, input_hw=hw["large"], spot=spot), str(root / "large.onnx"))
    models = {
        "router": _entry("router", "router.onnx", [("score", ["N", 1])], hw["router"]),
        **{
            r: _entry(r, f"{r}.onnx", [("heatmaps", ["N", 17, *heatmap_hw(hw[r])])], hw[r])
            for r in ("small", "large")
        },
    }
    if int8_router:
        onnx.save(router_model(qdq=True, input_hw=hw["router"]), str(root / "router.int8_trt.onnx"))
        models["router"]["variants"]["int8_trt"] = {"onnx": "router.int8_trt.onnx"}
    if fp16_small:  # stands for calib's FP16 ONNX (fp32 I/O kept); content is what matters less here
        onnx.save(pose_model(1, input_hw=hw["small"]), str(root / "small.fp16.onnx"))
        models["small"]["variants"]["fp16"] = {"onnx": "small.fp16.onnx"}
    if plugin_large:
        onnx.save(pose_model(2, plugin=True, input_hw=hw["large"]), str(root / "large.plugin.onnx"))
        onnx.save(
            pose_model(2, input_hw=hw["large"]), str(root / "large.fp16.onnx")
        )  # stands for calib's FP16 ONNX
        models["large"]["variants"]["fp16"] = {"onnx": "large.fp16.onnx"}
        models["large"]["variants"]["plugin"] = {
            "onnx": "large.plugin.onnx",
            "plugin_library": "libdynpose_plugins.so",
        }
    from runtime.artifacts.manifest import sha256_file

    for entry in models.values():  # the runtime checks every file's sha256 at load
        entry["sha256"] = sha256_file(root / entry["onnx"])
        for rec in entry["variants"].values():
            rec["sha256"] = sha256_file(root / rec["onnx"])
    manifest = {
        "schema_version": 1,
        "config": config,
        "target": target,
        "models": models,
        "routing": {"k1": 0.4, "k2": 0.6, "large_fraction": 0.5},
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
