"""Where the INT8 weight scales of each op go, per flavour, and the checks that a Q/DQ graph puts
them where its runtime reads them (TensorRT: ConvTranspose weights per input channel, axis 0).

Why apart from calib.quantize: the quantizer calls ORT; these are pure graph rules shared by the
quantizer (``weight_axis_overrides``), the build's checks and the TensorRT harness tests.
"""

from __future__ import annotations

import numpy as np
import onnx

from .float_tail import QUANT_OPS, float_tail, tensor_consumers


def _const(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    for init in model.graph.initializer:
        if init.name == name:
            return onnx.numpy_helper.to_array(init)
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output[0] == name:
            return onnx.numpy_helper.to_array(n.attribute[0].t)
    return None


def weight_axis_overrides(model: onnx.ModelProto, flavour: str, existing: dict | None = None) -> dict:
    """``TensorQuantOverrides`` for the ConvTranspose weights ONNX Runtime's defaults get wrong.

    int8_trt: every ConvTranspose weight per channel on the axis TensorRT reads
    (:data:`build.trt.compat.DECONV_WEIGHT_AXIS`, axis 0 = input channels; the reference is
    cited there). ONNX Runtime defaults to axis 1 and only a per-tensor override changes it
    (its op-type axis option does not reach ConvTranspose).
    Other flavours: a grouped ConvTranspose left in the graph (calib/deconv.py rewrites only
    group 1) is quantized per tensor. ORT's axis 1 of its weight [C_in, C_out/group, ...]
    holds C_out/group scales, which ORT then broadcasts against the C_out int32 bias and fails.
    """
    from build.trt.compat import DECONV_WEIGHT_AXIS

    inits = {i.name for i in model.graph.initializer}
    out = dict(existing or {})
    for n in model.graph.node:
        if n.op_type != "ConvTranspose" or len(n.input) < 2 or n.input[1] not in inits:
            continue
        if flavour == "int8_trt":
            out[n.input[1]] = [{"axis": DECONV_WEIGHT_AXIS}]
        elif next((a.i for a in n.attribute if a.name == "group"), 1) > 1:
            out[n.input[1]] = [{}]  # an override without an axis = per tensor
    return {"TensorQuantOverrides": out} if out else {}


def _weight_axis(node: onnx.NodeProto) -> int:
    """Per-channel axis TensorRT expects for a weight: ConvTranspose on its input channels
    (:data:`build.trt.compat.DECONV_WEIGHT_AXIS`), Gemm without transB on 1, else 0."""
    if node.op_type == "ConvTranspose":
        from build.trt.compat import DECONV_WEIGHT_AXIS

        return DECONV_WEIGHT_AXIS
    if node.op_type == "Gemm":
        return 0 if any(a.name == "transB" and a.i for a in node.attribute) else 1
    return 0


def deconv_axis_problems(model: onnx.ModelProto) -> list[str]:
    """A per-channel ConvTranspose weight DequantizeLinear on another axis than TensorRT's."""
    axis_ = _weight_axis(onnx.helper.make_node("ConvTranspose", [], []))
    producer = {o: n for n in model.graph.node for o in n.output}
    problems = []
    for n in model.graph.node:
        dq = producer.get(n.input[1]) if n.op_type == "ConvTranspose" and len(n.input) > 1 else None
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        scale = _const(model, dq.input[1])
        if scale is None or scale.size <= 1:
            continue
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        if axis != axis_:
            problems.append(
                f"{dq.name}: ConvTranspose weight of {n.name} quantized on axis {axis}; TensorRT "
                f"reads deconvolution weight scales on axis {axis_} (input channels)"
            )
    return problems


def _zero_point_problem(model: onnx.ModelProto, n: onnx.NodeProto) -> list[str]:
    """A Q or DQ node's zero point must be an int8 zero (TensorRT's int8 is symmetric)."""
    zp = _const(model, n.input[2]) if len(n.input) > 2 and n.input[2] else None
    if zp is None or zp.dtype != np.int8 or np.any(zp != 0):
        return [
            f"{n.name}: zero point {None if zp is None else (zp.dtype, zp.ravel()[:3])} "
            "is not int8 zero (TensorRT needs symmetric int8)"
        ]
    return []


def _weight_problem(
    dq: onnx.NodeProto, w: np.ndarray, scale: np.ndarray | None, u: onnx.NodeProto
) -> list[str]:
    """The weight ``dq`` feeds into ``u`` has an output-channel axis and one scale per channel."""
    axis = _weight_axis(u)
    if w.ndim <= axis:
        return [
            f"{dq.name}: weight of {u.name} has rank {w.ndim}; a "
            f"{u.op_type} weight needs an output-channel axis {axis}"
        ]
    if w.shape[axis] > 1 and (scale is None or scale.size != w.shape[axis]):
        return [
            f"{dq.name}: weight of {u.name} quantized per tensor; the TensorRT "
            "flavour needs per-channel weights"
        ]
    return []


def _dequantize_problems(
    model: onnx.ModelProto, dq: onnx.NodeProto, cons: dict[str, list[onnx.NodeProto]], inits: set[str]
) -> list[str]:
    """A DequantizeLinear feeds only the ops TensorRT fuses, and the weights it feeds them are per-channel."""
    problems = []
    users = cons.get(dq.output[0], [])
    bad = sorted({c.op_type for c in users if c.op_type not in QUANT_OPS})
    if bad:
        problems.append(f"{dq.name}: DequantizeLinear feeds {bad}; only {QUANT_OPS} may take Q/DQ")
    w = _const(model, dq.input[0]) if dq.input[0] in inits else None
    if w is None:
        return problems
    scale = _const(model, dq.input[1])
    for u in users:
        # per-channel applies to the weight input of Conv/ConvTranspose/Gemm only; a scalar
        # or vector Dequantize feeding a Mul/Add (the int8_cpu flavour) has no channel axis
        if (
            u.op_type in QUANT_OPS
            and u.op_type != "MatMul"
            and len(u.input) >= 2
            and u.input[1] == dq.output[0]
        ):
            problems += _weight_problem(dq, w, scale, u)
    return problems


def _qdq_node_problems(
    model: onnx.ModelProto, n: onnx.NodeProto, cons: dict[str, list[onnx.NodeProto]], inits: set[str]
) -> list[str]:
    """One Q or DQ node's problems, in the order check_trt_qdq reports them."""
    problems = []
    if n.op_type == "QuantizeLinear":
        bad = [c.op_type for c in cons.get(n.output[0], []) if c.op_type != "DequantizeLinear"]
        if bad:
            problems.append(f"{n.name}: QuantizeLinear feeds {bad}, not a DequantizeLinear")
    problems += _zero_point_problem(model, n)
    if n.op_type == "DequantizeLinear":
        problems += _dequantize_problems(model, n, cons, inits)
    return problems


def check_trt_qdq(model: onnx.ModelProto) -> list[str]:
    """Problems that would stop TensorRT fusing the Q/DQ graph (empty list = fine).

    Every DequantizeLinear must feed only Conv/ConvTranspose/Gemm/MatMul;
    every QuantizeLinear must feed only DequantizeLinear (a Q/DQ pair);
    zero points must be int8 zeros; weights must be per-channel; and no node
    of the float tail (sparsemax, decode, sigmoid heads) may be quantized.
    """
    problems: list[str] = []
    cons = tensor_consumers(model)
    inits = {i.name for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            problems += _qdq_node_problems(model, n, cons, inits)
    problems += deconv_axis_problems(model)
    tail = float_tail(model)
    for n in model.graph.node:
        if n.name in tail and n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            problems.append(f"{n.name}: Q/DQ inside the float tail (sparsemax/decode/sigmoid heads)")
    return problems
