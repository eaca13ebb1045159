"""ConvTranspose -> Conv + DepthToSpace + Slice, so ONNX Runtime's CPU kernels run it in int8.

Why: onnxruntime's quantizer does put Q/DQ around a ConvTranspose, but the CPU
execution provider has no integer ConvTranspose kernel (its QDQ fusions cover
Conv, MatMul, Add, ...; ``QLinearConvTranspose`` exists for XNNPACK only), so
the node runs as DequantizeLinear -> float ConvTranspose -> QuantizeLinear.
Profiled on dyn-r50-h32's int8_cpu ResNet-50 (ORT 1.32, 2 threads, batch 8):
the three SimpleBaseline deconvolutions took 48 % of the int8 graph's kernel
time, as much as its 53 QLinearConvs together, so ResNet-50 gained ~1.5x
from INT8 while HRNet-W32 (no deconvolutions) gained ~2.7x.

The rewrite is exact (sub-pixel convolution): a ConvTranspose with stride s
and kernel K = t*s is s*s interleaved convolutions with t x t kernels. One
Conv with s*s*C_out output channels and padding t-1 computes all of them;
DepthToSpace (DCR) interleaves them; a Slice cuts the ConvTranspose's output
window. Per axis, output position ``o`` of the ConvTranspose reads
``D[o + pad_begin]`` of the interleaved map, and sub-position ``c`` uses the
taps ``w[c + s*(t-1-u)], u = 0..t-1`` (every s-th tap from c, reversed), so
the Conv weight is a pure re-indexing of the ConvTranspose weight. The Conv
then quantizes to QLinearConv, and a ReLU right after the ConvTranspose is
moved in front of DepthToSpace (element-wise ops commute with the
interleave), where ORT fuses it into the QLinearConv.

Cost: padding t-1 makes the Conv work on (H+t-1) x (W+t-1) positions instead
of H x W, e.g. 9x7 instead of 8x6 for ResNet-50's first deconvolution: ~15 %
more multiply-adds over the three layers, paid in int8.

Only the int8_cpu flavour is rewritten: TensorRT fuses Q/DQ deconvolutions
itself (int8_trt keeps them), and the fp32 graph stays as exported.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

_INT_MAX = np.iinfo(np.int64).max


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _plan(node: onnx.NodeProto, weight: np.ndarray | None) -> dict | None:
    """The rewrite's parameters for one ConvTranspose, or None when it does not apply
    (weight not constant, not 2-D, groups, dilations, auto_pad/output_shape, kernel not a
    multiple of the stride, or output_padding beyond the end padding)."""
    if weight is None or weight.ndim != 4:
        return None
    a = _attrs(node)
    if a.get("group", 1) != 1 or any(d != 1 for d in a.get("dilations", [1, 1])):
        return None
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or "output_shape" in a:
        return None
    k = list(a.get("kernel_shape", weight.shape[2:]))
    s = list(a.get("strides", [1, 1]))
    pads = list(a.get("pads", [0, 0, 0, 0]))
    op = list(a.get("output_padding", [0, 0]))
    if len(k) != 2 or len(s) != 2 or any(st < 1 or kk % st for kk, st in zip(k, s)):
        return None
    if s[0] != s[1] or k[0] // s[0] != k[1] // s[1]:  # one DepthToSpace block size
        return None
    if any(o > pads[2 + i] for i, o in enumerate(op)):
        return None
    return {"s": s[0], "t": k[0] // s[0], "pb": pads[:2], "pe": pads[2:], "op": op}


def conv_weight(w: np.ndarray, s: int, t: int) -> np.ndarray:
    """ConvTranspose weight [C_in, C_out, t*s, t*s] -> Conv weight [s*s*C_out, C_in, t, t],
    channels in DepthToSpace DCR order ((a*s + b)*C_out + c for sub-position (a, b))."""
    cin, cout = w.shape[:2]
    taps = np.arange(t)[::-1]  # u -> t-1-u
    out = np.empty((s, s, cout, cin, t, t), w.dtype)
    for a in range(s):
        for b in range(s):
            sub = w[:, :, a + s * taps][:, :, :, b + s * taps]  # [C_in, C_out, t, t]
            out[a, b] = sub.transpose(1, 0, 2, 3)
    return out.reshape(s * s * cout, cin, t, t)


def _const(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    return None


def _subpixel_inputs(
    model: onnx.ModelProto, node: onnx.NodeProto, s: int, t: int, base: str
) -> list[str] | None:
    """The Conv's weight (and tiled bias) added as initializers; None, with nothing added, when the
    bias is computed rather than a constant (that node is left alone)."""
    g = model.graph
    wname = f"{base}__subpixel_w"
    g.initializer.append(numpy_helper.from_array(conv_weight(_const(model, node.input[1]), s, t), wname))
    conv_in = [node.input[0], wname]
    if len(node.input) > 2 and node.input[2]:
        bias = _const(model, node.input[2])
        if bias is None:
            g.initializer.pop()
            return None
        bname = f"{base}__subpixel_b"
        g.initializer.append(numpy_helper.from_array(np.tile(bias, s * s), bname))
        conv_in.append(bname)
    return conv_in


def _fused_relu(
    out: str, consumers: dict[str, list[onnx.NodeProto]], graph_outputs: set[str]
) -> onnx.NodeProto | None:
    """The ReLU that is the deconvolution's only consumer (moved before DepthToSpace, where it is
    the same function), unless the deconvolution's output is also a graph output."""
    users = consumers.get(out, [])
    if len(users) == 1 and users[0].op_type == "Relu" and out not in graph_outputs:
        return users[0]
    return None


def _subpixel_nodes(
    g: onnx.GraphProto, plan: dict, conv_in: list[str], base: str, out: str, relu: bool
) -> list[onnx.NodeProto]:
    """Conv (+ ReLU) -> DepthToSpace -> Slice, the last one writing ``out``."""
    s, t = plan["s"], plan["t"]
    conv_out = f"{base}__subpixel"
    nodes = [
        helper.make_node(
            "Conv",
            conv_in,
            [conv_out],
            name=f"{base}__subpixel_conv",
            kernel_shape=[t, t],
            pads=[t - 1] * 4,
            strides=[1, 1],
        )
    ]
    if relu:
        nodes.append(
            helper.make_node("Relu", [conv_out], [f"{conv_out}_relu"], name=f"{base}__subpixel_relu")
        )
        conv_out = f"{conv_out}_relu"
    nodes.append(
        helper.make_node(
            "DepthToSpace",
            [conv_out],
            [f"{base}__subpixel_d2s"],
            name=f"{base}__subpixel_d2s",
            blocksize=s,
            mode="DCR",
        )
    )
    starts = np.array(plan["pb"], np.int64)
    ends = np.array([-(e - o) if e - o > 0 else _INT_MAX for e, o in zip(plan["pe"], plan["op"])], np.int64)
    names = [f"{base}__subpixel_{k}" for k in ("starts", "ends", "axes")]
    for name, v in zip(names, (starts, ends, np.array([2, 3], np.int64))):
        g.initializer.append(numpy_helper.from_array(v, name))
    nodes.append(
        helper.make_node("Slice", [f"{base}__subpixel_d2s", *names], [out], name=f"{base}__subpixel_slice")
    )
    return nodes


def _prune(g: onnx.GraphProto, graph_outputs: set[str]) -> None:
    """Drop initializers no node reads any more, and value_info of tensors the rewrite removed
    (the ConvTranspose's own output)."""
    used = {i for n in g.node for i in n.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    keep_vi = [v for v in g.value_info if v.name in used | graph_outputs]
    del g.value_info[:]
    g.value_info.extend(keep_vi)


def _rewrite(
    model: onnx.ModelProto,
    node: onnx.NodeProto,
    consumers: dict[str, list[onnx.NodeProto]],
    graph_outputs: set[str],
) -> tuple[list[onnx.NodeProto], onnx.NodeProto | None] | None:
    """The nodes replacing one eligible ConvTranspose and the ReLU they absorb; None when it is not
    eligible (see _plan) or its bias is computed."""
    if node.op_type != "ConvTranspose" or len(node.input) < 2:
        return None
    plan = _plan(node, _const(model, node.input[1]))
    if plan is None:
        return None
    base = node.name or node.output[0]
    conv_in = _subpixel_inputs(model, node, plan["s"], plan["t"], base)
    if conv_in is None:
        return None
    relu = _fused_relu(node.output[0], consumers, graph_outputs)
    out = relu.output[0] if relu is not None else node.output[0]
    return _subpixel_nodes(model.graph, plan, conv_in, base, out, relu is not None), relu


def deconv_to_conv(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Rewrite every eligible ConvTranspose in place; returns (model, how many were rewritten).

    The last node of each rewrite (Slice) keeps the name of the tensor the
    ConvTranspose (or the ReLU that followed it) produced, so calibration
    ranges and downstream consumers are unchanged.
    """
    g = model.graph
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    graph_outputs = {o.name for o in g.output}
    new_nodes: list[onnx.NodeProto] = []
    drop: set[int] = set()
    count = 0
    for node in g.node:
        if id(node) in drop:
            continue
        rewritten = _rewrite(model, node, consumers, graph_outputs)
        if rewritten is None:
            new_nodes.append(node)
            continue
        nodes, relu = rewritten
        if relu is not None:
            drop.add(id(relu))
        new_nodes.extend(nodes)
        count += 1
    if count:
        del g.node[:]
        g.node.extend(new_nodes)
        _prune(g, graph_outputs)
    return model, count
