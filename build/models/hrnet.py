"""HRNet-W32/W48 for top-down pose, parameter names exactly as MMPose 1.x.

Key layout verified against open-mmlab/mmpose ``mmpose/models/backbones/hrnet.py``
(commit 759b39c, Aug 2025) and the configs
``configs/body_2d_keypoint/topdown_heatmap/coco/td-hm_hrnet-w{32,48}_8xb64-210e_coco-256x192.py``
(state_dict keys below are relative to ``backbone.``)::

    conv1 / bn1 / conv2 / bn2                 stem: two 3x3 s2 convs, 64 ch
    layer1.{0..3}.{conv1,bn1,conv2,bn2,conv3,bn3}, layer1.0.downsample.{0,1}
                                              4 Bottlenecks 64 -> 256
    transition1.0.{0,1}                       3x3 conv 256 -> C, BN (ReLU at .2)
    transition1.1.0.{0,1}                     3x3 s2 conv 256 -> 2C, BN
    transition2.2.0.{0,1}, transition3.3.0.{0,1}   (None for kept branches)
    stage{2,3,4}.<module>.branches.<b>.<blk>.{conv1,bn1,conv2,bn2}
    stage{2,3,4}.<module>.fuse_layers.<i>.<j>.{0,1}        j > i: 1x1 conv + BN (+ nearest upsample)
    stage{2,3,4}.<module>.fuse_layers.<i>.<j>.<k>.{0,1}    j < i: chain of 3x3 s2 conv + BN

The blocks are MMPose's ResNet blocks (``conv1/bn1/...`` and ``downsample.0/1``),
the same names as :mod:`.resnet`, so they are reused. MMPose keeps ``None``
placeholders inside ``nn.ModuleList`` so indices (``fuse_layers.i.j``) stay
aligned with branch numbers; we do the same, or a real checkpoint would not
load strictly. Stage 4's last module is built with ``multiscale_output=False``
(MMPose's default for top-down): it fuses only into branch 0, so
``stage4.2.fuse_layers`` has one row and the backbone returns C x 64 x 48.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .resnet import BasicBlock, Bottleneck, make_res_layer


def _conv_bn(cin: int, cout: int, k: int, stride: int, relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class HRModule(nn.Module):
    """Parallel branches of BasicBlocks, then exchange between resolutions."""

    def __init__(self, channels: Sequence[int], num_blocks: int = 4, multiscale_output: bool = True) -> None:
        super().__init__()
        self.num_branches = len(channels)
        self.branches = nn.ModuleList(make_res_layer(BasicBlock, c, c, num_blocks) for c in channels)
        self.fuse_layers = (
            self._make_fuse_layers(list(channels), multiscale_output) if self.num_branches > 1 else None
        )
        self.relu = nn.ReLU(inplace=True)

    @staticmethod
    def _make_fuse_layers(ch: list[int], multiscale_output: bool) -> nn.ModuleList:
        rows = []
        for i in range(len(ch) if multiscale_output else 1):
            row: list[nn.Module | None] = []
            for j in range(len(ch)):
                if j > i:  # lower resolution -> 1x1 conv, BN, nearest upsample
                    row.append(
                        nn.Sequential(
                            nn.Conv2d(ch[j], ch[i], 1, bias=False),
                            nn.BatchNorm2d(ch[i]),
                            nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"),
                        )
                    )
                elif j == i:
                    row.append(None)
                else:  # higher resolution -> (i - j) stride-2 3x3 convs; ReLU on all but the last
                    steps = [_conv_bn(ch[j], ch[j], 3, 2, relu=True) for _ in range(i - j - 1)]
                    steps.append(_conv_bn(ch[j], ch[i], 3, 2, relu=False))
                    row.append(nn.Sequential(*steps))
            rows.append(nn.ModuleList(row))
        return nn.ModuleList(rows)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return xs
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[i]
            for j, layer in enumerate(row):
                if j != i:
                    y = y + layer(xs[j])
            out.append(self.relu(y))
        return out


class HRNet(nn.Module):
    """HRNet with MMPose's standard four stages (1, 1, 4, 3 modules, 4 blocks each)."""

    STAGE_MODULES = (1, 4, 3)  # stages 2, 3, 4

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_res_layer(Bottleneck, 64, 64, 4)
        prev = [64 * Bottleneck.expansion]
        for s, num_modules in enumerate(self.STAGE_MODULES, start=2):
            cur = [width * 2**b for b in range(s)]
            self.add_module(f"transition{s - 1}", self._make_transition(prev, cur))
            last_multiscale = s != 4  # top-down: the last module outputs only branch 0
            modules = [
                HRModule(cur, multiscale_output=last_multiscale or m < num_modules - 1)
                for m in range(num_modules)
            ]
            self.add_module(f"stage{s}", nn.Sequential(*modules))
            prev = cur
        self.out_channels = width

    @staticmethod
    def _make_transition(prev: list[int], cur: list[int]) -> nn.ModuleList:
        layers: list[nn.Module | None] = []
        for i, c in enumerate(cur):
            if i < len(prev):
                layers.append(_conv_bn(prev[i], c, 3, 1, relu=True) if prev[i] != c else None)
            else:  # new branch: stride-2 convs from the lowest existing resolution
                n = i + 1 - len(prev)
                steps = [_conv_bn(prev[-1], c if k == n - 1 else prev[-1], 3, 2, relu=True) for k in range(n)]
                layers.append(nn.Sequential(*steps))
        return nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        ys = [self.layer1(x)]
        for s in range(2, 5):
            transition = getattr(self, f"transition{s - 1}")
            xs = [ys[i] if t is None else t(ys[min(i, len(ys) - 1)]) for i, t in enumerate(transition)]
            ys = getattr(self, f"stage{s}")(xs)
        return ys[0]


def _register() -> None:
    from .registry import ModelSpec, register

    for width, gmacs, params in ((32, 7.69, 28.5), (48, 15.75, 63.6)):
        register(
            ModelSpec(
                f"hrnet-w{width}",
                lambda w=width: HRNet(w),
                out_channels=width,
                feat_hw=(64, 48),
                heatmap_deconvs=(),
                probmap_deconvs=(),
                aux_channels=128,
                gmacs=gmacs,
                params_m=params,
                notes=f"MMPose td-hm_hrnet-w{width}_8xb64-210e_coco-256x192 (1x1 head on branch 0)",
            )
        )


_register()
