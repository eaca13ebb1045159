"""RTMPose's RTMCC head: per-keypoint 1-D classifications along x and y (SimCC), MMPose 1.x names.

Key layout (``mmpose/models/heads/coord_cls_heads/rtmcc_head.py`` and
``mmpose/models/utils/rtmcc_block.py``; keys relative to ``head.``)::

    final_layer.{weight,bias}        k x k conv (7 in every RTMPose config) C -> K keypoint maps
    mlp.0.g                          ScaleNorm over the flattened map (one learnt gain)
    mlp.1.weight                     Linear h*w -> hidden (256), no bias
    gau.{uv,o}.weight                the gated attention unit (RTMCCBlock, self-attention, no bias)
    gau.gamma, gau.beta              per-(q, k) scale and offset of the shared base
    gau.ln.g                         ScaleNorm before ``uv``
    gau.res_scale.scale              learnt scale on the residual
    cls_x.weight, cls_y.weight       Linear hidden -> W * split, H * split bins, no bias

The released configs set ``use_rel_bias=False`` and ``pos_enc=False`` (no ``gau.w``, no rotary
encoding), dropout and drop-path 0, SiLU: only that setting is built. The output names are the
ones runtime.heads.simcc decodes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from runtime.heads.simcc import SIMCC_X, SIMCC_Y, SPLIT_RATIO

from .heads import NUM_KEYPOINTS


class ScaleNorm(nn.Module):
    """x / (||x|| / sqrt(d)), clamped at ``eps``, times one learnt gain ``g``."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.scale = dim**-0.5
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True) * self.scale
        return x / norm.clamp(min=self.eps) * self.g


class Scale(nn.Module):
    """Element-wise learnt scale (``scale``), the GAU's residual weight."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class RTMCCBlock(nn.Module):
    """Gated attention unit over the K keypoint tokens (self-attention, squared-ReLU kernel)."""

    def __init__(self, dims: int, expansion_factor: int = 2, s: int = 128, eps: float = 1e-5) -> None:
        super().__init__()
        self.s = s
        self.e = int(dims * expansion_factor)
        self.o = nn.Linear(self.e, dims, bias=False)
        self.uv = nn.Linear(dims, 2 * self.e + s, bias=False)
        self.gamma = nn.Parameter(torch.rand(2, s))
        self.beta = nn.Parameter(torch.rand(2, s))
        self.ln = ScaleNorm(dims, eps=eps)
        self.act_fn = nn.SiLU(inplace=True)
        self.res_scale = Scale(dims)
        self.sqrt_s = math.sqrt(s)
        nn.init.xavier_uniform_(self.uv.weight)

    def matmul_macs(self, x: torch.Tensor) -> int:
        """The two token matmuls (q k^T and kernel v), invisible to the Linear hooks (build.flops)."""
        n, k, _ = x.shape
        return n * k * k * (self.s + self.e)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        uv = self.act_fn(self.uv(self.ln(x)))
        u, v, base = torch.split(uv, [self.e, self.e, self.s], dim=2)
        base = base.unsqueeze(2) * self.gamma + self.beta  # [N, K, 2, s]
        q, k = base[:, :, 0], base[:, :, 1]
        kernel = torch.square(torch.relu(torch.matmul(q, k.transpose(1, 2)) / self.sqrt_s))
        return self.res_scale(x) + self.o(u * torch.matmul(kernel, v))


class RTMCCHead(nn.Module):
    """MMPose ``RTMCCHead``: 7x7 conv to K maps, flatten, ScaleNorm + Linear, GAU, x/y classifiers.

    ``input_hw`` is the crop (H, W); the classifiers have ``W * split`` and ``H * split`` bins.
    Takes the backbone's tuple of maps and uses the last one (MMPose's ``input_index=-1``).
    """

    output_names: tuple[str, ...] = (SIMCC_X, SIMCC_Y)
    kind = "simcc"

    def __init__(
        self,
        in_channels: int,
        input_hw: tuple[int, int],
        out_channels: int = NUM_KEYPOINTS,
        stride: int = 32,
        hidden_dims: int = 256,
        s: int = 128,
        expansion_factor: int = 2,
        final_layer_kernel_size: int = 7,
        split_ratio: float = SPLIT_RATIO,
    ) -> None:
        super().__init__()
        h, w = input_hw
        flat = (h // stride) * (w // stride)
        k = final_layer_kernel_size
        self.tokens = (out_channels, flat)  # static, so the exported graph keeps K and the bins fixed
        self.final_layer = nn.Conv2d(in_channels, out_channels, k, padding=k // 2)
        self.mlp = nn.Sequential(ScaleNorm(flat), nn.Linear(flat, hidden_dims, bias=False))
        self.gau = RTMCCBlock(hidden_dims, expansion_factor, s)
        self.cls_x = nn.Linear(hidden_dims, int(w * split_ratio), bias=False)
        self.cls_y = nn.Linear(hidden_dims, int(h * split_ratio), bias=False)
        self.init_weights()

    def init_weights(self) -> None:
        """MMPose's RTMCCHead initialisation: every conv N(0, 0.001), every Linear N(0, 0.01), biases 0.

        Why it matters (released checkpoints overwrite it; training from scratch does not): with
        PyTorch's default init the classifiers' logits, times the loss's beta of 10, start as
        saturated softmaxes (KL loss 10.7 on the first batch against 0.55) and the net sat at the
        mean pose for thousands of steps; with this init it fits one batch of 32 crops to a median
        5.6 px in 80 steps (43 px with the default init). The GAU's ``uv`` is a Linear too, so its
        own Xavier init gives way here, as in MMPose where the head's init runs after the block's.
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, feats: tuple[torch.Tensor, ...] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = feats[-1] if isinstance(feats, tuple) else feats
        # reshape to the known (K, h*w), not flatten(2): flatten traces the size from the input's
        # shape and the ONNX outputs lose their fixed keypoint dim
        tokens = self.gau(self.mlp(self.final_layer(feat).reshape(-1, *self.tokens)))
        return self.cls_x(tokens), self.cls_y(tokens)
