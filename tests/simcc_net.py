"""A tiny net with an RTMCC head's outputs (``simcc_x`` [N,K,2W], ``simcc_y`` [N,K,2H]), exported
with the project's exporter (dynamic batch), for the fused SimCC decode's graph surgery and
harness tests while the RTMPose architectures live on their own branch.

Why a real torch module rather than a hand-made graph: the exporter's output (symbolic batch,
the Reshape/MatMul pattern of the RTMCC classifiers) is what build.plugin_nodes receives.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from build.export import export_onnx
from runtime.heads.simcc import SIMCC_X, SIMCC_Y, SPLIT_RATIO

K, H_IN, W_IN = 17, 256, 192
WX, HY = int(W_IN * SPLIT_RATIO), int(H_IN * SPLIT_RATIO)


class TinySimCC(nn.Module):
    """Pool the crop, one token per keypoint, then one linear classifier per axis; a per-keypoint
    offset on the x rows pushes the first keypoints' maxima below zero (absent keypoints)."""

    def __init__(self, seed: int = 0, tokens: int = 32) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.pool = nn.AvgPool2d(16)  # [N,3,16,12]
        self.tokens = nn.Linear(3 * 16 * 12, K * tokens)
        self.cls_x = nn.Linear(tokens, WX)
        self.cls_y = nn.Linear(tokens, HY)
        self.offset = nn.Parameter(torch.linspace(-1.0, 0.3, K)[:, None])
        self.t = tokens

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.tokens(self.pool(x).flatten(1)).unflatten(1, (K, self.t))
        return self.cls_x(f) + self.offset, self.cls_y(f)


def export_tiny_simcc(path: Path, seed: int = 0) -> Path:
    return export_onnx(TinySimCC(seed), path, [SIMCC_X, SIMCC_Y])
