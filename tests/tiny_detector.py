"""A tiny real YOLOv8-style ONNX detector with a fixed output (tests of how detector outputs are
used: NaN/inf, logits, ids), small enough to write per test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

SIZE = 64

# yolov8 layout, one class: rows cx, cy, w, h, score; one column per candidate (input pixels).
GOOD = [32.0, 32.0, 20.0, 40.0, 0.9]
NAN_SCORE = [16.0, 16.0, 10.0, 20.0, float("nan")]
LOGIT = [48.0, 40.0, 12.0, 30.0, 7.0]
INF_BOX = [float("inf"), 20.0, 10.0, 20.0, 0.8]


def tiny_detector(path: Path, candidates: list[list[float]], metadata: bool = True) -> Path:
    """A YOLOv8-style [N,5,A] detector whose output is ``candidates`` (plus 0 x the image, so the
    input is used and the batch follows it)."""
    # Padded with zero-score candidates to more candidates than values per candidate, as every real
    # detector has (the decode tells a [1,F,A] output from [1,A,F] by that).
    pad = [[1.0, 1.0, 1.0, 1.0, 0.0]] * max(0, 8 - len(candidates))
    c = np.asarray([*candidates, *pad], np.float32).T[None]  # [1, 5, A]
    nodes = [
        helper.make_node("ReduceMax", ["images"], ["m"], keepdims=1, axes=[1, 2, 3]),
        helper.make_node("Squeeze", ["m", "ax"], ["m3"]),
        helper.make_node("Mul", ["m3", "zero"], ["z"]),
        helper.make_node("Add", ["z", "cand"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_det",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", 5, c.shape[2]])],
        [
            helper.make_tensor("ax", TensorProto.INT64, [1], [3]),
            helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("cand", TensorProto.FLOAT, list(c.shape), c.reshape(-1).tolist()),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        for k, v in {"task": "detect", "names": "{0: 'person'}", "imgsz": f"[{SIZE}, {SIZE}]"}.items():
            model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
