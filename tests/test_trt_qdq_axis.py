"""int8_trt quantizes ConvTranspose weights on the axis TensorRT reads (input channels, axis 0).

ONNX Runtime's quantizer puts them on axis 1 (output channels), which TensorRT's
deconvolution kernels do not support (NVIDIA/TensorRT#2380; the reference is cited at
build.trt.compat.DECONV_WEIGHT_AXIS). Real quantizer, real ONNX Runtime, no TensorRT needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from build.trt.compat import DECONV_WEIGHT_AXIS
from calib.quantize import check_trt_qdq, deconv_axis_problems, quantize_onnx
from runtime.backends.ort_session import open_session

C_IN, C_OUT = 8, 5  # different, so an axis mix-up changes the scale count


def _deconv_net(path: Path) -> np.ndarray:
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(C_IN, 3, 3, 3)).astype(np.float32)
    # per-input-channel magnitudes differ, so per-channel scales on either axis matter
    wt = (rng.normal(size=(C_IN, C_OUT, 4, 4)) * np.linspace(0.1, 3, C_IN)[:, None, None, None]).astype(
        np.float32
    )
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node(
            "ConvTranspose", ["r", "wt"], ["out"], strides=[2, 2], pads=[1, 1, 1, 1], name="deconv"
        ),
    ]
    g = helper.make_graph(
        nodes,
        "deconv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 16, 12])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", C_OUT, 32, 24])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(wt, "wt")],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return rng.normal(size=(16, 3, 16, 12)).astype(np.float32)


def _weight_dq(model: onnx.ModelProto) -> onnx.NodeProto:
    producer = {o: n for n in model.graph.node for o in n.output}
    deconv = next(n for n in model.graph.node if n.op_type == "ConvTranspose")
    return producer[deconv.input[1]]


@pytest.fixture(scope="module")
def quantized(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("deconv")
    crops = _deconv_net(d / "net.onnx")
    out = {
        f: onnx.load(str(quantize_onnx(d / "net.onnx", d / f"{f}.onnx", crops, f, "minmax")))
        for f in ("int8_trt", "int8_cpu")
    }
    out["dir"], out["crops"] = d, crops
    return out


def test_int8_trt_deconv_weight_axis_is_tensorrts(quantized) -> None:
    assert DECONV_WEIGHT_AXIS == 0
    dq = _weight_dq(quantized["int8_trt"])
    axis = next(a.i for a in dq.attribute if a.name == "axis")
    scale = next(
        numpy_helper.to_array(i) for i in quantized["int8_trt"].graph.initializer if i.name == dq.input[1]
    )
    assert axis == DECONV_WEIGHT_AXIS and scale.shape == (C_IN,)
    assert check_trt_qdq(quantized["int8_trt"]) == []


def _ort_default_qdq(d: Path, crops: np.ndarray) -> onnx.ModelProto:
    """ONNX Runtime's quantizer as it comes (per-channel QDQ, its own ConvTranspose weight axis)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"input": crops[i : i + 4]} for i in range(0, len(crops), 4)])

        def get_next(self):
            return next(self.it, None)

    out = d / "ort_default.onnx"
    quantize_static(
        str(d / "net.onnx"),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )
    return onnx.load(str(out))


def test_onnxruntime_default_axis_is_refused_for_tensorrt(quantized) -> None:
    """ORT's own quantizer puts ConvTranspose weights on axis 1 (right for ORT); the TensorRT check
    names the axis. (Our int8_cpu flavour has no ConvTranspose left: calib/deconv.py rewrites it.)"""
    model = _ort_default_qdq(quantized["dir"], quantized["crops"])
    dq = _weight_dq(model)
    assert next(a.i for a in dq.attribute if a.name == "axis") == 1
    problems = deconv_axis_problems(model)
    assert len(problems) == 1 and "axis 1" in problems[0] and "axis 0" in problems[0]
    assert any("axis 1" in p for p in check_trt_qdq(model))
    assert not any(n.op_type == "ConvTranspose" for n in quantized["int8_cpu"].graph.node)


def test_int8_trt_with_axis_0_still_computes_the_net(quantized) -> None:
    d, x = quantized["dir"], quantized["crops"][:4]
    ref = open_session(d / "net.onnx").run(None, {"input": x})[0]
    got = open_session(d / "int8_trt.onnx").run(None, {"input": x})[0]
    rel = np.abs(got - ref).max() / np.abs(ref).max()
    assert rel < 0.05, rel  # 8-bit weights and activations: a few percent of the output scale


def _biased_deconv_net(
    path: Path, c_in: int, c_out: int, bias_scale: float = 1.0, group: int = 1
) -> np.ndarray:
    """Conv -> ConvTranspose with a bias (SimpleBaseline's deconvolutions have one after BN folding)."""
    rng = np.random.default_rng(1)
    w1 = rng.normal(size=(c_in, 3, 3, 3)).astype(np.float32)
    wt = (
        rng.normal(size=(c_in, c_out // group, 4, 4)) * np.linspace(0.1, 3, c_in)[:, None, None, None]
    ).astype(np.float32)
    bt = (rng.normal(size=c_out) * bias_scale).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node(
            "ConvTranspose",
            ["r", "wt", "bt"],
            ["out"],
            strides=[2, 2],
            pads=[1, 1, 1, 1],
            group=group,
            name="deconv",
        ),
    ]
    g = helper.make_graph(
        nodes,
        "deconv_bias",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 6])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", c_out, 16, 12])],
        [
            numpy_helper.from_array(w1, "w1"),
            numpy_helper.from_array(wt, "wt"),
            numpy_helper.from_array(bt, "bt"),
        ],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return rng.normal(size=(8, 3, 8, 6)).astype(np.float32)


@pytest.mark.parametrize("c_in,c_out", [(16, 4), (4, 16), (6, 6)], ids=["in>out", "in<out", "in=out"])
def test_int8_trt_quantizes_a_biased_deconv_of_any_channel_counts(tmp_path, c_in, c_out) -> None:
    """ORT (>= 1.20) widens weight scales so an int32-quantized bias fits, walking the weight's
    per-channel scales against the bias by index. On axis 0 of a ConvTranspose (C_in scales, C_out
    biases) that walk ran off the bias (dyn-r50-h32's 2048 -> 256 deconvolution: "IndexError: index
    256 is out of bounds"). int8_trt keeps the bias float, so the widening has no reason to run."""
    crops = _biased_deconv_net(tmp_path / "net.onnx", c_in, c_out)
    q = onnx.load(str(quantize_onnx(tmp_path / "net.onnx", tmp_path / "q.onnx", crops, "int8_trt", "minmax")))
    assert check_trt_qdq(q) == []
    dq = _weight_dq(q)
    scale = next(numpy_helper.to_array(i) for i in q.graph.initializer if i.name == dq.input[1])
    assert scale.shape == (c_in,)
    x = crops[:4]
    ref = open_session(tmp_path / "net.onnx").run(None, {"input": x})[0]
    got = open_session(tmp_path / "q.onnx").run(None, {"input": x})[0]
    assert np.abs(got - ref).max() / np.abs(ref).max() < 0.05


def test_int8_trt_weight_scales_are_the_weights_own_whatever_the_bias(tmp_path) -> None:
    """A bias far larger than input scale x weight scale x 2^31 made ORT widen the weight scales
    (coarser int8 weights) for an int32 bias the TensorRT flavour never makes; on a ConvTranspose
    it widened input channel i for output channel i's bias. The scales must be max|w| / 127."""
    c_in, c_out = 4, 16
    crops = _biased_deconv_net(tmp_path / "net.onnx", c_in, c_out, bias_scale=1e7)
    q = onnx.load(str(quantize_onnx(tmp_path / "net.onnx", tmp_path / "q.onnx", crops, "int8_trt", "minmax")))
    w = numpy_helper.to_array(
        next(i for i in onnx.load(str(tmp_path / "net.onnx")).graph.initializer if i.name == "wt")
    )
    dq = _weight_dq(q)
    scale = next(numpy_helper.to_array(i) for i in q.graph.initializer if i.name == dq.input[1])
    np.testing.assert_allclose(scale, np.abs(w).max(axis=(1, 2, 3)) / 127, rtol=1e-5)


@pytest.mark.parametrize("flavour", ["int8_trt", "int8_cpu"])
def test_grouped_deconv_quantizes_in_both_flavours(tmp_path, flavour) -> None:
    """A grouped ConvTranspose (weight [C_in, C_out/group, k, k]) stays a ConvTranspose in int8_cpu
    (calib/deconv.py rewrites group 1 only); ORT's per-channel axis 1 gave it C_out/group scales
    and then failed to broadcast them against the C_out int32 bias (ValueError)."""
    crops = _biased_deconv_net(tmp_path / "net.onnx", 8, 4, group=2)
    q = quantize_onnx(tmp_path / "net.onnx", tmp_path / "q.onnx", crops, flavour, "minmax")
    if flavour == "int8_trt":
        assert check_trt_qdq(onnx.load(str(q))) == []
    x = crops[:4]
    ref = open_session(tmp_path / "net.onnx").run(None, {"input": x})[0]
    got = open_session(q).run(None, {"input": x})[0]
    assert np.abs(got - ref).max() / np.abs(ref).max() < 0.05
