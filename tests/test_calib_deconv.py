"""The sub-pixel rewrite of ConvTranspose (calib/deconv.py): exact in fp32, and in the int8_cpu
flavour every deconvolution becomes an integer Conv (read from the quantized ONNX graph),
while int8_trt keeps its Q/DQ ConvTranspose for TensorRT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from calib.deconv import deconv_to_conv
from calib.quantize import check_trt_qdq, quantize_onnx
from calib.report import run_onnx
from runtime.backends.ort_session import open_session


def _raw(model: nn.Module, path: Path, shape: tuple[int, ...]) -> Path:
    torch.onnx.export(
        model,
        (torch.zeros(shape),),
        str(path),
        dynamo=False,
        input_names=["input"],
        output_names=["y"],
        dynamic_axes={"input": {0: "N"}, "y": {0: "N"}},
        opset_version=17,
    )
    return path


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    return open_session(path).run(None, {"input": x})[0]


@pytest.mark.parametrize(
    "k,s,p,op,relu,bias",
    [
        (4, 2, 1, 0, True, False),
        (4, 2, 1, 1, True, True),
        (2, 2, 0, 0, False, True),
        (6, 3, 1, 0, True, True),
    ],
)
def test_rewrite_is_exact(tmp_path: Path, k, s, p, op, relu, bias) -> None:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.ConvTranspose2d(5, 7, k, stride=s, padding=p, output_padding=op, bias=bias)]
    if relu:
        layers.append(nn.ReLU())
    src = _raw(nn.Sequential(*layers), tmp_path / "d.onnx", (2, 5, 6, 4))
    model, n = deconv_to_conv(onnx.load(str(src)))
    onnx.checker.check_model(model)
    assert n == 1 and not any(x.op_type == "ConvTranspose" for x in model.graph.node)
    onnx.save(model, str(tmp_path / "c.onnx"))
    x = np.random.default_rng(1).standard_normal((3, 5, 6, 4)).astype(np.float32)
    a, b = _run(src, x), _run(tmp_path / "c.onnx", x)
    assert a.shape == b.shape
    np.testing.assert_allclose(b, a, atol=1e-5 * max(1.0, float(np.abs(a).max())))


def test_kernel_not_a_multiple_of_the_stride_is_left_alone(tmp_path: Path) -> None:
    src = _raw(
        nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1), tmp_path / "d.onnx", (1, 4, 5, 5)
    )
    model, n = deconv_to_conv(onnx.load(str(src)))
    assert n == 0 and sum(x.op_type == "ConvTranspose" for x in model.graph.node) == 1


def test_computed_bias_is_left_alone_and_adds_nothing(tmp_path: Path) -> None:
    """A ConvTranspose whose bias is another node's output keeps its node, and the rewrite's weight
    initializer is not left behind."""
    src = _raw(nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1), tmp_path / "d.onnx", (1, 4, 5, 5))
    model = onnx.load(str(src))
    deconv = next(n for n in model.graph.node if n.op_type == "ConvTranspose")
    bias = deconv.input[2]
    model.graph.node.insert(0, onnx.helper.make_node("Identity", [bias], ["computed_bias"]))
    deconv.input[2] = "computed_bias"
    before = {i.name for i in model.graph.initializer}
    out, n = deconv_to_conv(model)
    assert n == 0 and {i.name for i in out.graph.initializer} == before
    assert [x.op_type for x in out.graph.node] == ["Identity", "ConvTranspose"]


class DeconvHead(nn.Module):
    """A tiny SimpleBaseline: strided convs down to 1/16, two k4/s2 deconvolutions (+BN+ReLU), 1x1."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, 4, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 4, 1), nn.ReLU())
        self.head = nn.Sequential(
            nn.ConvTranspose2d(32, 16, 4, 2, 1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.ConvTranspose2d(16, 16, 4, 2, 1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 17, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@pytest.fixture(scope="module")
def deconv_net(tmp_path_factory, coco_mini: Path) -> dict:
    from build.export import export_onnx
    from calib.data import load_coco_calib

    d = tmp_path_factory.mktemp("deconv")
    torch.manual_seed(0)
    net = DeconvHead()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    src = export_onnx(net.eval(), d / "deconv.onnx", ["heatmaps"])
    crops = load_coco_calib(coco_mini, max_crops=8).crops
    # the CPU flavour first, as the build does: int8_trt then reuses its cache of ranges
    out = {"fp32": src, "crops": crops}
    for fl in ("int8_cpu", "int8_trt"):
        out[fl] = quantize_onnx(
            src, d / f"deconv.{fl}.onnx", crops, fl, "minmax", cache=d / "deconv.cache.json"
        )
    return out


def test_int8_cpu_deconvolutions_are_integer_convs(deconv_net: dict) -> None:
    q = onnx.load(str(deconv_net["int8_cpu"]))
    producer = {o: n for n in q.graph.node for o in n.output}
    assert not any(n.op_type == "ConvTranspose" for n in q.graph.node)
    sub = [n for n in q.graph.node if n.op_type == "Conv" and n.name.endswith("__subpixel_conv")]
    assert len(sub) == 2
    for n in sub:  # activation and weight both through Q/DQ: ORT fuses the group into QLinearConv
        assert [producer[i].op_type for i in n.input[:2]] == ["DequantizeLinear", "DequantizeLinear"]
        w = producer[n.input[1]]
        assert producer.get(w.input[0]) is None and any(
            i.name == w.input[0] and i.data_type == onnx.TensorProto.INT8 for i in q.graph.initializer
        )


def test_int8_cpu_rewrite_tracks_fp32_and_trt_keeps_deconv(deconv_net: dict) -> None:
    ref = run_onnx(deconv_net["fp32"], deconv_net["crops"])
    got = run_onnx(deconv_net["int8_cpu"], deconv_net["crops"], list(ref))["heatmaps"]
    scale = float(np.abs(ref["heatmaps"]).max())
    assert got.shape == ref["heatmaps"].shape and np.abs(got - ref["heatmaps"]).max() < 0.1 * scale
    trt = onnx.load(str(deconv_net["int8_trt"]))
    assert sum(n.op_type == "ConvTranspose" for n in trt.graph.node) == 2
    assert check_trt_qdq(trt) == []
