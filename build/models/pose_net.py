"""A top-down pose network: backbone -> head, with ONNX-contract output names."""

from __future__ import annotations

import torch
from torch import nn


class TopdownPoseNet(nn.Module):
    """``backbone.*`` and ``head.*`` exactly as in MMPose 1.x checkpoints."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.head.output_names

    @property
    def head_kind(self) -> str:
        return self.head.kind

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.head(self.backbone(x))
