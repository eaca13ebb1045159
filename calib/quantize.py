"""INT8 Q/DQ ONNX from the fp32 export, with onnxruntime's quantizer.

Two flavours of one calibration (the tensor ranges are computed once per net
and method, then reused):

* ``int8_trt``: what TensorRT's explicit quantization fuses. Symmetric int8
  activations and weights (all zero points 0, range [-127, 127]), per-channel
  weights (scales max|w| / 127, never widened for an int32 bias that is not made),
  Q/DQ only on the inputs of Conv / ConvTranspose / Gemm / MatMul, bias left float
  (TensorRT folds it itself). A graph TensorRT cannot fuse
  would silently run Q/DQ as separate layers, so :func:`check_trt_qdq`
  proves the placement and the build refuses a graph that fails it.
* ``int8_cpu``: what ONNX Runtime's CPU kernels run fastest: QDQ with uint8
  activations and int8 per-channel weights on every op ORT can fuse
  (QLinearConv, QLinearAdd, ...), which ORT turns into integer kernels.
  Weights use 7 bits (``reduce_range``): see :class:`FlavourSpec`. Every
  ConvTranspose is first rewritten as Conv + DepthToSpace + Slice (exact;
  calib/deconv.py), because ORT's CPU provider has no integer ConvTranspose
  and ran a Q/DQ deconvolution in float (48 % of ResNet-50's int8 time).

Both leave the *float tail* alone: every node between the last learned
Conv/ConvTranspose/Gemm/MatMul and a graph output (sparsemax, its TopK /
CumSum / Gather arithmetic, clamps, sigmoid heads, box and keypoint decode).
Quantizing that part rounds the cumulative sums of sparsemax to a handful of
levels and destroys the probability maps (see tests/test_calib_quantize.py).
A linear op with constant weights that reads a Softmax (through layout-only
ops) is not a learned layer but an expectation over a distribution (YOLOv8's
DFL box decode: a 1x1 Conv with weights 0..15 over a softmax of 16 bins;
integral / soft-argmax regression): it belongs to the tail, and so does
everything between it and its Softmax. ``Shape``/``Size`` read only the
shape of their input, so the tail never follows them upstream.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from .deconv import deconv_to_conv
from .float_tail import (
    QUANT_OPS,
    float_head_ops,
    float_tail,
    is_decode_op,  # noqa: F401
    tensor_consumers,
)  # (re-exported)
from .qdq_axis import check_trt_qdq, deconv_axis_problems, weight_axis_overrides  # noqa: F401 (re-exported)

METHODS = ("entropy", "percentile", "minmax")
FLAVOURS = ("int8_trt", "int8_cpu")
CALIB_BATCH = 8


def name_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every unnamed node a unique name (the quantizer excludes nodes by name)."""
    used = {n.name for n in model.graph.node if n.name}
    for i, n in enumerate(model.graph.node):
        if not n.name:
            name = f"{n.op_type}_{i}"
            while name in used:
                name += "_"
            n.name = name
            used.add(name)
    return model


class CropReader:
    """CalibrationDataReader over calibration crops in fixed batches.

    ``set_range``/``__len__`` let onnxruntime collect statistics one batch at
    a time (its ``CalibStridedMinMax`` loop, used for every method), so the
    intermediate tensors of a large net never pile up in memory.
    """

    def __init__(self, crops: np.ndarray, batch: int = CALIB_BATCH, input_name: str = "input") -> None:
        crops = np.asarray(crops, np.float32)
        if crops.ndim != 4 or len(crops) == 0:
            raise ValueError(f"calibration crops must be a non-empty [N,3,H,W] array, got {crops.shape}")
        self.batches = [crops[i : i + batch] for i in range(0, len(crops), batch)]
        self.input_name = input_name
        self._lo, self._hi, self._pos = 0, len(self.batches), 0

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._lo, self._hi, self._pos = start_index, min(end_index, len(self.batches)), start_index

    def get_next(self) -> dict | None:
        if self._pos >= self._hi:
            return None
        self._pos += 1
        return {self.input_name: self.batches[self._pos - 1]}

    def rewind(self) -> None:
        self.set_range(0, len(self.batches))


@dataclass(frozen=True)
class FlavourSpec:
    activation: str  # QuantType name
    weight: str
    op_types: tuple[str, ...] | None  # None = every op onnxruntime can quantize
    extra: dict
    # 7-bit weights: ORT's x86 U8S8 kernels without VNNI (AVX2, this machine) multiply with
    # VPMADDUBSW, whose int16 pair sums saturate for full-range uint8 x int8; onnxruntime's
    # quantization docs name reduce_range as the fix. Measured on the fixture-s probmap net
    # (minmax, 8 crops): probmap max error 0.058 with 8-bit weights, 0.007 with 7-bit, 0.006
    # for the same graph with the fused kernels disabled. TensorRT runs the int8_trt graph on
    # the GPU with full-range weights, so only the CPU flavour pays the bit.
    reduce_range: bool = False
    # ConvTranspose -> Conv + DepthToSpace + Slice before quantizing (calib/deconv.py): ORT's CPU
    # provider has no integer ConvTranspose kernel, so a Q/DQ deconvolution ran in float
    subpixel_deconv: bool = False


def flavour_spec(flavour: str) -> FlavourSpec:
    if flavour == "int8_trt":
        return FlavourSpec(
            "QInt8",
            "QInt8",
            QUANT_OPS,
            {
                "ActivationSymmetric": True,
                "WeightSymmetric": True,
                "QuantizeBias": False,
                "OpTypesToExcludeOutputQuantization": list(QUANT_OPS),
                # a tensor feeding a conv and a residual Add gets the conv its own pair, the Add stays float
                "DedicatedQDQPair": True,
                # ORT (>= 1.20, onnxruntime PR 22020) widens weight scales so an int32 bias would fit,
                # pairing the weight's per-channel scales with the bias by index: on a ConvTranspose's
                # axis 0 (C_in scales, C_out biases) that ran off the bias (IndexError) or widened the
                # wrong channels. The bias stays float here (TensorRT folds it), so the widening has
                # nothing to protect and the weights keep their own scales (max|w| / 127).
                "QDQDisableWeightAdjustForInt32Bias": True,
            },
        )
    if flavour == "int8_cpu":
        return FlavourSpec(
            "QUInt8", "QInt8", None, {"WeightSymmetric": True}, reduce_range=True, subpixel_deconv=True
        )
    raise ValueError(f"unknown INT8 flavour {flavour!r}; choose one of {', '.join(FLAVOURS)}")


def _cache_for(cache: Path, spec: FlavourSpec) -> Path:
    """Ranges of every tensor serve every flavour; ranges of the linear ops' inputs only the
    TensorRT flavour. So a restricted flavour reuses a full cache when one exists."""
    full = cache.with_name(f"{cache.stem}.all.json")
    if spec.op_types is None or full.is_file():
        return full
    return cache.with_name(f"{cache.stem}.{'-'.join(spec.op_types)}.json")


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    table = {
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
        "minmax": CalibrationMethod.MinMax,
    }
    if name not in table:
        raise ValueError(f"unknown --calib-method {name!r}; choose one of {', '.join(METHODS)}")
    return table[name]


def quantize_onnx(
    src: Path,
    dst: Path,
    crops: np.ndarray,
    flavour: str,
    method: str = "entropy",
    cache: Path | None = None,
    keep_float: Iterable[str] | None = None,
    per_channel: bool = True,
    float_heads: bool = False,
    extra_float: Iterable[str] = (),
) -> Path:
    """Quantize ``src`` to ``dst`` in one flavour; the float tail is excluded.

    ``cache`` (a JSON path) shares the tensor ranges between flavours: the
    first call calibrates and writes it, later calls only quantize. Quantize the
    int8_cpu flavour first: it calibrates every tensor, so int8_trt reuses it.
    ``keep_float`` overrides the nodes left float (tests use [] to show the trap);
    ``float_heads`` also keeps :func:`float_head_ops` float (the output convs and the branches of
    the regression heads). ``extra_float`` names more nodes of ``src`` to leave float on top of
    those (the measured fallback, calib.fallback); a ConvTranspose named there keeps its sub-pixel
    rewrite (``<name>__subpixel_*``) float too.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    spec = flavour_spec(flavour)
    model = name_nodes(onnx.load(str(src)))
    if spec.subpixel_deconv:
        model, _ = deconv_to_conv(model)
    if keep_float is None:
        tail = float_tail(model)
        exclude = sorted(tail | float_head_ops(model, tail) if float_heads else tail)
    else:
        exclude = sorted(keep_float)
    more = set(extra_float)
    if more:
        rewritten = {n.name for n in model.graph.node if n.name.split("__subpixel_")[0] in more}
        exclude = sorted(set(exclude) | more | rewritten)
    dst.parent.mkdir(parents=True, exist_ok=True)
    reader = CropReader(crops, input_name=model.graph.input[0].name)
    extra = dict(spec.extra, CalibStridedMinMax=1)
    extra.update(weight_axis_overrides(model, flavour, extra.get("TensorQuantOverrides")))
    kw = {}
    if cache is not None and "calibration_cache_path" in inspect.signature(quantize_static).parameters:
        kw["calibration_cache_path"] = str(_cache_for(cache, spec))
    with tempfile.TemporaryDirectory(prefix="dynpose-q-") as tmp:
        named = Path(tmp) / src.name
        onnx.save(model, str(named))
        level = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)  # the quantizer nags about pre-processing
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # histogram calibrators print progress
                quantize_static(
                    str(named),
                    str(dst),
                    reader,
                    quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(spec.op_types) if spec.op_types else None,
                    per_channel=per_channel,
                    reduce_range=spec.reduce_range,
                    activation_type=getattr(QuantType, spec.activation),
                    weight_type=getattr(QuantType, spec.weight),
                    nodes_to_exclude=exclude,
                    calibrate_method=_method(method),
                    extra_options=extra,
                    **kw,
                )
        finally:
            logging.getLogger().setLevel(level)
    q = onnx.load(str(dst))
    # the tail reads float: no rounding of the logits that sparsemax sorts and sums
    excluded = set(exclude)
    _feed_float(q, lambda n: n.name in excluded)
    _float_outputs(q)
    if spec.op_types is not None:
        restrict_qdq(q, spec.op_types)
    onnx.save(q, str(dst))
    return dst


def restrict_qdq(model: onnx.ModelProto, allowed: Iterable[str]) -> onnx.ModelProto:
    """Feed every op outside ``allowed`` the float tensor again, then drop orphaned Q/DQ.

    onnxruntime gives every consumer of a quantized tensor a Q/DQ pair, so a
    residual Add that shares its input with a Conv would also read it through
    Q/DQ. The TensorRT flavour keeps Q/DQ on the linear ops only.
    """
    allowed = set(allowed)
    return _feed_float(model, lambda n: n.op_type not in allowed)


def _float_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Graph outputs leave in float: a Q/DQ pair right before an output only adds rounding
    (8-bit heatmaps make argmax ties and spoil the sub-pixel shift)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    for out in model.graph.output:
        dq = producer.get(out.name)
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        q = producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or q.input[0] not in producer:
            continue
        src = q.input[0]
        for n in model.graph.node:  # the float tensor takes the output's name
            for k, name in enumerate(n.output):
                if name == src:
                    n.output[k] = out.name
            for k, name in enumerate(n.input):
                if name == src and n is not q:
                    n.input[k] = out.name
        dq.output[0] = f"{out.name}__dead_dq"
        q.input[0] = out.name
    return _prune_qdq(model)


def _feed_float(model: onnx.ModelProto, select) -> onnx.ModelProto:
    """Nodes chosen by ``select`` read the float tensor in front of their Q/DQ pairs."""
    producer = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") or not select(node):
            continue
        for k, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[k] = q.input[0]
    return _prune_qdq(model)


def _prune_qdq(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop Q/DQ nodes whose outputs nobody reads, and initializers nobody uses."""
    while True:
        used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
        dead = [
            n
            for n in model.graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.output[0] not in used
        ]
        if not dead:
            break
        for n in dead:
            model.graph.node.remove(n)
    used = {i for n in model.graph.node for i in n.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return model


# -- graph checks -------------------------------------------------------------------------------------


def qdq_counts(model: onnx.ModelProto) -> dict[str, int]:
    """How many Q and DQ nodes, and how many ops consume a DQ (for reports)."""
    q = sum(n.op_type == "QuantizeLinear" for n in model.graph.node)
    dq = sum(n.op_type == "DequantizeLinear" for n in model.graph.node)
    cons = tensor_consumers(model)
    users = {
        c.name for n in model.graph.node if n.op_type == "DequantizeLinear" for c in cons.get(n.output[0], [])
    }
    return {"quantize": q, "dequantize": dq, "quantized_ops": len(users)}
