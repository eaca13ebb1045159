"""RTMDet (MMDet 3.x) person detectors: CSPNeXt backbone, CSPNeXtPAFPN neck, RTMDetSepBNHead.

Why a torch copy of the architecture: the released person checkpoints (MMPose's RTMPose
project, Apache-2.0) are MMDet ``state_dict``\\ s; building the same module tree with the same
names (``backbone.*``, ``neck.*``, ``bbox_head.*``) lets :func:`build.checkpoint.load_strict`
load them with ``strict=True`` and no key renaming, and lets the build export the detector
without MMDet/MMCV installed.

Key layout below ``neck.`` (MMDet ``mmdet/models/necks/cspnext_pafpn.py``; MMYOLO's copy
calls the same parts ``top_down_layers``/``downsample_layers``/``bottom_up_layers``, but
the checkpoints here come from MMDet)::

    reduce_layers.{0,1}.{conv,bn}            1x1, top-down, deepest first
    top_down_blocks.{0,1}.*                  CSPLayer (no channel attention)
    downsamples.{0,1}.*                      3x3 s2 (depthwise-separable when use_depthwise)
    bottom_up_blocks.{0,1}.*                 CSPLayer
    out_convs.{0,1,2}.*                      3x3 to out_channels, one per level

and below ``bbox_head.`` (``RTMDetSepBNHead``)::

    cls_convs.<level>.<i>.{conv,bn}          stacked 3x3 convs, one stack per level; with
    reg_convs.<level>.<i>.{conv,bn}          ``share_conv`` every level uses level 0's conv
                                             (its BN stays per level); the state dict lists
                                             the shared weight under every level, as torch does
    rtm_cls.<level>.{weight,bias}            1x1 (``pred_kernel_size``) class logits
    rtm_reg.<level>.{weight,bias}            1x1 box distances (l, t, r, b) / stride

Head output (MMDet ``RTMDetSepBNHead.forward``): class logits per level and distances in
input pixels (``rtm_reg * stride``, ``exp`` first where the config sets ``exp_on_reg``:
RTMDet-m and larger). Priors are the feature cells' top-left corners (``MlvlPointGenerator``
with offset 0): ``(x * stride, y * stride)``, row-major, strides 8/16/32; a box is the prior
minus (l, t) and plus (r, b) (``distance2bbox``).

:class:`DetectorGraph` is what the build exports as the ``detector`` role: it takes the
runtime's letterboxed RGB 0..1 batch, applies MMDet's preprocessing (BGR, mean/std) and
decodes in the graph to the YOLOv8 layout the runtime already reads (``[N, 4 + C, A]``: box
centre and size, then per-class sigmoid scores), so one letterbox, one decode and one NMS
serve every detector.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .cspnext import BN_EPS, ConvModule, CSPLayer, CSPNeXt, conv_module

STRIDES = (8, 16, 32)
# MMDet's detection data preprocessor (BGR input, bgr_to_rgb=False): per-channel B, G, R
MEAN_BGR = (103.53, 116.28, 123.675)
STD_BGR = (57.375, 57.12, 58.395)


@dataclass(frozen=True)
class RTMDetArch:
    """One RTMDet variant as its MMDet config sets it (``configs/rtmdet/rtmdet_{tiny,s,m}_8xb32-300e_coco.py``;
    nano: MMPose ``projects/rtmpose/rtmdet/person/rtmdet_nano_320-8xb32_coco-person.py``, which
    also makes every conv depthwise-separable and stops the head sharing convs across levels)."""

    name: str
    deepen: float
    widen: float
    neck_out: int
    csp_blocks: int
    exp_on_reg: bool
    share_conv: bool = True
    depthwise: bool = False
    input_size: int = 640
    stacked_convs: int = 2

    @property
    def neck_in(self) -> tuple[int, int, int]:
        """CSPNeXt's stride 8/16/32 channels (256, 512, 1024 x widen), the neck's ``in_channels``."""
        return (int(256 * self.widen), int(512 * self.widen), int(1024 * self.widen))


ARCHS: dict[str, RTMDetArch] = {
    a.name: a
    for a in (
        RTMDetArch("rtmdet-nano", 0.33, 0.25, 64, 1, False, False, True, input_size=320),
        RTMDetArch("rtmdet-tiny", 0.167, 0.375, 96, 1, False),
        RTMDetArch("rtmdet-s", 0.33, 0.5, 128, 1, False),
        RTMDetArch("rtmdet-m", 0.67, 0.75, 192, 2, True),
    )
}
COCO_CLASSES, PERSON = 80, 1
# (arch, classes) -> the published (parameters M, GFLOPs = MMCV's multiply-adds) at the arch's
# input size: MMDet's RTMDet table (80 classes), MMPose's RTMPose table (person detectors)
PUBLISHED: dict[tuple[str, int], tuple[float, float]] = {
    ("rtmdet-tiny", COCO_CLASSES): (4.8, 8.1),
    ("rtmdet-s", COCO_CLASSES): (8.89, 14.8),
    ("rtmdet-m", COCO_CLASSES): (24.71, 39.27),
    ("rtmdet-nano", PERSON): (0.99, 0.31),
    ("rtmdet-m", PERSON): (24.66, 38.95),
}


class CSPNeXtPAFPN(nn.Module):
    """Top-down then bottom-up path aggregation over the backbone's three maps (MMDet's names)."""

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int,
        num_csp_blocks: int = 3,
        use_depthwise: bool = False,
        expand_ratio: float = 0.5,
        eps: float = BN_EPS,
    ) -> None:
        super().__init__()
        c = list(in_channels)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.reduce_layers = nn.ModuleList()
        self.top_down_blocks = nn.ModuleList()
        for i in range(len(c) - 1, 0, -1):
            self.reduce_layers.append(ConvModule(c[i], c[i - 1], 1, eps=eps))
            self.top_down_blocks.append(
                self._csp(c[i - 1] * 2, c[i - 1], num_csp_blocks, use_depthwise, expand_ratio, eps)
            )
        self.downsamples = nn.ModuleList()
        self.bottom_up_blocks = nn.ModuleList()
        for i in range(len(c) - 1):
            self.downsamples.append(conv_module(c[i], c[i], 3, stride=2, eps=eps, depthwise=use_depthwise))
            self.bottom_up_blocks.append(
                self._csp(c[i] * 2, c[i + 1], num_csp_blocks, use_depthwise, expand_ratio, eps)
            )
        self.out_convs = nn.ModuleList(
            conv_module(ci, out_channels, 3, eps=eps, depthwise=use_depthwise) for ci in c
        )

    @staticmethod
    def _csp(cin: int, cout: int, n: int, depthwise: bool, ratio: float, eps: float) -> CSPLayer:
        return CSPLayer(
            cin,
            cout,
            n,
            add_identity=False,
            expand_ratio=ratio,
            channel_attention=False,
            eps=eps,
            use_depthwise=depthwise,
        )

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        n = len(feats)
        inner = [feats[-1]]
        for j, i in enumerate(range(n - 1, 0, -1)):
            high = self.reduce_layers[j](inner[0])
            inner[0] = high
            inner.insert(0, self.top_down_blocks[j](torch.cat([self.upsample(high), feats[i - 1]], 1)))
        outs = [inner[0]]
        for i in range(n - 1):
            outs.append(self.bottom_up_blocks[i](torch.cat([self.downsamples[i](outs[-1]), inner[i + 1]], 1)))
        return tuple(conv(o) for conv, o in zip(self.out_convs, outs))


class RTMDetSepBNHead(nn.Module):
    """Per-level conv stacks (shared conv weights, separate BNs with ``share_conv``) and 1x1
    class / distance predictions; returns MMDet's ``(cls_scores, bbox_preds)`` per level."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        feat_channels: int,
        stacked_convs: int = 2,
        share_conv: bool = True,
        use_depthwise: bool = False,
        exp_on_reg: bool = False,
        pred_kernel_size: int = 1,
        strides: Sequence[int] = STRIDES,
        eps: float = BN_EPS,
    ) -> None:
        super().__init__()
        if share_conv and use_depthwise:
            raise ValueError("share_conv with depthwise-separable convs: no released RTMDet has it")
        self.strides = tuple(strides)
        self.exp_on_reg = exp_on_reg
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        self.rtm_cls = nn.ModuleList()
        self.rtm_reg = nn.ModuleList()
        pad = pred_kernel_size // 2
        for _ in self.strides:
            for stacks in (self.cls_convs, self.reg_convs):
                stacks.append(
                    nn.ModuleList(
                        conv_module(
                            in_channels if i == 0 else feat_channels,
                            feat_channels,
                            3,
                            eps=eps,
                            depthwise=use_depthwise,
                        )
                        for i in range(stacked_convs)
                    )
                )
            self.rtm_cls.append(nn.Conv2d(feat_channels, num_classes, pred_kernel_size, padding=pad))
            self.rtm_reg.append(nn.Conv2d(feat_channels, 4, pred_kernel_size, padding=pad))
        if share_conv:  # one conv module object at every level: the BNs stay per level
            for level in range(1, len(self.strides)):
                for i in range(stacked_convs):
                    self.cls_convs[level][i].conv = self.cls_convs[0][i].conv
                    self.reg_convs[level][i].conv = self.reg_convs[0][i].conv

    def init_weights(self, prior_prob: float = 0.01) -> None:
        """MMDet's head init (convs N(0, 0.01), class bias at a ``prior_prob`` score), for training
        from scratch; built nets keep torch's init until a checkpoint loads."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for conv in self.rtm_cls:
            nn.init.constant_(conv.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(
        self, feats: Sequence[torch.Tensor]
    ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        cls_scores, bbox_preds = [], []
        for level, (x, stride) in enumerate(zip(feats, self.strides)):
            c, r = x, x
            for layer in self.cls_convs[level]:
                c = layer(c)
            for layer in self.reg_convs[level]:
                r = layer(r)
            reg = self.rtm_reg[level](r)
            cls_scores.append(self.rtm_cls[level](c))
            bbox_preds.append((reg.exp() if self.exp_on_reg else reg) * stride)
        return tuple(cls_scores), tuple(bbox_preds)


class RTMDet(nn.Module):
    """backbone -> neck -> bbox_head, MMDet's ``RTMDet`` detector tree (weights load strictly)."""

    def __init__(self, arch: RTMDetArch, num_classes: int = COCO_CLASSES) -> None:
        super().__init__()
        self.arch = arch
        self.num_classes = num_classes
        self.backbone = CSPNeXt(
            deepen_factor=arch.deepen,
            widen_factor=arch.widen,
            out_indices=(2, 3, 4),
            channel_attention=True,
            use_depthwise=arch.depthwise,
        )
        self.neck = CSPNeXtPAFPN(arch.neck_in, arch.neck_out, arch.csp_blocks, arch.depthwise)
        self.bbox_head = RTMDetSepBNHead(
            self.num_classes,
            arch.neck_out,
            arch.neck_out,
            arch.stacked_convs,
            share_conv=arch.share_conv,
            use_depthwise=arch.depthwise,
            exp_on_reg=arch.exp_on_reg,
        )

    def forward(self, x: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """MMDet-normalised BGR [N,3,H,W] -> per level (class logits, l/t/r/b distances in pixels)."""
        return self.bbox_head(self.neck(self.backbone(x)))


def build_rtmdet(name: str, num_classes: int = COCO_CLASSES) -> RTMDet:
    if name not in ARCHS:
        raise KeyError(f"unknown RTMDet variant {name!r}; known: {', '.join(sorted(ARCHS))}")
    return RTMDet(ARCHS[name], num_classes)


def num_classes_of(state_dict: Mapping[str, torch.Tensor]) -> int | None:
    """The class count an MMDet RTMDet state dict was trained for (its level-0 class conv's rows)."""
    w = state_dict.get("bbox_head.rtm_cls.0.weight")
    return int(w.shape[0]) if w is not None else None


def arch_of(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """The variant whose tree has exactly this state dict's keys and shapes (None: no variant).

    Why: a local RTMDet ``.pth`` (``--detector PATH.pth``) names no architecture; the keys do."""
    classes = num_classes_of(state_dict)
    if classes is None:
        return None
    got = {k: tuple(v.shape) for k, v in state_dict.items()}
    for name in ARCHS:
        own = build_rtmdet(name, classes).state_dict()
        if {k: tuple(v.shape) for k, v in own.items()} == got:
            return name
    return None


def priors(input_hw: tuple[int, int], strides: Sequence[int] = STRIDES) -> torch.Tensor:
    """[2, A] prior x, y in input pixels: every cell's top-left corner, level by level, row-major
    (the order the head's maps flatten in)."""
    out = []
    for s in strides:
        h, w = -(-input_hw[0] // s), -(-input_hw[1] // s)
        ys, xs = torch.meshgrid(torch.arange(h) * s, torch.arange(w) * s, indexing="ij")
        out.append(torch.stack([xs.reshape(-1), ys.reshape(-1)]).float())
    return torch.cat(out, 1)


class DetectorGraph(nn.Module):
    """The exported ``detector`` role: RGB 0..1 [N,3,H,W] -> [N, 4 + C, A] (YOLOv8 layout).

    Boxes are clamped to the input canvas (MMDet's ``distance2bbox`` with ``max_shape``) and
    given as centre and size; scores are the class logits' sigmoid."""

    def __init__(self, model: RTMDet, input_hw: tuple[int, int]) -> None:
        super().__init__()
        self.model = model.eval()
        self.input_hw = input_hw
        self.register_buffer("priors", priors(input_hw, model.bbox_head.strides).unsqueeze(0))
        std = torch.tensor(STD_BGR).view(1, 3, 1, 1)
        self.register_buffer("scale", 255.0 / std)
        self.register_buffer("shift", torch.tensor(MEAN_BGR).view(1, 3, 1, 1) / std)
        self.register_buffer("hi", torch.tensor([float(input_hw[1]), float(input_hw[0])]).view(1, 2, 1))

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        x = rgb.flip(1) * self.scale - self.shift  # RGB 0..1 -> MMDet's normalised BGR
        cls_scores, bbox_preds = self.model(x)
        logits = torch.cat([c.flatten(2) for c in cls_scores], 2)
        dist = torch.cat([d.flatten(2) for d in bbox_preds], 2)
        lo = torch.minimum(torch.clamp(self.priors - dist[:, :2], min=0.0), self.hi)
        hi = torch.minimum(torch.clamp(self.priors + dist[:, 2:], min=0.0), self.hi)
        return torch.cat([(lo + hi) / 2, hi - lo, logits.sigmoid()], 1)


__all__ = [
    "ARCHS",
    "CSPNeXtPAFPN",
    "DetectorGraph",
    "RTMDet",
    "RTMDetArch",
    "RTMDetSepBNHead",
    "arch_of",
    "build_rtmdet",
    "num_classes_of",
    "priors",
]
