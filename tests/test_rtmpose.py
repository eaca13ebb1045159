"""RTMPose-t/s/m/l (build/models/rtmpose.py): shapes, costs against MMPose's zoo, MMPose's key names,
strict checkpoint loading, ONNX export with a dynamic batch at each net's own input size.

The expected key names, shapes and counts below are written from MMPose's and MMDet's sources
(``mmdet/models/backbones/cspnext.py``, ``mmdet/models/layers/csp_layer.py``,
``mmpose/models/heads/coord_cls_heads/rtmcc_head.py``, ``mmpose/models/utils/rtmcc_block.py``)
and the rtmpose-s config (deepen 0.33, widen 0.5, head in_channels 512, 256x192), not read
back from our modules.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from build.checkpoint import CheckpointMismatch, load_strict
from build.export import export_onnx, parity, simplify_onnx
from build.flops import count_macs, count_params
from build.models import build_pose_net, get_spec, list_models
from build.models.rtmpose import VARIANTS
from runtime.heads import registry
from runtime.heads.simcc import decode_simcc

SIMCC = registry.SIMCC

# rtmpose-s, MMPose checkpoint names -> shapes (None: must not exist)
MMPOSE_KEYS_S = {
    "backbone.stem.0.conv.weight": (16, 3, 3, 3),
    "backbone.stem.2.conv.weight": (32, 16, 3, 3),
    "backbone.stem.2.bn.num_batches_tracked": (),
    "backbone.stage1.0.conv.weight": (64, 32, 3, 3),
    "backbone.stage1.1.main_conv.conv.weight": (32, 64, 1, 1),
    "backbone.stage1.1.blocks.0.conv1.conv.weight": (32, 32, 3, 3),
    "backbone.stage1.1.blocks.0.conv2.depthwise_conv.conv.weight": (32, 1, 5, 5),
    "backbone.stage1.1.blocks.0.conv2.pointwise_conv.bn.running_var": (32,),
    "backbone.stage1.1.attention.fc.weight": (64, 64, 1, 1),
    "backbone.stage1.1.attention.fc.bias": (64,),
    "backbone.stage1.1.final_conv.conv.weight": (64, 64, 1, 1),
    "backbone.stage2.1.blocks.1.conv1.conv.weight": (64, 64, 3, 3),
    "backbone.stage4.1.conv1.conv.weight": (256, 512, 1, 1),  # SPPBottleneck
    "backbone.stage4.1.conv2.conv.weight": (512, 1024, 1, 1),
    "backbone.stage4.2.short_conv.bn.weight": (256,),
    "head.final_layer.weight": (17, 512, 7, 7),
    "head.final_layer.bias": (17,),
    "head.mlp.0.g": (1,),
    "head.mlp.1.weight": (256, 48),
    "head.gau.uv.weight": (2 * 512 + 128, 256),
    "head.gau.o.weight": (256, 512),
    "head.gau.gamma": (2, 128),
    "head.gau.beta": (2, 128),
    "head.gau.ln.g": (1,),
    "head.gau.res_scale.scale": (256,),
    "head.cls_x.weight": (384, 256),
    "head.cls_y.weight": (512, 256),
    "head.gau.w": None,  # use_rel_bias=False in every RTMPose config
    "backbone.stage1.1.blocks.1.conv1.conv.weight": None,  # round(3 * 0.33) = 1 block
    "head.cls_x.bias": None,
}
# ConvModule = conv.weight + 5 BN tensors; CSPLayer = 3 ConvModules + attention.fc (2) + 3 per
# block (conv1, depthwise, pointwise); stage = downsample ConvModule + CSPLayer (+ SPP: 2);
# stem = 3 ConvModules. rtmpose-s blocks per stage: 1, 2, 2, 1. Head: 12 tensors.
CONV = 6
STAGE = [CONV + 3 * CONV + 2 + 3 * CONV * n for n in (1, 2, 2, 1)]
N_KEYS_S = 3 * CONV + sum(STAGE) + 2 * CONV + 12


def _net(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_pose_net(name, SIMCC).eval()


def test_all_six_variants_are_registered_with_mmposes_figures():
    assert (
        {n for n in list_models() if n.startswith("rtmpose")}
        == set(VARIANTS)
        == {
            "rtmpose-t",
            "rtmpose-s",
            "rtmpose-m",
            "rtmpose-l",
            "rtmpose-m-384",
            "rtmpose-l-384",
        }
    )
    assert get_spec("rtmpose-m").gmacs == 1.93 and get_spec("rtmpose-l-384").input_hw == (384, 288)
    assert get_spec("rtmpose-s").extra["coco_ap"] == 0.716


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_shapes_macs_and_params_match_mmposes_zoo(name):
    spec = get_spec(name)
    h, w = spec.input_hw
    net = _net(name)
    with torch.no_grad():
        sx, sy = net(torch.randn(2, 3, h, w))
    assert net.output_names == ("simcc_x", "simcc_y")
    assert tuple(sx.shape) == (2, 17, 2 * w) and tuple(sy.shape) == (2, 17, 2 * h)
    assert count_macs(net, (1, 3, h, w)) == pytest.approx(spec.gmacs, rel=0.01)
    assert count_params(net) == pytest.approx(spec.params_m, rel=0.01)


def test_state_dict_has_mmposes_names():
    sd = _net("rtmpose-s").state_dict()
    for key, shape in MMPOSE_KEYS_S.items():
        if shape is None:
            assert key not in sd, key
        else:
            assert key in sd and tuple(sd[key].shape) == shape, (
                key,
                tuple(sd[key].shape) if key in sd else None,
            )
    assert len(sd) == N_KEYS_S == 254


def _mmpose_file(state_dict: dict, path) -> None:
    """A checkpoint as MMPose saves it: meta + state_dict (+ the optimizer MMPose keeps)."""
    torch.save(
        {
            "meta": {"mmpose_version": "1.3.2", "epoch": 420, "dataset_meta": {"dataset_name": "coco"}},
            "state_dict": {k: v.clone() for k, v in state_dict.items()},
        },
        path,
    )


def test_a_generated_mmpose_checkpoint_loads_strictly(tmp_path):
    src = _net("rtmpose-s")
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p))
    _mmpose_file(src.state_dict(), tmp_path / "rtmpose-s.pth")
    dst = _net("rtmpose-s")
    info = load_strict(dst, tmp_path / "rtmpose-s.pth", "small", flag="--small-ckpt")
    assert info["source"] == "checkpoint"
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k


@pytest.mark.parametrize("case", ["missing", "shape", "other-arch"])
def test_a_wrong_checkpoint_fails_in_one_line(tmp_path, case):
    sd = _net("rtmpose-s").state_dict()
    if case == "missing":
        del sd["head.gau.uv.weight"]
        want = "missing.*head.gau.uv.weight"
    elif case == "shape":
        sd["head.cls_x.weight"] = torch.zeros(576, 256)  # the 384x288 head
        want = r"wrong shape.*head.cls_x.weight \(576, 256\)"
    else:
        sd = _net("rtmpose-t").state_dict()
        want = "wrong shape.*backbone.stem.0.conv.weight"
    _mmpose_file(sd, tmp_path / "bad.pth")
    with pytest.raises(CheckpointMismatch, match=want) as err:
        load_strict(_net("rtmpose-s"), tmp_path / "bad.pth", "small", flag="--small-ckpt")
    assert "\n" not in str(err.value) and "--small-ckpt" in str(err.value)


def test_a_head_that_does_not_fit_is_refused_in_one_line():
    with pytest.raises(ValueError, match="'rtmpose-s' takes the head.*simcc, not 'heatmap'"):
        build_pose_net("rtmpose-s", "heatmap")
    with pytest.raises(ValueError, match="'res50' takes the head.*heatmap.*not 'simcc'"):
        build_pose_net("res50", SIMCC)


def _slow_unless(name: str):
    fast = {"rtmpose-t", "rtmpose-m-384"}  # the smallest, and the one at its own input size
    return pytest.param(name, marks=() if name in fast else (pytest.mark.slow,), id=name)


@pytest.mark.parametrize("name", [_slow_unless(n) for n in sorted(VARIANTS)])
def test_export_has_a_dynamic_batch_at_the_nets_input_size(name, tmp_path):
    """build.export traces at the spec's input size and ONNX Runtime runs other batch sizes."""
    import onnx

    net = _net(name)
    h, w = get_spec(name).input_hw
    path = export_onnx(net, tmp_path / f"{name}.onnx", net.output_names)
    assert simplify_onnx(path) != "none"  # as build.artifacts does: the keypoint dim becomes static
    graph = onnx.load(str(path)).graph
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.output]
    assert [d[0] for d in dims] == ["N", "N"] and [d[1:] for d in dims] == [[17, 2 * w], [17, 2 * h]]
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim[1:]] == [3, h, w]
    worst = parity(net, path, batches=(1, 3))
    assert set(worst) == {"simcc_x", "simcc_y"}


def test_simcc_is_registered_and_decodes_through_the_registry():
    rng = np.random.default_rng(0)
    outs = {"simcc_x": rng.normal(size=(2, 17, 384)), "simcc_y": rng.normal(size=(2, 17, 512))}
    assert registry.decoder_for(SIMCC, outs).spec.kind == SIMCC
    coords, scores, presence = registry.decode_outputs(SIMCC, outs)
    want = decode_simcc(outs["simcc_x"], outs["simcc_y"])
    np.testing.assert_array_equal(coords, want[0])
    np.testing.assert_array_equal(scores, want[1])
    assert (presence == 1).all()
