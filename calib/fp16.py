"""FP16 ONNX for strongly typed TensorRT engines (TensorRT 11 has no FP16 builder flag).

A strongly typed engine runs each layer in the type its tensors have, so
precision is decided here, in the graph: the backbone and heads go to fp16,
the float tail (sparsemax with its cumulative sums over 3072 pixels, decode,
sigmoid heads; see calib.quantize.float_tail) and the graph's inputs and
outputs stay fp32, with Cast nodes at the borders. onnxruntime's own
converter (onnxruntime.transformers.float16) does this with a node block
list, so no extra dependency is needed.
"""
from __future__ import annotations

from pathlib import Path

import onnx

from .quantize import float_tail, name_nodes


def fp16_block_list(model: onnx.ModelProto) -> list[str]:
    """Nodes kept fp32: the float tail."""
    return sorted(float_tail(model))


def convert_fp16(src: Path, dst: Path) -> Path:
    """fp32 ONNX -> fp16 ONNX with fp32 I/O and an fp32 float tail."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = name_nodes(onnx.load(str(src)))
    block = fp16_block_list(model)
    # op_block_list=[] replaces the converter's default list, which would also keep
    # e.g. Resize or Upsample in fp32 and add casts TensorRT does not need.
    half = convert_float_to_float16(model, keep_io_types=True, op_block_list=[], node_block_list=block)
    toposort(half)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(half, str(dst))
    onnx.checker.check_model(str(dst))
    return dst


def toposort(model: onnx.ModelProto) -> onnx.ModelProto:
    """Reorder nodes so each comes after its inputs' producers.

    The converter appends its boundary Casts at the end of the node list;
    onnx.checker and TensorRT's parser both want topological order.
    """
    nodes = list(model.graph.node)
    ready = {i.name for i in model.graph.input} | {i.name for i in model.graph.initializer} | {""}
    order: list[onnx.NodeProto] = []
    pending = nodes
    while pending:
        rest = []
        for n in pending:
            (order.append(n), ready.update(n.output)) if all(i in ready for i in n.input) else rest.append(n)
        if len(rest) == len(pending):
            raise ValueError(f"graph has a cycle or a dangling input near node {rest[0].name!r}")
        pending = rest
    del model.graph.node[:]
    model.graph.node.extend(order)
    return model


def fp32_nodes(model: onnx.ModelProto) -> set[str]:
    """Names of compute nodes whose float outputs are fp32 (for tests and reports)."""
    types = {v.name: v.type.tensor_type.elem_type for v in
             list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input)}
    return {n.name for n in model.graph.node
            if n.op_type != "Cast" and any(types.get(o) == onnx.TensorProto.FLOAT for o in n.output)}
