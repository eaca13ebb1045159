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

    model = name_nodes(_fold_constants(onnx.load(str(src))))
    block = fp16_block_list(model)
    # op_block_list=[] replaces the converter's default list, which would also keep
    # e.g. Resize or Upsample in fp32 and add casts TensorRT does not need.
    half = convert_float_to_float16(model, keep_io_types=True, op_block_list=[], node_block_list=block)
    _drop_cast_roundtrips(half)
    toposort(half)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(half, str(dst))
    onnx.checker.check_model(str(dst))
    return dst


def _cast_to(n: onnx.NodeProto) -> int | None:
    """The element type a Cast node converts to; None for any other node."""
    return next((a.i for a in n.attribute if a.name == "to"), None) if n.op_type == "Cast" else None


def _roundtrip_renames(model: onnx.ModelProto) -> dict[str, str]:
    """Output of each fp16 -> fp32 up-cast whose input is an fp32 -> fp16 down-cast of an fp32
    tensor, mapped to that fp32 tensor (the pair is a lossy no-op)."""
    F32, F16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    inferred = onnx.shape_inference.infer_shapes(model)
    dtype = {
        v.name: v.type.tensor_type.elem_type
        for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    }
    dtype.update({i.name: i.data_type for i in model.graph.initializer})
    producer = {o: n for n in model.graph.node for o in n.output}
    rename: dict[str, str] = {}
    for up in model.graph.node:
        if _cast_to(up) != F32:
            continue
        down = producer.get(up.input[0])
        if down is not None and _cast_to(down) == F16 and dtype.get(down.input[0]) == F32:
            rename[up.output[0]] = down.input[0]
    return rename


def _rewire(model: onnx.ModelProto, rename: dict[str, str], outputs: set[str]) -> None:
    """Readers of a round-tripped tensor read the fp32 original; a graph output keeps its name, its
    up-cast becoming an Identity of the fp32 tensor."""
    for n in model.graph.node:
        if n.op_type == "Cast" and n.output[0] in outputs and n.output[0] in rename:
            n.op_type, n.input[0] = "Identity", rename[n.output[0]]
            del n.attribute[:]
            continue
        for k, name in enumerate(n.input):
            if name in rename:
                n.input[k] = rename[name]


def _drop_cast_roundtrips(model: onnx.ModelProto) -> onnx.ModelProto:
    """Remove fp32 -> fp16 -> fp32 Cast pairs between two blocked nodes.

    The converter wraps every blocked node on its own (inputs cast up, output
    cast down), so a chain of fp32 nodes still rounds to fp16 between each
    pair, which is exactly what blocking the sparsemax was meant to avoid.
    """
    outputs = {o.name for o in model.graph.output}
    _rewire(model, _roundtrip_renames(model), outputs)
    while True:  # Casts nobody reads any more, until none is left (a down-cast dies after its up-cast)
        used = {i for n in model.graph.node for i in n.input} | outputs
        dead = [n for n in model.graph.node if n.op_type == "Cast" and n.output[0] not in used]
        if not dead:
            return model
        for n in dead:
            model.graph.node.remove(n)


def _fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold shape arithmetic into initializers before converting.

    The converter rewrites Constant and Cast nodes to fp16 even when they are
    on the node block list; in an unsimplified sparsemax that turns
    ``Range(1, n + 1)`` with n = 3072 into fp16 arithmetic (3073 rounds to
    3072) and the graph breaks. Folded, they are fp32 initializers of blocked
    nodes, which the converter leaves alone.
    """
    if not any(n.op_type in ("Range", "Shape") for n in model.graph.node):
        return model
    try:
        import onnxsim

        folded, ok = onnxsim.simplify(model)
        if ok:
            return folded
    except Exception:  # noqa: BLE001 - fall back to onnxslim
        pass
    import onnxslim

    return onnxslim.slim(model)


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
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input)
    }
    return {
        n.name
        for n in model.graph.node
        if n.op_type != "Cast" and any(types.get(o) == onnx.TensorProto.FLOAT for o in n.output)
    }
