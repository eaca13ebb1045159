"""Model zoo: output contract, cost against docs/DESIGN.md section 4, MMPose checkpoint layout, ONNX export.

Every registered architecture is tested with both heads (output contract,
ONNX export), so a newly registered model is covered without touching this
file. The docs/DESIGN.md section 4 models are also checked for cost and for the
checkpoint layout of their released MMPose weights.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from build.flops import count_macs, count_params
from build.models import build_pose_net, build_router, get_spec, list_models
from build.models.registry import DECONV_HEADS, HEAD_KINDS
from build.models.vit import VisionTransformer

N_KPT = 17
HM_HW = (64, 48)
# the deconvolution heads on every backbone that takes them; the SimCC (RTMPose) nets have
# their own input sizes and outputs and are covered by tests/test_rtmpose.py
CASES = [(n, h) for n in list_models() for h in HEAD_KINDS if h in DECONV_HEADS and h in get_spec(n).heads]
# docs/DESIGN.md section 4's table: these carry reference costs and a released MMPose checkpoint layout.
DESIGN_TABLE = ("res50", "hrnet-w32", "hrnet-w48", "mbv2", "probpose-s")


def _crops(n: int, seed: int = 0) -> torch.Tensor:
    """Normalised-crop-like input: roughly zero mean, unit variance."""
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, 3, 256, 192), dtype=np.float32))


@pytest.mark.parametrize("name,head", CASES, ids=[f"{n}-{h}" for n, h in CASES])
def test_outputs_follow_the_onnx_contract(name: str, head: str) -> None:
    net = build_pose_net(name, head).eval()
    with torch.no_grad():
        outs = net(_crops(2))
    names = net.output_names
    assert len(outs) == len(names)
    shapes = {n: tuple(o.shape) for n, o in zip(names, outs)}
    if head == "heatmap":
        assert shapes == {"heatmaps": (2, N_KPT, *HM_HW)}
        return
    assert shapes == {
        "probmaps": (2, N_KPT, *HM_HW),
        "presence": (2, N_KPT),
        "visibility": (2, N_KPT),
        "oks": (2, N_KPT),
    }
    probs = outs[0]
    assert float(probs.min()) >= 0.0 and float(probs.max()) <= 1.0
    np.testing.assert_allclose(probs.sum(dim=(2, 3)).numpy(), 1.0, atol=1e-4)
    for scalar in outs[1:]:
        assert torch.isfinite(scalar).all() and float(scalar.min()) >= 0.0 and float(scalar.max()) <= 1.0


def test_router_scores_lie_in_0_1() -> None:
    router = build_router().eval()
    with torch.no_grad():
        (score,) = router(_crops(3, seed=1))
    assert tuple(score.shape) == (3, 1)
    assert bool(((score > 0) & (score < 1)).all())


def test_router_costs_under_3_percent_of_res50() -> None:
    assert count_macs(build_router()) < 0.03 * count_macs(build_pose_net("res50"))


def test_design_table_models_are_registered_with_reference_costs() -> None:
    for name in DESIGN_TABLE:
        spec = get_spec(name)
        assert spec.gmacs is not None and spec.params_m is not None, f"{name}: ModelSpec lacks gmacs/params_m"


@pytest.mark.parametrize("name", DESIGN_TABLE)
def test_cost_matches_design_table(name: str) -> None:
    """Counted MACs and parameters within 3% of docs/DESIGN.md section 4.

    ProbPose-s's table entry is its ProbMapHead model with all four aux heads;
    our export skips the error head (not an output), so its MACs are added back.
    """
    spec = get_spec(name)
    head = spec.extra.get("reference_head", "heatmap")
    net = build_pose_net(name, head)
    macs = count_macs(net)
    if head == "probmap":
        macs += count_macs(net.head.error_layers, (1, spec.out_channels, *spec.feat_hw))
    assert macs == pytest.approx(spec.gmacs, rel=0.03), f"{name}: {macs:.3f} GMACs vs table {spec.gmacs}"
    params = count_params(net)
    assert params == pytest.approx(spec.params_m, rel=0.03), (
        f"{name}: {params:.3f} M params vs {spec.params_m}"
    )


def test_count_macs_uses_the_mmpose_conventions() -> None:
    """Hand-counted: conv per output pixel, deconv per *input* pixel, linear per output, BN 2 per output."""
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.BatchNorm2d(8),
        nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1, bias=False),
        nn.Flatten(),
        nn.Linear(4 * 8 * 6, 5),
    )
    net.train()
    conv = (8 * 4 * 3) * 3 * 3 * 3  # 8x4x3 outputs, each 3 in-ch x 3x3 taps
    deconv = (8 * 4 * 3) * 4 * 4 * 4  # 8x4x3 inputs, each scatters 4 out-ch x 4x4
    linear = 5 * (4 * 8 * 6)
    bn = 2 * (8 * 4 * 3)  # mmengine: scale and shift per output element
    assert count_macs(net, (1, 3, 8, 6)) * 1e9 == pytest.approx(conv + deconv + linear + bn)
    assert count_macs(net, (2, 3, 8, 6)) * 1e9 == pytest.approx(2 * (conv + deconv + linear + bn))
    assert net.training, "count_macs must restore the training flag"
    bn_params = 2 * 8
    assert count_params(net) * 1e6 == (8 * 3 * 9 + 8) + bn_params + 8 * 4 * 16 + (192 * 5 + 5)


def test_count_macs_sees_attention_matmuls() -> None:
    """ViT-S: the two attention matmuls are 2*N^2*C per layer, beyond the linears."""
    vit = VisionTransformer()
    n, c, layers = 16 * 12, 384, 12
    linears = layers * n * (c * 3 * c + c * c + 2 * c * 4 * c)
    patch = n * c * 3 * 16 * 16
    assert count_macs(vit) * 1e9 == pytest.approx(linears + patch + layers * 2 * n * n * c)


def test_count_macs_rejects_a_bad_shape() -> None:
    with pytest.raises(ValueError, match="input_shape"):
        count_macs(build_router(), (3, 256, 192))


# Keys and shapes taken from the MMPose / mmpretrain / ProbPose sources named in
# each architecture's module docstring. ``None`` = must NOT exist.
LAYOUT = {
    "res50": {
        "backbone.conv1.weight": (64, 3, 7, 7),
        "backbone.layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "backbone.layer4.2.bn3.running_var": (2048,),
        "head.deconv_layers.0.weight": (2048, 256, 4, 4),
        "head.deconv_layers.1.running_mean": (256,),
        "head.deconv_layers.6.weight": (256, 256, 4, 4),
        "head.final_layer.weight": (N_KPT, 256, 1, 1),
    },
    "hrnet-w32": {
        "backbone.conv2.weight": (64, 64, 3, 3),
        "backbone.bn2.running_var": (64,),
        "backbone.layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "backbone.layer1.3.conv3.weight": (256, 64, 1, 1),
        "backbone.transition1.0.0.weight": (32, 256, 3, 3),
        "backbone.transition1.1.0.0.weight": (64, 256, 3, 3),
        "backbone.transition2.2.0.0.weight": (128, 64, 3, 3),
        "backbone.transition2.0.0.weight": None,
        "backbone.transition3.3.0.0.weight": (256, 128, 3, 3),
        "backbone.stage2.0.fuse_layers.0.1.0.weight": (32, 64, 1, 1),
        "backbone.stage2.0.fuse_layers.1.0.0.0.weight": (64, 32, 3, 3),
        "backbone.stage3.3.branches.2.3.conv2.weight": (128, 128, 3, 3),
        "backbone.stage4.0.fuse_layers.3.0.0.0.weight": (32, 32, 3, 3),
        "backbone.stage4.0.fuse_layers.3.0.2.0.weight": (256, 32, 3, 3),
        "backbone.stage4.2.fuse_layers.0.3.0.weight": (32, 256, 1, 1),
        "backbone.stage4.2.fuse_layers.1.0.0.0.weight": None,
        "backbone.stage4.2.branches.3.3.bn2.weight": (256,),
        "head.final_layer.weight": (N_KPT, 32, 1, 1),
        "head.deconv_layers.0.weight": None,
    },
    "hrnet-w48": {
        "backbone.transition1.0.0.weight": (48, 256, 3, 3),
        "backbone.transition3.3.0.0.weight": (384, 192, 3, 3),
        "backbone.stage3.0.fuse_layers.2.0.1.0.weight": (192, 48, 3, 3),
        "backbone.stage4.2.fuse_layers.0.3.0.weight": (48, 384, 1, 1),
        "backbone.stage4.2.fuse_layers.1.0.0.0.weight": None,
        "head.final_layer.weight": (N_KPT, 48, 1, 1),
    },
    "mbv2": {
        "backbone.conv1.conv.weight": (32, 3, 3, 3),
        "backbone.conv1.bn.running_mean": (32,),
        "backbone.layer1.0.conv.0.conv.weight": (32, 1, 3, 3),
        "backbone.layer1.0.conv.1.conv.weight": (16, 32, 1, 1),
        "backbone.layer1.0.conv.2.conv.weight": None,
        "backbone.layer2.0.conv.0.conv.weight": (96, 16, 1, 1),
        "backbone.layer2.0.conv.1.conv.weight": (96, 1, 3, 3),
        "backbone.layer2.0.conv.2.bn.weight": (24,),
        "backbone.layer7.0.conv.2.conv.weight": (320, 960, 1, 1),
        "backbone.conv2.conv.weight": (1280, 320, 1, 1),
        "head.deconv_layers.0.weight": (1280, 256, 4, 4),
    },
    "probpose-s": {
        "backbone.patch_embed.projection.weight": (384, 3, 16, 16),
        "backbone.patch_embed.projection.bias": (384,),
        "backbone.pos_embed": (1, 192, 384),
        "backbone.cls_token": None,
        "backbone.layers.0.ln1.weight": (384,),
        "backbone.layers.11.attn.qkv.weight": (1152, 384),
        "backbone.layers.11.attn.qkv.bias": (1152,),
        "backbone.layers.0.attn.proj.weight": (384, 384),
        "backbone.layers.0.ffn.layers.0.0.weight": (1536, 384),
        "backbone.layers.0.ffn.layers.1.weight": (384, 1536),
        "backbone.ln1.bias": (384,),
        "head.deconv_layers.0.weight": (384, 256, 4, 4),
        "head.deconv_layers.3.weight": (256, 256, 4, 4),
        "head.final_layer.weight": (N_KPT, 256, 1, 1),
        "head.probability_layers.0.weight": (384, 384, 3, 3),
        "head.probability_layers.1.running_var": (384,),
        "head.visibility_layers.4.weight": (384, 384, 3, 3),
        "head.oks_layers.9.bias": (384,),
        "head.error_layers.12.weight": (N_KPT, 384, 1, 1),
        "head.probability_layers.layers.0.weight": None,
    },
}


@pytest.mark.parametrize("name", DESIGN_TABLE)
def test_state_dict_follows_the_mmpose_layout(name: str) -> None:
    assert name in LAYOUT, f"{name}: add its checkpoint keys to LAYOUT (from the MMPose source)"
    head = get_spec(name).extra.get("reference_head", "heatmap")
    sd = build_pose_net(name, head).state_dict()
    assert all(k.startswith(("backbone.", "head.")) for k in sd)
    for key, shape in LAYOUT[name].items():
        if shape is None:
            assert key not in sd, f"{name}: {key} must not exist in the MMPose layout"
        else:
            assert key in sd, f"{name}: missing {key}"
            assert tuple(sd[key].shape) == shape, f"{name}: {key} {tuple(sd[key].shape)} != {shape}"


def test_probpose_head_has_exactly_the_released_submodules() -> None:
    sd = build_pose_net("probpose-s", "probmap").state_dict()
    groups = {k.split(".")[1] for k in sd if k.startswith("head.")}
    assert groups == {
        "deconv_layers",
        "final_layer",
        "probability_layers",
        "visibility_layers",
        "oks_layers",
        "error_layers",
    }
    aux_idx = {int(k.split(".")[2]) for k in sd if k.startswith("head.probability_layers.")}
    assert aux_idx == {0, 1, 4, 5, 8, 9, 12}  # conv, BN, (pool, ReLU) x3, then the 1x1 conv


def test_vit_loads_a_pos_embed_with_a_class_token_slot() -> None:
    src = VisionTransformer()
    sd = src.state_dict()
    stored = torch.cat([torch.full((1, 1, 384), 7.0), sd["pos_embed"]], dim=1)
    dst = VisionTransformer()
    dst.load_state_dict({**sd, "pos_embed": stored}, strict=True)
    assert torch.equal(dst.pos_embed.data, sd["pos_embed"])


def test_vit_resizes_a_square_pos_embed_grid() -> None:
    """A 14x14 (+cls) grid becomes 16x12: a constant stays constant, a row ramp stays monotonic."""
    vit = VisionTransformer()
    sd = vit.state_dict()
    rows = torch.arange(14, dtype=torch.float32).repeat_interleave(14)
    ramp = torch.cat([torch.zeros(1), rows]).reshape(1, 197, 1).expand(1, 197, 384).clone()
    vit.load_state_dict({**sd, "pos_embed": ramp}, strict=True)
    grid = vit.pos_embed.data[0, :, 0].reshape(16, 12)
    assert bool((grid[1:] > grid[:-1]).all())
    assert torch.allclose(grid, grid[:, :1].expand(16, 12))
    vit.load_state_dict({**sd, "pos_embed": torch.full((1, 196, 384), 0.25)}, strict=True)
    assert torch.allclose(vit.pos_embed.data, torch.tensor(0.25))


def test_vit_rejects_bad_pos_embed_and_bad_input() -> None:
    vit = VisionTransformer()
    with pytest.raises(ValueError, match="pos_embed"):
        vit.load_state_dict({**vit.state_dict(), "pos_embed": torch.zeros(1, 150, 384)})
    with pytest.raises(ValueError, match="input"):
        vit(torch.zeros(1, 3, 224, 224))


def _slow_unless(name: str, head: str, fast: set[tuple[str, str]]):
    marks = () if (name, head) in fast else (pytest.mark.slow,)
    return pytest.param(name, head, marks=marks, id=f"{name}-{head}")


FAST_EXPORTS = {("probpose-s", "probmap")}  # the riskiest graph: attention + sort-based sparsemax


@pytest.mark.parametrize("name,head", [_slow_unless(n, h, FAST_EXPORTS) for n, h in CASES])
def test_legacy_onnx_export_with_dynamic_batch(name: str, head: str, tmp_path) -> None:
    """Exported at N=2, run by ONNX Runtime at N=3: the batch dim must really be dynamic."""
    from runtime.backends.ort_session import open_session

    net = build_pose_net(name, head).eval()
    names = list(net.output_names)
    path = tmp_path / f"{name}-{head}.onnx"
    axes = {"input": {0: "N"}, **{n: {0: "N"} for n in names}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.zeros(2, 3, 256, 192),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=names,
            dynamic_axes=axes,
        )
    sess = open_session(path, 2)
    assert [o.name for o in sess.get_outputs()] == names
    x = _crops(3, seed=2)
    with torch.no_grad():
        ref = net(x)
    got = sess.run(names, {"input": x.numpy()})
    for n, g, r in zip(names, got, ref):
        assert g.shape == tuple(r.shape), n
        np.testing.assert_allclose(g, r.numpy(), atol=1e-4, rtol=1e-3, err_msg=n)
