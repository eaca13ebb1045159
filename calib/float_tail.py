"""What counts as the *float tail* of a network: the part no reduced precision may touch.

The tail is everything between the last learned Conv/ConvTranspose/Gemm/
MatMul and the graph outputs: sparsemax and its TopK / CumSum / Gather
arithmetic, clamps, sigmoid heads, box and keypoint decode. INT8
(calib.quantize), FP16 (calib.fp16) and the TensorRT Q/DQ checker all share
this one definition, so a fix here reaches all three.

Optionally (``quantize_onnx(float_heads=True)``, the detector's default) the
*heads* stay float too: the learned ops that feed the tail, and for a head
whose output the tail decodes linearly into coordinates (YOLO-pose keypoints:
``(2 * raw + grid) * stride``, the error times up to 64 px) its own branch up
to the fork from the shared features (:func:`float_head_ops`).
"""

from __future__ import annotations

from collections.abc import Iterable

import onnx

QUANT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# ops that only move or relabel values: a Softmax seen through them is still a distribution
LAYOUT_OPS = (
    "Reshape",
    "Transpose",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Identity",
    "Cast",
    "QuantizeLinear",
    "DequantizeLinear",
)
# ops that read only the shape of their input, never its values
SHAPE_OPS = ("Shape", "Size")
# ops that pass an error on without squashing it (no Sigmoid/Softmax/Tanh): a head whose output
# reaches a graph output through these alone is decoded into coordinates
LINEAR_OPS = LAYOUT_OPS + (
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Neg",
    "Concat",
    "Slice",
    "Split",
    "Gather",
    "Expand",
    "Tile",
)
#: learned layers above a regression head that stay float with it (:func:`regression_branches`):
#: the usual head of one-stage detectors is two 3x3 convs before the 1x1 output conv (YOLOv8/11);
#: the cap also keeps a single-path net (where the whole net is "exclusive") from going float
REGRESSION_BRANCH_DEPTH = 2


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
    return {
        producer[i].name
        for n in model.graph.node
        if n.name in tail
        for i in n.input
        if i in producer and producer[i].op_type in QUANT_OPS and producer[i].name not in tail
    }


def tensor_consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """tensor name -> the nodes that read it."""
    out: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def regression_heads(model: onnx.ModelProto, tail: set[str] | None = None) -> set[str]:
    """The :func:`head_ops` whose output reaches a graph output through :data:`LINEAR_OPS` only.

    Such a head regresses coordinates: YOLO-pose keypoints ``(2 * raw + anchor - 0.5) * stride``
    add the head's error times up to 2 x 32 px to the answer, while a score head (Sigmoid) squashes
    it and a DFL box head (Softmax, then an expectation over 16 bins) averages it out.
    """
    tail = float_tail(model) if tail is None else tail
    consumers = tensor_consumers(model)
    outputs = {o.name for o in model.graph.output}
    byname = {n.name: n for n in model.graph.node}

    def linear_path(tensor: str, seen: set[str]) -> bool:
        if tensor in outputs:
            return True
        for c in consumers.get(tensor, []):
            if c.name in tail and c.op_type in LINEAR_OPS and c.name not in seen:
                seen.add(c.name)
                if any(linear_path(o, seen) for o in c.output):
                    return True
        return False

    return {h for h in head_ops(model, tail) if any(linear_path(o, set()) for o in byname[h].output)}


def regression_branches(
    model: onnx.ModelProto, tail: set[str] | None = None, depth: int = REGRESSION_BRANCH_DEPTH
) -> set[str]:
    """Each regression head plus its exclusive branch: the nodes above it that feed nothing else.

    The walk goes up from the head while every consumer of a node is already in the branch, so it
    stops at the fork where the head's branch leaves the shared features (a YOLO neck output feeds
    the box, class and keypoint branches); it keeps at most ``depth`` learned layers above the head.
    On YOLO11n-pose that is cv4.{0,1,2}: its two 3x3 convs and their SiLUs (docs/detector.md).
    """
    tail = float_tail(model) if tail is None else tail
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers = tensor_consumers(model)
    outputs = {o.name for o in model.graph.output}
    byname = {n.name: n for n in model.graph.node}
    keep: set[str] = set()
    for head in regression_heads(model, tail):
        level = {head: 0}  # node -> learned layers between it and the head
        open_ = [head] if depth > 0 else []  # nodes whose producers may still join
        grown = True
        while grown:
            grown = False
            for name in list(open_):
                for i in byname[name].input:
                    p = producer.get(i)
                    if p is None or p.name in level or p.name in tail or p.op_type == "Constant":
                        continue
                    users = [c for o in p.output for c in consumers.get(o, [])]
                    if any(o in outputs for o in p.output) or any(c.name not in level for c in users):
                        continue
                    d = max(level[c.name] for c in users) + (p.op_type in QUANT_OPS)
                    if d > depth:
                        continue
                    level[p.name] = d
                    grown = True
                    if not (p.op_type in QUANT_OPS and d == depth):
                        open_.append(p.name)
        keep |= set(level)
    return keep


def float_head_ops(model: onnx.ModelProto, tail: set[str] | None = None) -> set[str]:
    """What ``float_heads`` keeps float: every output conv (:func:`head_ops`) and, for heads that
    regress coordinates, their exclusive branch (:func:`regression_branches`).

    Measured on YOLO11n-pose, coco-mini, percentile (docs/detector.md): the output convs
    alone leave the keypoints 1.20 px (int8_trt) / 2.13 px (int8_cpu) off fp32; with the keypoint
    branch (two 3x3 convs and their SiLUs per scale) 0.73 / 1.11 px. Most of the rest sits in the
    stride-32 branch, whose error the decode multiplies by 64.
    """
    tail = float_tail(model) if tail is None else tail
    return head_ops(model, tail) | regression_branches(model, tail)
