"""What counts as the *float tail* of a network: the part no reduced precision may touch.

The tail is everything between the last learned Conv/ConvTranspose/Gemm/
MatMul and the graph outputs: sparsemax and its TopK / CumSum / Gather
arithmetic, clamps, sigmoid heads, box and keypoint decode. INT8
(calib.quantize), FP16 (calib.fp16) and the TensorRT Q/DQ checker all share
this one definition, so a fix here reaches all three.
"""
from __future__ import annotations

from typing import Iterable

import onnx

QUANT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# ops that only move or relabel values: a Softmax seen through them is still a distribution
LAYOUT_OPS = ("Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Cast",
              "QuantizeLinear", "DequantizeLinear")
# ops that read only the shape of their input, never its values
SHAPE_OPS = ("Shape", "Size")


def _is_constant(name: str, producer: dict[str, onnx.NodeProto], inits: set[str]) -> bool:
    """An initializer or Constant, possibly behind Q/DQ/Cast/Identity (a quantized weight)."""
    while name not in inits:
        node = producer.get(name)
        if node is None:
            return False
        if node.op_type == "Constant":
            return True
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear", "Cast", "Identity"):
            return False
        name = node.input[0]
    return True


def is_decode_op(node: onnx.NodeProto, producer: dict[str, onnx.NodeProto], inits: set[str]) -> bool:
    """A linear op with fixed weights over a Softmax output: an expectation (bin positions), not a layer.

    Such weights (0, 1, ..., 15 for DFL) quantize to 0, 0.945, 2.008, ... and
    bias every decoded coordinate, so the op must stay float like the rest of
    the decode.
    """
    if node.op_type not in QUANT_OPS or len(node.input) < 2:
        return False
    if not _is_constant(node.input[1], producer, inits):
        return False
    t = node.input[0]
    while t in producer:
        p = producer[t]
        if p.op_type == "Softmax":
            return True
        if p.op_type not in LAYOUT_OPS:
            return False
        t = p.input[0]
    return False


def float_tail(model: onnx.ModelProto, outputs: Iterable[str] | None = None) -> set[str]:
    """Names of the nodes between the last learned quantizable op and the graph outputs.

    Walks producers backwards from each output and stops at any learned
    Conv/ConvTranspose/Gemm/MatMul (that node itself is not in the tail, so
    its *input* may still be quantized); a fixed-weight op over a Softmax
    (:func:`is_decode_op`) is part of the tail and the walk goes on through
    it; ``Shape``/``Size`` nodes are in the tail but their input is not
    followed. Works on any graph shape: branches that fork and re-join
    (sparsemax uses its input three times) are visited once each, and nothing
    depends on node names or op order.
    """
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name for i in model.graph.initializer}
    wanted = list(outputs) if outputs is not None else [o.name for o in model.graph.output]
    unknown = [o for o in wanted if o not in producer and o not in {i.name for i in model.graph.input}]
    if unknown:
        raise ValueError(f"outputs {unknown} are not produced by any node of the graph")
    tail: set[str] = set()
    seen: set[str] = set()
    stack = list(wanted)
    while stack:
        t = stack.pop()
        if t in seen or t not in producer:
            continue
        seen.add(t)
        node = producer[t]
        if node.op_type in QUANT_OPS and not is_decode_op(node, producer, inits):
            continue
        if not node.name:
            raise ValueError("float_tail needs named nodes; run name_nodes(model) first")
        tail.add(node.name)
        if node.op_type not in SHAPE_OPS:
            stack.extend(i for i in node.input if i)
    return tail


def head_ops(model: onnx.ModelProto, tail: set[str] | None = None) -> set[str]:
    """The learned linear ops whose outputs feed the float tail directly (a detector's output convs).

    Their output is decoded into coordinates (YOLO keypoints: ``(2 * raw + anchor) * stride``), so
    their rounding error is multiplied by up to 2 x 32 px; keeping them float costs a few 1x1 convs
    on small maps. Optional (``quantize_onnx(float_heads=True)``): the pose nets keep theirs int8.
    """
    tail = float_tail(model) if tail is None else tail
    producer = {o: n for n in model.graph.node for o in n.output}
    return {producer[i].name for n in model.graph.node if n.name in tail for i in n.input
            if i in producer and producer[i].op_type in QUANT_OPS and producer[i].name not in tail}


