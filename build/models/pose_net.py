"""A top-down pose network: backbone -> head, with ONNX-contract output names."""

from __future__ import annotations

import torch
from torch import nn


class TopdownPoseNet(nn.Module):
    """``backbone.*`` and ``head.*`` exactly as in MMPose 1.x checkpoints.

    ``input_hw`` is the crop (H, W) the net is built for (ModelSpec.input_hw): the export traces
    and checks the net at that size (RTMPose's SimCC head only takes its own).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, input_hw: tuple[int, int] = (256, 192)) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.input_hw = input_hw

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.head.output_names

    @property
    def head_kind(self) -> str:
        return self.head.kind

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.head(self.backbone(x))
