"""ProbPose-s-DH equivalent: the ProbMapHead plus a second, wider probability map.

Facts taken from ProbPose (Purkrabek et al. 2025; its DoubleProbMap codec): two
maps of the same resolution and the same centre, an "inner" one over the normal
activation window and an "outer" one over a window enlarged by a padding
factor; keypoints are encoded into both, and the outer map localises keypoints
that fall outside the crop. Our version (written for our head, no code taken):

* the expert map is the unchanged ProbMapHead output ``probmaps``;
* ``outer_probmaps`` covers a window ``OUTER_FACTOR`` (2) times the crop's in
  each axis, centred on it, at the same 64x48 size, so one outer pixel spans
  two inner pixels (runtime.heads.double_decode maps it back);
* the outer branch pools the stride-4 feature 4x (the crop becomes 16x12),
  pads it to the outer window at half the map's size (32x24, the crop in its
  centre half) and spreads it with dilated 3x3 convs (receptive field +-14 px,
  wider than the 8/6 px ring it must fill), then a 1x1 conv to K logits,
  bilinear 2x up to 64x48 and sparsemax, like the expert. Half size because
  the branch must train in minutes on two shared cores (measured: full size
  cost 8 s per batch of 32 there); the outer map is coarse by design anyway.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .heads import NUM_KEYPOINTS, ProbMapHead, sparsemax

OUTER_FACTOR = 2.0


class DoubleProbMapHead(ProbMapHead):
    output_names = ("probmaps", "presence", "visibility", "oks", "outer_probmaps")
    kind = "probmap"  # same decode and fields; runtime.heads.double_decode adds the outer map when present

    def __init__(
        self, in_channels: int, out_channels: int = NUM_KEYPOINTS, outer_channels: int = 24, **kw
    ) -> None:
        super().__init__(in_channels, out_channels, **kw)
        last = self.final_layer.in_channels
        layers: list[nn.Module] = []
        ch = last
        for d in (1, 2, 4):
            layers += [
                nn.Conv2d(ch, outer_channels, 3, padding=d, dilation=d),
                nn.BatchNorm2d(outer_channels),
                nn.ReLU(inplace=True),
            ]
            ch = outer_channels
        layers.append(nn.Conv2d(ch, out_channels, 1))
        self.outer_layers = nn.Sequential(*layers)

    def outer_logits(self, feat: torch.Tensor) -> torch.Tensor:
        x = self.deconv_layers(feat)
        h, w = x.shape[-2:]
        x = F.avg_pool2d(x, 4)  # the crop at half the outer map's size
        x = F.pad(x, (w // 8, w // 8, h // 8, h // 8))  # ... in the centre half of the outer window
        x = F.interpolate(self.outer_layers(x), scale_factor=2.0, mode="bilinear", align_corners=False)
        return x / self.temperature

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        inner = super().forward(feat)
        lg = self.outer_logits(feat)
        n, k, h, w = lg.shape
        outer = sparsemax(lg.reshape(-1, k, h * w), dim=-1).clamp(0, 1).reshape(-1, k, h, w)
        return (*inner, outer)


def outer_targets(xy: torch.Tensor | object, hm_hw: tuple[int, int] = (64, 48), factor: float = OUTER_FACTOR):
    """Inner heatmap coords -> outer map coords (same centre, pixels ``factor`` times larger)."""
    h, w = hm_hw
    c = (
        xy.new_tensor([(w - 1) / 2, (h - 1) / 2])
        if isinstance(xy, torch.Tensor)
        else __import__("numpy").array([(w - 1) / 2, (h - 1) / 2])
    )
    return (xy - c) / factor + c
