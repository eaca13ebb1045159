"""Multiply-accumulate and parameter counts taken from a built model.

Why our own counter: the numbers go into the manifest and the tests compare
them with docs/DESIGN.md section 4's table (MMPose model zoo / DynPose paper), so
the convention has to be theirs and has to be written down:

* Conv2d: output elements x (C_in / groups) x k_h x k_w.
* ConvTranspose2d: **input** elements x (C_out / groups) x k_h x k_w, i.e.
  every input pixel scatters one k x k x C_out stencil. This is MMPose's
  convention: mmengine's analyzer (open-mmlab/mmengine
  ``mmengine/analysis/jit_handles.py``, ``conv_flop_count``: "x_shape if
  transposed else out_shape") and mmcv/ptflops both use the input size. The
  alternative "output elements x C_in x k x k" is stride^2 = 4x larger for
  the s2 deconvs and puts res50 at 9.65 G instead of the published 5.45 G;
  with the input convention res50 counts 5.43 G.
* Linear: output elements x in_features.
* BatchNorm (eval): 2 x elements with an affine transform, 1 x without; adaptive average
  pooling: its input elements. mmengine's analyzer (``jit_handles.py``, ``batchnorm_flop_jit``
  and the ``adaptive_avg_pool2d`` handle) counts these, and MMPose's zoo figures come from
  it: without them RTMPose-t (CSPNeXt: a BN after every conv, channel attention in every
  stage) counts 1.4 % under its published 0.36 G, with them all six RTMPose variants are
  within 0.5 %.
* Attention: any module with a ``matmul_macs(x)`` method (ViT's attention)
  adds its two activation matmuls (q@k^T and attn@v), invisible to hooks
  on weight layers.

Bias adds, activations, max pooling and upsampling are not counted (mmengine does not
count them either, except upsampling, which none of our nets has).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn


def _conv_macs(m: nn.Conv2d, inputs: tuple, out: torch.Tensor) -> int:
    kh, kw = m.kernel_size
    return out.numel() * (m.in_channels // m.groups) * kh * kw


def _deconv_macs(m: nn.ConvTranspose2d, inputs: tuple, out: torch.Tensor) -> int:
    kh, kw = m.kernel_size
    return inputs[0].numel() * (m.out_channels // m.groups) * kh * kw


def _linear_macs(m: nn.Linear, inputs: tuple, out: torch.Tensor) -> int:
    return out.numel() * m.in_features


def _bn_macs(m: nn.BatchNorm2d, inputs: tuple, out: torch.Tensor) -> int:
    return out.numel() * (2 if m.affine else 1)


def _avgpool_macs(m: nn.AdaptiveAvgPool2d, inputs: tuple, out: torch.Tensor) -> int:
    return inputs[0].numel()


# first match wins: ConvTranspose2d before Conv2d (neither subclasses the other today, but the
# order states which rule a layer gets)
_COUNTERS: tuple[tuple[type[nn.Module], Callable[..., int]], ...] = (
    (nn.ConvTranspose2d, _deconv_macs),
    (nn.Conv2d, _conv_macs),
    (nn.Linear, _linear_macs),
    (nn.BatchNorm2d, _bn_macs),
    (nn.AdaptiveAvgPool2d, _avgpool_macs),
)


def count_macs(model: nn.Module, input_shape: Sequence[int] = (1, 3, 256, 192), norms: bool = True) -> float:
    """GMACs of one forward pass on a zero tensor of ``input_shape`` (all of its batch).

    ``norms=False`` leaves BatchNorm and adaptive pooling out, the convention of MMDet's
    RTMDet tables (RTMDet-nano: 0.308 G without them, the published 0.31; 0.320 with them),
    where MMPose's zoo (RTMPose, SimpleBaseline, HRNet) counts them.

    The model is run in eval mode under ``no_grad`` and put back in the mode
    it was in, so this is safe to call on a model that is being trained.
    """
    if len(input_shape) != 4:
        raise ValueError(f"input_shape: expected (N, C, H, W), got {tuple(input_shape)}")
    total = 0
    handles = []

    def add(fn):
        def hook(m: nn.Module, inputs: tuple, out) -> None:
            nonlocal total
            total += int(fn(m, inputs, out))

        return hook

    for m in model.modules():
        fn = next((f for cls, f in _COUNTERS if isinstance(m, cls)), None)
        if not norms and fn in (_bn_macs, _avgpool_macs):
            fn = None
        if fn is not None:
            handles.append(m.register_forward_hook(add(fn)))
        if callable(getattr(m, "matmul_macs", None)):
            handles.append(m.register_forward_hook(add(lambda mod, inp, out: mod.matmul_macs(inp[0]))))
    was_training = model.training
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        model.eval()
        with torch.no_grad():
            model(torch.zeros(*input_shape, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total / 1e9


def count_params(model: nn.Module) -> float:
    """Millions of parameters (BN running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters()) / 1e6
