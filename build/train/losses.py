"""Losses: heatmap MSE, ProbPose's expected-OKS loss, the aux-head BCEs, and SimCC's KL loss.

Targets are built on the fly from heatmap-pixel coordinates so one batch
format serves both head kinds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from runtime.heads.decode import COCO_SIGMAS
from runtime.heads.grid import HEATMAP_HW

HEATMAP_SIGMA = 2.0  # MMPose's sigma for 64x48 maps
MSE_SCALE = 100.0  # issue 9's trial: MSE x100 trained better than softmax CE
FOREGROUND_WEIGHT = 20.0  # pixels under the Gaussian count (1 + 20 g): leaves the all-zero plateau fast
PROBPOSE_ALPHA = 0.05
# RTMPose's SimCCLabel at 256x192: Gaussian labels with sigma (x, y) in bins, bins twice as fine as
# input pixels, peaks of 1 (normalize=False); its KLDiscretLoss: beta 10, labels through a softmax
# at beta 10, keypoints weighted by their target weight
SIMCC_SIGMA = (4.9, 5.66)
SIMCC_SPLIT = 2.0
KL_BETA = 10.0
KL_LABEL_BETA = 10.0


def _grid(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = HEATMAP_HW
    ys = torch.arange(h, dtype=torch.float32, device=device).view(1, 1, h, 1)
    xs = torch.arange(w, dtype=torch.float32, device=device).view(1, 1, 1, w)
    return xs, ys


def gaussian_targets(xy: torch.Tensor, sigma: float = HEATMAP_SIGMA) -> torch.Tensor:
    """[B,K,64,48] Gaussians of peak 1 centred at the sub-pixel keypoints (pixel i sits at i)."""
    xs, ys = _grid(xy.device)
    d2 = (xs - xy[..., 0, None, None]) ** 2 + (ys - xy[..., 1, None, None]) ** 2
    return torch.exp(-d2 / (2 * sigma**2))


def heatmap_mse(
    pred: torch.Tensor, xy: torch.Tensor, weight: torch.Tensor, foreground: float = FOREGROUND_WEIGHT
) -> torch.Tensor:
    """MMPose KeypointMSELoss with target weights, scaled by 100, foreground pixels up-weighted.

    Plain MSE on 64x48 maps whose Gaussian covers ~0.4% of the pixels sits on
    the "predict zero everywhere" plateau for hundreds of steps (measured here:
    600 steps of fixture-s learned nothing); weighting each pixel by
    1 + 20 g(x) gives the peak a gradient from the first step. The optimum is
    still the Gaussian itself, so the outputs keep MMPose's [0, 1] scale.
    """
    tgt = gaussian_targets(xy)
    w = weight.float()[..., None, None] * (1.0 + foreground * tgt)
    return MSE_SCALE * ((pred - tgt) ** 2 * w).mean()


def oks_maps(xy: torch.Tensor, area_hm: torch.Tensor, sigmas=COCO_SIGMAS) -> torch.Tensor:
    """OKS of every heatmap pixel as a guess for each keypoint: exp(-d^2 / (2 s^2 k^2)), k = 2 sigma."""
    xs, ys = _grid(xy.device)
    k = 2 * torch.as_tensor(sigmas, dtype=torch.float32, device=xy.device).view(1, -1, 1, 1)
    d2 = (xs - xy[..., 0, None, None]) ** 2 + (ys - xy[..., 1, None, None]) ** 2
    s2 = area_hm.clamp(min=1.0).view(-1, 1, 1, 1)
    return torch.exp(-d2 / (2 * s2 * k**2))


_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel_energy(p: torch.Tensor) -> torch.Tensor:
    """Per-map sum of |Sobel grad p|^2, [B,K]."""
    b, k, h, w = p.shape
    kern = torch.stack([_SOBEL_X, _SOBEL_X.t()]).unsqueeze(1).to(p)
    g = F.conv2d(p.reshape(b * k, 1, h, w), kern, padding=1)
    return (g**2).sum(dim=(1, 2, 3)).view(b, k)


def probpose_loss(
    probs: torch.Tensor,
    xy: torch.Tensor,
    area_hm: torch.Tensor,
    weight: torch.Tensor,
    alpha: float = PROBPOSE_ALPHA,
) -> torch.Tensor:
    """ProbPose: per pixel (1-a) p (1-OKS) + a |Sobel grad p|^2, summed over the map, mean over keypoints.

    The first term is the expected OKS loss of a guess drawn from p; the second
    keeps the map smooth enough for the expected-OKS decode.
    """
    oks = oks_maps(xy, area_hm)
    expected = (probs * (1 - oks)).sum(dim=(2, 3))
    per_kp = (1 - alpha) * expected + alpha * sobel_energy(probs)
    w = weight.float()
    return (per_kp * w).sum() / w.sum().clamp(min=1.0)


def aux_losses(
    presence: torch.Tensor,
    visibility: torch.Tensor,
    oks_pred: torch.Tensor,
    batch: dict[str, torch.Tensor],
    achieved_oks: torch.Tensor,
) -> torch.Tensor:
    """Presence BCE (in the crop window or not), visibility BCE, and the OKS head against the achieved OKS."""
    known = batch["known"].float()
    inside = batch["inside"].float()
    eps = 1e-6
    pres = F.binary_cross_entropy(presence.clamp(eps, 1 - eps), inside, weight=known)
    lab = (batch["labelled"] & batch["inside"]).float()
    vis = F.binary_cross_entropy(visibility.clamp(eps, 1 - eps), batch["visible"].float(), weight=lab)
    oks = F.binary_cross_entropy(
        oks_pred.clamp(eps, 1 - eps), achieved_oks.detach().clamp(0, 1), weight=inside
    )
    return pres + vis + oks


def argmax_oks(maps: torch.Tensor, xy: torch.Tensor, area_hm: torch.Tensor) -> torch.Tensor:
    """OKS each keypoint's argmax pixel achieves, [B,K] (target of the OKS head)."""
    with torch.no_grad():
        b, k, h, w = maps.shape
        idx = maps.reshape(b, k, h * w).argmax(-1)
        oks = oks_maps(xy, area_hm).reshape(b, k, h * w)
        return oks.gather(-1, idx[..., None]).squeeze(-1)


def simcc_targets(
    xy: torch.Tensor,
    weight: torch.Tensor,
    input_hw: tuple[int, int] = (256, 192),
    sigma: tuple[float, float] = SIMCC_SIGMA,
    split: float = SIMCC_SPLIT,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SimCC labels of keypoints ``xy`` [B,K,2] in input pixels: x [B,K,W*split], y [B,K,H*split], weights.

    As MMPose's SimCCLabel (gaussian, normalize=False) documents it: each keypoint goes to the
    nearest bin (``round(xy * split)``), each axis gets an unnormalised Gaussian of its own sigma
    around it (peak 1), and a keypoint whose 3-sigma window lies wholly outside the bins, or whose
    weight is under 0.5, gets weight 0 and all-zero labels.
    """
    h, w = input_hw
    nx, ny = round(w * split), round(h * split)
    mu = torch.round(xy.float() * split)
    r = torch.tensor(sigma, dtype=torch.float32, device=xy.device) * 3
    lo, hi = mu - r, mu + r + 1
    size = torch.tensor([nx, ny], dtype=torch.float32, device=xy.device)
    out = (lo >= size).any(-1) | (hi < 0).any(-1)
    keep = (weight.float() >= 0.5) & ~out
    bx = torch.arange(nx, dtype=torch.float32, device=xy.device)
    by = torch.arange(ny, dtype=torch.float32, device=xy.device)
    tx = torch.exp(-((bx - mu[..., 0, None]) ** 2) / (2 * sigma[0] ** 2))
    ty = torch.exp(-((by - mu[..., 1, None]) ** 2) / (2 * sigma[1] ** 2))
    k = keep[..., None].float()
    return tx * k, ty * k, keep.float()


def kl_discret_loss(
    pred_x: torch.Tensor,
    pred_y: torch.Tensor,
    target_x: torch.Tensor,
    target_y: torch.Tensor,
    weight: torch.Tensor,
    beta: float = KL_BETA,
    label_beta: float = KL_LABEL_BETA,
) -> torch.Tensor:
    """MMPose's KLDiscretLoss as documented (label_softmax, use_target_weight): per keypoint and axis
    KL(softmax(label_beta * target) || softmax(beta * pred)) averaged over the bins, times the
    keypoint's weight, summed over batch and keypoints and both axes, divided by the keypoint count K.

    A zero-weight keypoint's all-zero labels become a uniform distribution under the softmax, but
    its weight removes it from the sum.
    """
    k = pred_x.shape[1]
    w = weight.float().reshape(-1)
    loss = pred_x.new_zeros(())
    for pred, tgt in ((pred_x, target_x), (pred_y, target_y)):
        logp = F.log_softmax(pred.reshape(-1, pred.shape[-1]) * beta, dim=-1)
        q = F.softmax(tgt.reshape(-1, tgt.shape[-1]) * label_beta, dim=-1)
        kl = (q * (torch.log(q.clamp(min=1e-38)) - logp)).mean(-1)
        loss = loss + (kl * w).sum()
    return loss / k
