"""DynPose router: scores how much a crop would gain from the large net.

docs/DESIGN.md section 2. It reads the same normalised crop as the small net, at the
small net's input size (``in_hw``; build/artifacts.py passes the small net's
``ModelSpec.input_hw``), so the runtime makes one crop tensor for the router and the small
net; a large net of another size gets its own crops for the rows routed to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class SGE(nn.Module):
    """Spatial group-wise enhance: per group, gate positions by their
    similarity to the group's global descriptor (weight/bias start at 0)."""

    def __init__(self, groups: int = 8) -> None:
        super().__init__()
        self.groups = groups
        self.weight = nn.Parameter(torch.zeros(1, groups, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, groups, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, c, h, w = x.shape
        g = self.groups
        xg = x.reshape(-1, c // g, h, w)
        t = (xg * xg.mean(dim=(2, 3), keepdim=True)).sum(dim=1, keepdim=True)
        t = t.reshape(-1, h * w)
        t = (t - t.mean(dim=1, keepdim=True)) / (t.std(dim=1, keepdim=True) + 1e-5)
        t = t.reshape(-1, g, h, w) * self.weight + self.bias
        gate = torch.sigmoid(t.reshape(-1, 1, h, w))
        return (xg * gate).reshape(-1, c, h, w)


class PConv(nn.Module):
    """Partial conv (FasterNet): 3x3 on the first C/4 channels, rest untouched."""

    def __init__(self, channels: int, ratio: int = 4) -> None:
        super().__init__()
        self.part = channels // ratio
        self.conv = nn.Conv2d(self.part, self.part, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head, rest = torch.split(x, [self.part, x.shape[1] - self.part], dim=1)
        return torch.cat([self.conv(head), rest], dim=1)


def _stage(cin: int, cout: int, post: nn.Module) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        post,
    )


class Router(nn.Module):
    """Channel avg+max -> 2x2 avgpool -> 4 conv stages (SGE, PConv, SGE, PConv) -> MLP -> sigmoid."""

    output_names = ("score",)
    kind = "score"

    def __init__(
        self,
        channels: Sequence[int] = (16, 32, 64, 128),
        hidden: int = 256,
        in_hw: tuple[int, int] = (256, 192),
        sge_groups: int = 8,
    ) -> None:
        super().__init__()
        c1, c2, c3, c4 = channels
        self.stage1 = _stage(1, c1, SGE(sge_groups))
        self.stage2 = _stage(c1, c2, PConv(c2))
        self.stage3 = _stage(c2, c3, SGE(sge_groups))
        self.stage4 = _stage(c3, c4, PConv(c4))
        self.input_hw = tuple(in_hw)  # the crop (H, W) the MLP's width was sized for
        h, w = in_hw[0] // 2 // 16, in_hw[1] // 2 // 16
        self.mlp = nn.Sequential(nn.Linear(c4 * h * w, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        f0 = F.avg_pool2d(x.mean(dim=1, keepdim=True) + x.amax(dim=1, keepdim=True), 2)
        f4 = self.stage4(self.stage3(self.stage2(self.stage1(f0))))
        return (torch.sigmoid(self.mlp(torch.flatten(f4, 1))),)

    @property
    def head_kind(self) -> str:
        return self.kind
