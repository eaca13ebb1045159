"""RTMDet nano/tiny/s/m: MMDet's parameter names and counts, strict loading of a checkpoint in
MMDet's layout, the published sizes, and the exported detector graph against a reference
decode written from MMDet's documented behaviour (plain loops)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from build.checkpoint import CheckpointMismatch, load_strict
from build.detector_rtmdet import export_rtmdet
from build.flops import count_macs, count_params
from build.models.rtmdet import ARCHS, PUBLISHED, RTMDet, arch_of, build_rtmdet, num_classes_of
from runtime.backends.ort_session import open_session
from runtime.detectors.yolo import layout_from_metadata, read_metadata

# state-dict tensors per variant (80 classes; the class count changes shapes, not keys), counted
# from MMDet 3.x's modules: ConvModule = conv.weight + 5 BN tensors (weight, bias, running_mean,
# running_var, num_batches_tracked), ChannelAttention = fc.weight/bias, nano's depthwise-separable
# convs two ConvModules each; RTMDetSepBNHead lists the shared convs under every level.
KEY_COUNTS = {"rtmdet-nano": 698, "rtmdet-tiny": 476, "rtmdet-s": 512, "rtmdet-m": 692}

# names (and shapes where they pin a width) from MMDet's cspnext.py / csp_layer.py /
# cspnext_pafpn.py / rtmdet_head.py, as released checkpoints carry them
COMMON_KEYS = (
    "backbone.stem.0.conv.weight",
    "backbone.stem.2.bn.running_var",
    "backbone.stage1.1.main_conv.conv.weight",
    "backbone.stage2.1.blocks.0.conv2.depthwise_conv.conv.weight",
    "backbone.stage3.1.attention.fc.bias",
    "backbone.stage4.1.conv1.conv.weight",  # SPPBottleneck
    "backbone.stage4.2.final_conv.bn.num_batches_tracked",
    "neck.reduce_layers.0.conv.weight",
    "neck.reduce_layers.1.bn.bias",
    "neck.top_down_blocks.1.short_conv.conv.weight",
    "neck.bottom_up_blocks.1.final_conv.bn.weight",
    "bbox_head.rtm_cls.2.weight",
    "bbox_head.rtm_reg.0.bias",
)
DENSE_KEYS = (  # tiny / s / m: plain 3x3 ConvModules
    "backbone.stage1.0.conv.weight",
    "neck.downsamples.1.conv.weight",
    "neck.out_convs.2.conv.weight",
    "neck.top_down_blocks.0.blocks.0.conv1.conv.weight",
    "bbox_head.cls_convs.2.1.conv.weight",  # the shared conv, listed at level 2 too
    "bbox_head.cls_convs.2.1.bn.running_mean",  # a BN per level
)
DEPTHWISE_KEYS = (  # nano: DepthwiseSeparableConvModule everywhere MMDet's use_depthwise reaches
    "backbone.stage1.0.depthwise_conv.conv.weight",
    "backbone.stage1.0.pointwise_conv.bn.weight",
    "neck.downsamples.1.depthwise_conv.conv.weight",
    "neck.out_convs.2.pointwise_conv.conv.weight",
    "neck.top_down_blocks.0.blocks.0.conv1.depthwise_conv.conv.weight",
    "bbox_head.cls_convs.2.1.pointwise_conv.conv.weight",
    "bbox_head.reg_convs.1.0.depthwise_conv.bn.running_mean",
)
ABSENT_KEYS = (
    "neck.top_down_blocks.0.attention.fc.weight",  # the neck's CSPLayers have no channel attention
    "bbox_head.rtm_obj.0.weight",  # with_objectness=False in every RTMDet config
    "bbox_head.scales.0.scale",  # the SepBN head has no Scale layers
)
# (variant, key) -> shape: widths follow widen_factor, the head follows the neck's out_channels
SHAPES = {
    ("rtmdet-nano", "backbone.stem.0.conv.weight"): (8, 3, 3, 3),
    ("rtmdet-nano", "bbox_head.rtm_reg.0.weight"): (4, 64, 1, 1),
    ("rtmdet-tiny", "backbone.stem.0.conv.weight"): (12, 3, 3, 3),
    ("rtmdet-tiny", "neck.out_convs.0.conv.weight"): (96, 96, 3, 3),
    ("rtmdet-s", "neck.reduce_layers.0.conv.weight"): (256, 512, 1, 1),
    ("rtmdet-s", "bbox_head.rtm_cls.1.weight"): (80, 128, 1, 1),
    ("rtmdet-m", "backbone.stage4.2.attention.fc.weight"): (768, 768, 1, 1),
    ("rtmdet-m", "bbox_head.cls_convs.0.0.conv.weight"): (192, 192, 3, 3),
}


@pytest.fixture(scope="module")
def models() -> dict[str, RTMDet]:
    torch.manual_seed(0)
    return {name: build_rtmdet(name).eval() for name in ARCHS}


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_mmdet_key_names_and_count(models: dict[str, RTMDet], name: str) -> None:
    sd = models[name].state_dict()
    assert len(sd) == KEY_COUNTS[name]
    depthwise = ARCHS[name].depthwise
    for key in COMMON_KEYS + (DEPTHWISE_KEYS if depthwise else DENSE_KEYS):
        assert key in sd, key
    for key in ABSENT_KEYS + (DENSE_KEYS if depthwise else DEPTHWISE_KEYS):
        assert key not in sd, key
    for (variant, key), shape in SHAPES.items():
        if variant == name:
            assert tuple(sd[key].shape) == shape, key


def test_share_conv_shares_weights_keeps_bns(models: dict[str, RTMDet]) -> None:
    """share_conv (tiny/s/m): one conv weight object at every level, one BN per level; nano does not share."""
    head = models["rtmdet-s"].bbox_head
    assert head.cls_convs[2][1].conv.weight is head.cls_convs[0][1].conv.weight
    assert head.reg_convs[1][0].conv.weight is head.reg_convs[0][0].conv.weight
    assert head.cls_convs[2][1].bn is not head.cls_convs[0][1].bn
    nano = models["rtmdet-nano"].bbox_head
    assert (
        nano.cls_convs[1][0].pointwise_conv.conv.weight is not nano.cls_convs[0][0].pointwise_conv.conv.weight
    )


@pytest.mark.parametrize(("name", "classes"), sorted(PUBLISHED))
def test_params_and_macs_match_the_published_tables(name: str, classes: int) -> None:
    """Within 2.5 % of MMDet's / MMPose's RTMDet tables, which count convolutions and linear
    layers only (build.flops norms=False; with BN, nano's depthwise layers add 4 %)."""
    params, gflops = PUBLISHED[(name, classes)]
    model = build_rtmdet(name, classes)
    size = ARCHS[name].input_size
    assert count_params(model) == pytest.approx(params, rel=0.025)
    assert count_macs(model, (1, 3, size, size), norms=False) == pytest.approx(gflops, rel=0.025)


def _mmdet_checkpoint(tmp_path: Path, model: RTMDet, seed: int) -> Path:
    """A checkpoint as MMDet saves one: ``meta`` + ``state_dict`` of fresh random tensors."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in model.state_dict().items():
        sd[k] = v.clone() if v.dtype == torch.long else torch.randn(v.shape, generator=g) * 0.1
    for level in (1, 2):  # the file holds the shared convs once per level, with equal values
        for k in [k for k in sd if k.startswith("bbox_head.cls_convs.0.") and k.endswith("conv.weight")]:
            if model.arch.share_conv:
                sd[k.replace("cls_convs.0.", f"cls_convs.{level}.")] = sd[k]
    for k in [k for k in sd if k.startswith("bbox_head.reg_convs.0.") and k.endswith("conv.weight")]:
        if model.arch.share_conv:
            for level in (1, 2):
                sd[k.replace("reg_convs.0.", f"reg_convs.{level}.")] = sd[k]
    path = tmp_path / f"{model.arch.name}.pth"
    torch.save({"meta": {"epoch": 100}, "state_dict": sd}, path)
    return path


@pytest.mark.parametrize(("name", "classes"), [("rtmdet-nano", 1), ("rtmdet-s", 80), ("rtmdet-m", 1)])
def test_checkpoint_in_mmdet_layout_loads_strictly_and_names_its_arch(
    tmp_path: Path, name: str, classes: int
) -> None:
    src = build_rtmdet(name, classes)
    path = _mmdet_checkpoint(tmp_path, src, 3)
    sd = torch.load(path, weights_only=True)["state_dict"]
    assert arch_of(sd) == name and num_classes_of(sd) == classes
    model = build_rtmdet(name, classes)
    info = load_strict(model, path, "detector")
    assert info["source"] == "checkpoint"
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k
    # one tensor short is refused, naming it
    del sd["neck.reduce_layers.1.bn.running_var"]
    torch.save({"state_dict": sd}, tmp_path / "short.pth")
    with pytest.raises(CheckpointMismatch, match="neck.reduce_layers.1.bn.running_var"):
        load_strict(build_rtmdet(name, classes), tmp_path / "short.pth", "detector")
    assert arch_of(sd) is None


def reference_decode(model: RTMDet, rgb: np.ndarray) -> np.ndarray:
    """[N, 4 + C, A] from MMDet's documented test-time behaviour, one prior at a time: normalise
    BGR with the data preprocessor's mean/std, run the net, then for level l (stride s) and cell
    (y, x) the prior is (x * s, y * s) (MlvlPointGenerator, offset 0); the head's distances are
    already in pixels (exp first where exp_on_reg); distance2bbox subtracts (l, t), adds (r, b)
    and clamps to the image; scores are the logits' sigmoid."""
    n, _, h, w = rgb.shape
    mean, std = np.array([103.53, 116.28, 123.675]), np.array([57.375, 57.12, 58.395])
    bgr = (rgb[:, ::-1] * 255.0 - mean[None, :, None, None]) / std[None, :, None, None]
    with torch.no_grad():
        cls_scores, bbox_preds = model(torch.from_numpy(bgr.astype(np.float32)))
    rows: list[list[list[float]]] = [[] for _ in range(n)]
    for cls_t, reg_t, s in zip(cls_scores, bbox_preds, (8, 16, 32)):
        cls, reg = cls_t.numpy().astype(np.float64), reg_t.numpy().astype(np.float64)
        for b in range(n):
            for y in range(cls.shape[2]):
                for x in range(cls.shape[3]):
                    px, py = x * s, y * s
                    left, top, right, bottom = (float(v) for v in reg[b, :, y, x])
                    x1 = min(max(px - left, 0.0), w)
                    y1 = min(max(py - top, 0.0), h)
                    x2 = min(max(px + right, 0.0), w)
                    y2 = min(max(py + bottom, 0.0), h)
                    scores = [1 / (1 + math.exp(-float(c))) for c in cls[b, :, y, x]]
                    rows[b].append([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, *scores])
    return np.array(rows, np.float64).transpose(0, 2, 1)


def _randomize_bn(model: RTMDet, seed: int) -> RTMDet:
    """Random BN statistics so the check covers them (fresh BNs are the identity)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


@pytest.mark.parametrize(
    ("name", "classes", "size"),
    [("rtmdet-nano", 1, 320), ("rtmdet-tiny", 80, 256), ("rtmdet-s", 1, 256), ("rtmdet-m", 1, 192)],
)
def test_exported_graph_matches_reference_decode_at_dynamic_batch(
    tmp_path: Path, name: str, classes: int, size: int
) -> None:

    torch.manual_seed(1)
    model = _randomize_bn(build_rtmdet(name, classes), 2)
    path = export_rtmdet(model, tmp_path / "det.onnx", size, {"license": "test"})
    m = onnx.load(str(path))
    dims = m.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, size, size]
    layout = layout_from_metadata(read_metadata(m))
    assert layout is not None and (layout.family, layout.num_classes) == ("yolov8", classes)
    sess = open_session(path, 1)
    anchors = sum((size // s) ** 2 for s in (8, 16, 32))
    rng = np.random.default_rng(4)
    for batch in (1, 3):
        rgb = rng.random((batch, 3, size, size), dtype=np.float32)
        got = sess.run(None, {sess.get_inputs()[0].name: rgb})[0]
        assert got.shape == (batch, 4 + classes, anchors)
        ref = reference_decode(model, rgb.astype(np.float64))
        np.testing.assert_allclose(got[:, 4:], ref[:, 4:], atol=1e-4)
        np.testing.assert_allclose(got[:, :4], ref[:, :4], atol=1e-3 * size, rtol=1e-3)
