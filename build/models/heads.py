"""Pose heads that sit on any backbone.

Parameter names follow MMPose 1.x (``head.deconv_layers``, ``head.final_layer``)
and ProbPose (``head.{probability,visibility,oks,error}_layers``) so released
checkpoints load strictly without a renaming table.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

NUM_KEYPOINTS = 17


def _deconv_stack(in_channels: int, out_channels: Sequence[int], kernel_sizes: Sequence[int]) -> nn.Module:
    """[ConvTranspose(k, s2), BN, ReLU] x len(out_channels); Identity when empty (HRNet)."""
    if not out_channels:
        return nn.Identity()
    layers: list[nn.Module] = []
    for ch, k in zip(out_channels, kernel_sizes):
        padding, output_padding = {4: (1, 0), 3: (1, 1), 2: (0, 0)}[k]
        layers += [
            nn.ConvTranspose2d(
                in_channels, ch, k, stride=2, padding=padding, output_padding=output_padding, bias=False
            ),
            nn.BatchNorm2d(ch),
            nn.ReLU(inplace=True),
        ]
        in_channels = ch
    return nn.Sequential(*layers)


class HeatmapHead(nn.Module):
    """MMPose ``HeatmapHead``: optional deconvs, then a 1x1 conv to K heatmaps."""

    output_names: tuple[str, ...] = ("heatmaps",)
    kind = "heatmap"

    def __init__(
        self,
        in_channels: int,
        out_channels: int = NUM_KEYPOINTS,
        deconv_out_channels: Sequence[int] = (256, 256, 256),
        deconv_kernel_sizes: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        deconv_kernel_sizes = deconv_kernel_sizes or [4] * len(deconv_out_channels)
        self.deconv_layers = _deconv_stack(in_channels, deconv_out_channels, deconv_kernel_sizes)
        last = deconv_out_channels[-1] if deconv_out_channels else in_channels
        self.final_layer = nn.Conv2d(last, out_channels, kernel_size=1)

    def forward_maps(self, feat: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.deconv_layers(feat))

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (self.forward_maps(feat),)


def sparsemax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Exact sparsemax by sorting, written with ops that export to plain ONNX.

    TopK (from sort), CumSum, comparisons and a gather: ONNX Runtime runs it
    as is and TensorRT >= 10 parses it, so no custom op is needed unless the
    fused plugin is asked for. Shifting by the row max first keeps the
    cumulative sums small in fp16 and makes the result shift invariant.
    """
    z = z.transpose(dim, -1)
    z = z - z.amax(dim=-1, keepdim=True)
    zs, _ = torch.sort(z, dim=-1, descending=True)
    n = z.shape[-1]
    k = torch.arange(1, n + 1, dtype=z.dtype, device=z.device)
    cs = zs.cumsum(dim=-1)
    support = (1 + k * zs) > cs
    k_z = support.to(z.dtype).sum(dim=-1, keepdim=True)
    cs_k = torch.gather(cs, -1, (k_z - 1).long())
    tau = (cs_k - 1) / k_z
    return torch.clamp(z - tau, min=0).transpose(dim, -1)


class _AuxHead(nn.Sequential):
    """ProbPose's per-keypoint scalar heads (presence, visibility, OKS, error).

    3x [conv3x3, BN, maxpool, ReLU] then 1x1 conv to K, then sigmoid (ReLU for
    the error head). The pools are (4,3), (2,2), (2,2) as in ProbPose for
    ViT's 16x12 tokens; they are clamped to the feature size and followed by a
    global max so the head also fits CNN backbones with other strides.

    A flat ``nn.Sequential`` on purpose: ProbPose's checkpoint stores these
    as ``head.probability_layers.{0,1,4,5,8,9,12}.*`` (conv, BN, conv, BN,
    conv, BN, 1x1 conv), with no wrapper level in between
    (MiraPurkrabek/ProbPose_code, mmpose/models/heads/hybrid_heads/probmap_head.py,
    ``_build_probability_head``).
    """

    POOLS = ((4, 3), (2, 2), (2, 2))

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        feat_hw: tuple[int, int],
        final: str = "sigmoid",
    ) -> None:
        layers: list[nn.Module] = []
        h, w = feat_hw
        ch = in_channels
        for ph, pw in self.POOLS:
            ph, pw = min(ph, h), min(pw, w)
            layers += [
                nn.Conv2d(ch, mid_channels, 3, padding=1),
                nn.BatchNorm2d(mid_channels),
                nn.MaxPool2d((ph, pw), (ph, pw)),
                nn.ReLU(inplace=True),
            ]
            h, w, ch = h // ph, w // pw, mid_channels
        layers += [nn.Conv2d(ch, out_channels, 1), nn.Sigmoid() if final == "sigmoid" else nn.ReLU()]
        super().__init__(*layers)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        # the activation is monotonic, so the global max commutes with it
        return super().forward(feat).amax(dim=(2, 3))


class ProbMapHead(HeatmapHead):
    """ProbPose head: sparsemax probability maps plus presence/visibility/OKS.

    The aux heads see a detached backbone feature (ProbPose trains them
    without disturbing the keypoint maps). The error head is kept so the
    released checkpoint loads strictly, but it is not an exported output.
    """

    output_names = ("probmaps", "presence", "visibility", "oks")
    kind = "probmap"

    def __init__(
        self,
        in_channels: int,
        out_channels: int = NUM_KEYPOINTS,
        deconv_out_channels: Sequence[int] = (256, 256),
        deconv_kernel_sizes: Sequence[int] | None = None,
        feat_hw: tuple[int, int] = (16, 12),
        aux_channels: int | None = None,
        temperature: float = 0.5,
    ) -> None:
        super().__init__(in_channels, out_channels, deconv_out_channels, deconv_kernel_sizes)
        mid = aux_channels or in_channels
        self.temperature = temperature
        self.probability_layers = _AuxHead(in_channels, mid, out_channels, feat_hw)
        self.visibility_layers = _AuxHead(in_channels, mid, out_channels, feat_hw)
        self.oks_layers = _AuxHead(in_channels, mid, out_channels, feat_hw)
        self.error_layers = _AuxHead(in_channels, mid, out_channels, feat_hw, final="relu")

    def logits(self, feat: torch.Tensor) -> torch.Tensor:
        """Map logits after temperature: what the fused decode plugin consumes."""
        return self.forward_maps(feat) / self.temperature

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits = self.logits(feat)
        n, k, h, w = logits.shape
        probs = sparsemax(logits.reshape(-1, k, h * w), dim=-1).clamp(0, 1).reshape(-1, k, h, w)
        aux = feat.detach()
        return (probs, self.probability_layers(aux), self.visibility_layers(aux), self.oks_layers(aux))
