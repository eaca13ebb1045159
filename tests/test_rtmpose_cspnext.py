"""CSPNeXt (build/models/cspnext.py): MMDet's key layout, block counts and feature maps.

The expected names and block counts are written from MMDet's sources
(``mmdet/models/backbones/cspnext.py`` arch P5, ``layers/csp_layer.py``), not read back from ours.
"""

from __future__ import annotations

import pytest
import torch

from build.models.cspnext import CSPNeXt

# (deepen, widen) of RTMPose / RTMDet t, s, m, l and the CSPLayer block count per stage that
# MMDet's max(round(n * deepen), 1) gives for P5's (3, 6, 6, 3)
VARIANTS = {
    "t": (0.167, 0.375, (1, 1, 1, 1)),
    "s": (0.33, 0.5, (1, 2, 2, 1)),
    "m": (0.67, 0.75, (2, 4, 4, 2)),
    "l": (1.0, 1.0, (3, 6, 6, 3)),
}

# MMDet key names (relative to backbone.) that a released checkpoint holds
MMDET_KEYS = (
    "stem.0.conv.weight",
    "stem.2.bn.running_var",
    "stage1.0.conv.weight",
    "stage1.1.main_conv.conv.weight",
    "stage1.1.short_conv.bn.bias",
    "stage1.1.final_conv.conv.weight",
    "stage1.1.blocks.0.conv1.conv.weight",
    "stage1.1.blocks.0.conv2.depthwise_conv.conv.weight",
    "stage1.1.blocks.0.conv2.pointwise_conv.bn.weight",
    "stage1.1.attention.fc.weight",
    "stage1.1.attention.fc.bias",
    "stage4.1.conv1.conv.weight",  # SPPBottleneck on the last stage
    "stage4.1.conv2.bn.num_batches_tracked",
    "stage4.2.final_conv.conv.weight",
)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_block_counts_channels_and_three_maps_for_rtmdet(variant):
    deepen, widen, blocks = VARIANTS[variant]
    net = CSPNeXt(deepen, widen, out_indices=(2, 3, 4)).eval()
    sd = net.state_dict()
    for i, n in enumerate(blocks):
        last = 2 if i == 3 else 1
        got = {k.split(".")[3] for k in sd if k.startswith(f"stage{i + 1}.{last}.blocks.")}
        assert got == {str(j) for j in range(n)}, (variant, i)
    for k in MMDET_KEYS:
        assert k in sd, k
    assert not any(k.endswith("conv.bias") and "attention" not in k for k in sd)  # conv before BN: no bias
    with torch.no_grad():
        maps = net(torch.zeros(1, 3, 256, 192))
    c = int(256 * widen)
    assert net.out_channels == (c, 2 * c, 4 * c)
    assert [tuple(m.shape) for m in maps] == [(1, c, 32, 24), (1, 2 * c, 16, 12), (1, 4 * c, 8, 6)]


def test_pose_takes_the_last_map_only():
    net = CSPNeXt(0.33, 0.5).eval()
    with torch.no_grad():
        maps = net(torch.zeros(2, 3, 384, 288))
    assert len(maps) == 1 and tuple(maps[0].shape) == (2, 512, 12, 9)


def test_eps_and_bad_out_indices():
    assert CSPNeXt(0.167, 0.375).stem[0].bn.eps == 1e-5  # SyncBN, as the released configs
    assert CSPNeXt(0.167, 0.375, bn_eps=1e-3).stem[0].bn.eps == 1e-3
    with pytest.raises(ValueError, match="out_indices"):
        CSPNeXt(out_indices=(5,))
