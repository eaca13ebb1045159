"""CSPNeXt, the backbone of RTMPose and RTMDet, with MMDet 3.x / MMPose 1.x parameter names.

Key layout (MMDet ``mmdet/models/backbones/cspnext.py``, ``mmdet/models/layers/csp_layer.py``,
``se_layer.py``'s ``ChannelAttention`` and ``csp_darknet.py``'s ``SPPBottleneck``; keys
relative to ``backbone.``)::

    stem.{0,1,2}.{conv,bn}                         3x3 s2, 3x3, 3x3 (C/2, C/2, C; C = 64 x widen)
    stage{i}.0.{conv,bn}                           3x3 s2 downsample
    stage4.1.conv1.{conv,bn}, stage4.1.conv2.*     SPPBottleneck (last P5 stage only)
    stage{i}.<last>.{main,short,final}_conv.{conv,bn}
    stage{i}.<last>.blocks.<j>.conv1.{conv,bn}     CSPNeXtBlock: 3x3 conv ...
    stage{i}.<last>.blocks.<j>.conv2.{depthwise_conv,pointwise_conv}.{conv,bn}
                                                   ... then a 5x5 depthwise-separable conv
    stage{i}.<last>.attention.fc                   ChannelAttention: 1x1 conv with bias

MMCV's ``ConvModule`` keeps its layers as ``conv``/``bn``/``activate`` children (the
activation has no weights) and drops the conv bias when a norm follows; we build the
same tree from plain torch modules so released checkpoints load with ``strict=True``.

Why ``bn_eps`` is a parameter: MMDet's code default is BN(eps=1e-3, momentum=0.03), but
every released RTMPose config (and RTMDet's) overrides ``norm_cfg=dict(type='SyncBN')``,
whose defaults are torch's (eps 1e-5). The eps is not stored in checkpoints, so it has to
match the config the weights were trained with: 1e-5 by default here.

``forward`` returns the tuple of the stages named by ``out_indices`` (0 = stem), as MMDet
does: RTMPose takes ``(4,)`` (the stride-32 map), RTMDet ``(2, 3, 4)`` (strides 8/16/32).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# in_channels, out_channels, num_blocks, add_identity, use_spp per stage, before widen/deepen
ARCH_P5: tuple[tuple[int, int, int, bool, bool], ...] = (
    (64, 128, 3, True, False),
    (128, 256, 6, True, False),
    (256, 512, 6, True, False),
    (512, 1024, 3, False, True),
)
BN_EPS = 1e-5  # SyncBN defaults, as the released configs train with
BN_MOMENTUM = 0.1


class ConvModule(nn.Sequential):
    """conv (no bias) -> BN -> SiLU, children named as MMCV's ConvModule (``conv``, ``bn``)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        k: int,
        stride: int = 1,
        groups: int = 1,
        eps: float = BN_EPS,
        momentum: float = BN_MOMENTUM,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=eps, momentum=momentum)
        self.activate = nn.SiLU(inplace=True)


class DepthwiseSeparableConvModule(nn.Sequential):
    """k x k depthwise ConvModule then 1x1 pointwise ConvModule (MMCV's names)."""

    def __init__(self, cin: int, cout: int, k: int, eps: float = BN_EPS) -> None:
        super().__init__()
        self.depthwise_conv = ConvModule(cin, cin, k, groups=cin, eps=eps)
        self.pointwise_conv = ConvModule(cin, cout, 1, eps=eps)


class CSPNeXtBlock(nn.Module):
    """3x3 conv then a large-kernel (5x5) depthwise-separable conv, with an identity when shapes allow."""

    def __init__(
        self, cin: int, cout: int, expansion: float = 1.0, add_identity: bool = True, eps: float = BN_EPS
    ) -> None:
        super().__init__()
        hidden = int(cout * expansion)
        self.conv1 = ConvModule(cin, hidden, 3, eps=eps)
        self.conv2 = DepthwiseSeparableConvModule(hidden, cout, 5, eps=eps)
        self.add_identity = add_identity and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        return out + x if self.add_identity else out


class ChannelAttention(nn.Module):
    """Squeeze-excite without the squeeze: global average -> 1x1 conv (bias) -> hard sigmoid -> scale."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(channels, channels, 1, bias=True)
        self.act = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.act(self.fc(self.global_avgpool(x)))


class CSPLayer(nn.Module):
    """Cross-stage partial layer: a main path through the blocks and a 1x1 short path, concatenated,
    channel attention, then a 1x1 fuse."""

    def __init__(
        self,
        cin: int,
        cout: int,
        num_blocks: int,
        add_identity: bool,
        expand_ratio: float = 0.5,
        channel_attention: bool = True,
        eps: float = BN_EPS,
    ) -> None:
        super().__init__()
        mid = int(cout * expand_ratio)
        self.main_conv = ConvModule(cin, mid, 1, eps=eps)
        self.short_conv = ConvModule(cin, mid, 1, eps=eps)
        self.final_conv = ConvModule(2 * mid, cout, 1, eps=eps)
        self.blocks = nn.Sequential(
            *[CSPNeXtBlock(mid, mid, 1.0, add_identity, eps=eps) for _ in range(num_blocks)]
        )
        self.attention = ChannelAttention(2 * mid) if channel_attention else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat((self.blocks(self.main_conv(x)), self.short_conv(x)), dim=1)
        if self.attention is not None:
            y = self.attention(y)
        return self.final_conv(y)


class SPPBottleneck(nn.Module):
    """1x1 halve, parallel stride-1 max pools (5, 9, 13) concatenated with their input, 1x1 out."""

    def __init__(
        self, cin: int, cout: int, kernel_sizes: Sequence[int] = (5, 9, 13), eps: float = BN_EPS
    ) -> None:
        super().__init__()
        mid = cin // 2
        self.conv1 = ConvModule(cin, mid, 1, eps=eps)
        self.poolings = nn.ModuleList([nn.MaxPool2d(k, stride=1, padding=k // 2) for k in kernel_sizes])
        self.conv2 = ConvModule(mid * (len(kernel_sizes) + 1), cout, 1, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [pool(x) for pool in self.poolings], dim=1))


class CSPNeXt(nn.Module):
    """CSPNeXt P5: a 3-conv stem and four stages, each a stride-2 conv (+ SPP on the last) and a CSPLayer.

    Channels scale by ``widen_factor`` (``int(c * widen)``), block counts by ``deepen_factor``
    (``max(round(n * deepen), 1)``), MMDet's rounding.
    """

    def __init__(
        self,
        deepen_factor: float = 1.0,
        widen_factor: float = 1.0,
        out_indices: Sequence[int] = (4,),
        expand_ratio: float = 0.5,
        channel_attention: bool = True,
        bn_eps: float = BN_EPS,
        arch: Sequence[tuple[int, int, int, bool, bool]] = ARCH_P5,
    ) -> None:
        super().__init__()
        if not set(out_indices) <= set(range(len(arch) + 1)):
            raise ValueError(f"out_indices {tuple(out_indices)}: each must be in 0..{len(arch)} (0 = stem)")
        self.out_indices = tuple(out_indices)
        stem = int(arch[0][0] * widen_factor)
        self.stem = nn.Sequential(
            ConvModule(3, stem // 2, 3, stride=2, eps=bn_eps),
            ConvModule(stem // 2, stem // 2, 3, eps=bn_eps),
            ConvModule(stem // 2, stem, 3, eps=bn_eps),
        )
        self.layers = ["stem"]
        self.channels = [stem]
        for i, (cin, cout, n, add_identity, use_spp) in enumerate(arch):
            cin, cout = int(cin * widen_factor), int(cout * widen_factor)
            stage: list[nn.Module] = [ConvModule(cin, cout, 3, stride=2, eps=bn_eps)]
            if use_spp:
                stage.append(SPPBottleneck(cout, cout, eps=bn_eps))
            stage.append(
                CSPLayer(
                    cout,
                    cout,
                    max(round(n * deepen_factor), 1),
                    add_identity,
                    expand_ratio,
                    channel_attention,
                    eps=bn_eps,
                )
            )
            self.add_module(f"stage{i + 1}", nn.Sequential(*stage))
            self.layers.append(f"stage{i + 1}")
            self.channels.append(cout)

    @property
    def out_channels(self) -> tuple[int, ...]:
        """Channels of each returned map, in ``out_indices`` order."""
        return tuple(self.channels[i] for i in self.out_indices)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = []
        for i, name in enumerate(self.layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
