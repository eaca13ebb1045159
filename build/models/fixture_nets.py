"""Tiny pose nets for the trained fixtures (issue 9): ``fixture-s`` and ``fixture-l``.

Why our own backbone instead of a thin ResNet: on a shared 2-core CPU the
training budget is minutes, so the nets reach stride 4 (64x48, the heatmap
grid) with two cheap strided convs and spend their compute on a small FPN:
stride-8/16/32 stages give the context needed to tell left from right (the
face) and the top-down path brings it back to 64x48. The head is then just
MMPose's 1x1 ``final_layer`` (no deconvs), so the 256x192 -> 17x64x48
contract holds and the checkpoints keep ``backbone.`` / ``head.`` names.
The two sizes differ in width and depth only (small ~0.06, large ~0.25 GMAC with heatmap heads).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .resnet import BasicBlock, make_res_layer


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class FixtureFPN(nn.Module):
    """Stem to stride 4, residual stages at strides 4..32, top-down sum back to stride 4."""

    def __init__(
        self,
        widths: Sequence[int] = (24, 32, 64, 96),
        blocks: Sequence[int] = (1, 1, 1, 1),
        stem: int = 16,
        out_channels: int = 32,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv_bn_relu(3, stem, 2), _conv_bn_relu(stem, widths[0], 2))
        cin = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            layer = make_res_layer(BasicBlock, cin, w, n, stride=1 if i == 0 else 2)
            self.add_module(f"layer{i + 1}", layer)
            cin = w
        self.num_stages = len(widths)
        self.lateral = nn.ModuleList(nn.Conv2d(w, out_channels, 1, bias=False) for w in widths)
        self.fuse = _conv_bn_relu(out_channels, out_channels)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        feats = []
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
            feats.append(x)
        y = self.lateral[-1](feats[-1])
        for i in range(self.num_stages - 2, -1, -1):
            # scale_factor 2 (not size=) keeps the ONNX graph free of shape arithmetic
            y = F.interpolate(y, scale_factor=2.0, mode="nearest") + self.lateral[i](feats[i])
        return self.fuse(y)


FIXTURE_ARCHS = {
    "fixture-s": dict(widths=(16, 24, 48, 64), blocks=(1, 1, 1, 1), stem=12, out_channels=24),
    "fixture-l": dict(widths=(24, 48, 96, 128), blocks=(1, 2, 3, 2), stem=16, out_channels=32),
}


def _register() -> None:
    from .registry import ModelSpec, register

    for name, kw in FIXTURE_ARCHS.items():
        register(
            ModelSpec(
                name,
                (lambda kw=kw: FixtureFPN(**kw)),
                out_channels=kw["out_channels"],
                feat_hw=(64, 48),
                heatmap_deconvs=(),
                probmap_deconvs=(),
                aux_channels=16,
                notes="trained fixture net (synthetic figures only, issue 9)",
            )
        )


_register()
