"""ViT-S backbone of ProbPose-s (mmpretrain ``VisionTransformer`` names).

ProbPose (MiraPurkrabek/ProbPose_code,
``configs/body_2d_keypoint/topdown_probmap/coco/td-pm_ProbPose-small_8xb64-210e_coco-256x192.py``,
commit 93bc991) builds ``mmpretrain.VisionTransformer`` with embed 384, 12
layers, 12 heads, FFN 1536, patch 16, ``patch_cfg=dict(padding=2)``,
``qkv_bias=True``, ``with_cls_token=False``, ``out_type='featmap'``.
Key layout verified against open-mmlab/mmpretrain
``mmpretrain/models/backbones/vision_transformer.py`` and
``mmpretrain/models/utils/attention.py`` (commit ee7f2e8), plus mmcv's
``PatchEmbed``/``FFN`` (open-mmlab/mmcv ``mmcv/cnn/bricks/transformer.py``).
Keys relative to ``backbone.``::

    patch_embed.projection.{weight,bias}      Conv2d 3 -> 384, k16 s16 p2 -> 16 x 12 tokens
    pos_embed                                 [1, 192, 384] (no class-token slot)
    layers.<i>.ln1 / ln2                      LayerNorm(384, eps 1e-6)
    layers.<i>.attn.qkv / attn.proj           Linear 384 -> 1152 (bias), 384 -> 384
    layers.<i>.ffn.layers.0.0 / ffn.layers.1  Linear 384 -> 1536, GELU, Linear 1536 -> 384
    ln1                                       final LayerNorm (``final_norm=True``)

No ``cls_token`` parameter exists when ``with_cls_token=False``. A checkpoint
whose ``pos_embed`` still carries the class-token slot ([1, 193, 384], e.g.
converted ViTPose/MAE weights) loses that slot on load, and a different
grid is resized bicubically, which is what mmpretrain's ``_prepare_pos_embed``
hook does; so ``load_state_dict(strict=True)`` accepts both layouts.

Attention is written as explicit matmuls + softmax rather than
``scaled_dot_product_attention`` so the legacy ONNX exporter (opset 17) emits
plain MatMul/Softmax that every runtime and TensorRT 10.3 parse, and so the
MAC counter can see the two attention matmuls (:meth:`Attention.matmul_macs`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from runtime.heads.registry import PROBMAP

IMG_HW = (256, 192)


class PatchEmbed(nn.Module):
    def __init__(self, embed_dims: int, patch: int = 16, padding: int = 2) -> None:
        super().__init__()
        self.projection = nn.Conv2d(3, embed_dims, patch, stride=patch, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(x)


class Attention(nn.Module):
    def __init__(self, embed_dims: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.scale = self.head_dims**-0.5
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=True)
        self.proj = nn.Linear(embed_dims, embed_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, n, c = x.shape
        qkv = self.qkv(x).reshape(-1, n, 3, self.num_heads, self.head_dims).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(-1, n, c))

    @staticmethod
    def matmul_macs(x: torch.Tensor) -> int:
        """q@k^T and attn@v: each B*heads*N*N*head_dim = B*N*N*C multiply-adds."""
        b, n, c = x.shape
        return 2 * b * n * n * c


class FFN(nn.Module):
    def __init__(self, embed_dims: int, hidden: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Sequential(nn.Linear(embed_dims, hidden), nn.GELU(), nn.Dropout(0.0)),
            nn.Linear(hidden, embed_dims),
            nn.Dropout(0.0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class TransformerEncoderLayer(nn.Module):
    def __init__(self, embed_dims: int, num_heads: int, hidden: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(embed_dims, eps=1e-6)
        self.attn = Attention(embed_dims, num_heads)
        self.ln2 = nn.LayerNorm(embed_dims, eps=1e-6)
        self.ffn = FFN(embed_dims, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.ffn(self.ln2(x))


def _grid(tokens: int, name: str) -> tuple[int, int]:
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise ValueError(
            f"{name}: cannot infer the token grid of {tokens} positions; "
            "resize the checkpoint's pos_embed to 16x12 (192 tokens) before loading"
        )
    return side, side


class VisionTransformer(nn.Module):
    """Plain ViT returning the patch tokens as a C x 16 x 12 feature map at 256x192."""

    def __init__(
        self,
        embed_dims: int = 384,
        num_layers: int = 12,
        num_heads: int = 12,
        ffn_ratio: int = 4,
        patch: int = 16,
        padding: int = 2,
    ) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(embed_dims, patch, padding)
        self.grid = tuple((s + 2 * padding - patch) // patch + 1 for s in IMG_HW)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], embed_dims))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(embed_dims, num_heads, embed_dims * ffn_ratio) for _ in range(num_layers)
        )
        self.ln1 = nn.LayerNorm(embed_dims, eps=1e-6)
        self.out_channels = embed_dims
        self.register_load_state_dict_pre_hook(self._adapt_pos_embed)

    def _adapt_pos_embed(self, module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
        """Drop a stored class-token slot and resize another grid to ours (as mmpretrain does)."""
        key = prefix + "pos_embed"
        pe = state_dict.get(key)
        if pe is None or pe.shape == self.pos_embed.shape:
            return
        n_ours = self.pos_embed.shape[1]
        if pe.shape[1] == n_ours + 1:
            pe = pe[:, 1:]
        elif pe.shape[1] != n_ours:
            if pe.shape[1] - 1 == math.isqrt(pe.shape[1] - 1) ** 2:
                pe = pe[:, 1:]  # square grid plus a class-token slot
            src = _grid(pe.shape[1], key)
            c = pe.shape[2]
            pe = pe.reshape(1, *src, c).permute(0, 3, 1, 2)
            pe = F.interpolate(pe, size=self.grid, mode="bicubic", align_corners=False)
            pe = pe.permute(0, 2, 3, 1).reshape(1, n_ours, c)
        state_dict[key] = pe

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != IMG_HW:
            raise ValueError(
                f"input: ViT expects Nx3x{IMG_HW[0]}x{IMG_HW[1]} crops, got {tuple(x.shape)}; "
                "make crops with runtime.pose.preprocess.make_crops"
            )
        x = self.patch_embed(x)
        c, h, w = x.shape[1:]
        x = x.flatten(2).transpose(1, 2) + self.pos_embed
        for layer in self.layers:
            x = layer(x)
        return self.ln1(x).transpose(1, 2).reshape(-1, c, h, w)


def _register() -> None:
    from .registry import ModelSpec, register

    register(
        ModelSpec(
            "probpose-s",
            VisionTransformer,
            out_channels=384,
            feat_hw=(16, 12),
            heatmap_deconvs=(256, 256),
            probmap_deconvs=(256, 256),
            aux_channels=384,
            gmacs=6.73,
            params_m=40.3,  # 6.39 + 0.34 attention, all 4 aux heads
            notes="ProbPose-s: ViT-S + ProbMapHead (td-pm_ProbPose-small_8xb64-210e_coco-256x192)",
            extra={"reference_head": PROBMAP},
        )
    )


_register()
