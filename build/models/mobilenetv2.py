"""MobileNetV2 x1.0 (SimpleBaseline backbone), parameter names exactly as MMPose 1.x.

Key layout verified against open-mmlab/mmpose ``mmpose/models/backbones/mobilenet_v2.py``
(commit 759b39c) and mmcv's ``ConvModule`` (open-mmlab/mmcv ``mmcv/cnn/bricks/conv_module.py``:
the conv is ``.conv``, the BN is ``.bn`` because mmcv abbreviates BatchNorm to
"bn"; activations hold no parameters). Keys relative to ``backbone.``::

    conv1.conv / conv1.bn                     3x3 s2, 3 -> 32
    layer1.0.conv.{0,1}.{conv,bn}             t=1 block: depthwise 3x3, project 1x1
    layer<k>.<i>.conv.{0,1,2}.{conv,bn}       t=6 blocks: expand 1x1, depthwise 3x3, project 1x1
    conv2.conv / conv2.bn                     1x1, 320 -> 1280

Settings (t, c, n, s) per layer: (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,4,2)
(6,96,3,1) (6,160,3,2) (6,320,1,1); ReLU6 everywhere except the projection.
The top-down config uses ``out_indices=(7,)``, i.e. the 1280 x 8 x 6 output of
``conv2`` at 256x192, fed to the standard 3x deconv(256) heatmap head.
"""

from __future__ import annotations

import torch
from torch import nn

ARCH = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class ConvModule(nn.Module):
    """mmcv's conv -> BN -> activation unit with its ``conv``/``bn`` names."""

    def __init__(
        self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.activate = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.bn(self.conv(x)))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvModule(cin, hidden, 1))
        layers += [
            ConvModule(hidden, hidden, 3, stride=stride, groups=hidden),
            ConvModule(hidden, cout, 1, act=False),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """Width 1.0 only: the only variant with a released MMPose top-down checkpoint."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = ConvModule(3, 32, 3, stride=2)
        cin = 32
        self.layer_names: list[str] = []
        for i, (t, c, n, s) in enumerate(ARCH, start=1):
            blocks = [InvertedResidual(cin if b == 0 else c, c, s if b == 0 else 1, t) for b in range(n)]
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
            self.layer_names.append(f"layer{i}")
            cin = c
        self.conv2 = ConvModule(cin, 1280, 1)
        self.out_channels = 1280

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        for name in self.layer_names:
            x = getattr(self, name)(x)
        return self.conv2(x)


def _register() -> None:
    from .registry import ModelSpec, register

    register(
        ModelSpec(
            "mbv2",
            MobileNetV2,
            out_channels=1280,
            feat_hw=(8, 6),
            aux_channels=128,
            gmacs=1.58,
            params_m=9.57,
            notes="SimpleBaseline MobileNetV2 x1.0 (MMPose td-hm_mobilenetv2_8xb64-210e_coco-256x192)",
        )
    )


_register()
