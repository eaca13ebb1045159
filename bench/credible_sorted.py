"""The credible regions as they were computed before issue #29 (a full descending sort per map):
the reference the selection-by-mass rewrite in ``runtime/heads/credible.py`` is checked against.

Why kept: "equal to today's definition within a stated tolerance" needs today's code to compare
with, on the same maps, in the tests (tests/test_credible_fast.py) and in the benchmark's
before/after figures (bench/bench_decode.py). Do not edit it to follow the runtime: it is the
definition's yardstick. One deliberate change of the definition since: pixels within 1e-9
relative of the last pixel taken are tied with it (runtime.heads.credible.TIE_RTOL), so the
ellipse no longer depends on the order a blur sums in. Imports nothing from ``runtime`` on purpose (``Regions`` is rebuilt by the
caller from the returned arrays).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _sorted_top(p: np.ndarray) -> np.ndarray:
    """Each row's values sorted descending, only as many as the widest support needs."""
    n = p.shape[-1]
    m = int((p > 0).sum(-1).max(initial=0))
    m = max(1, min(n, m))
    if m < n // 4:
        top = -np.partition(-p, m - 1, axis=-1)[..., :m]
    else:
        top = p
    return -np.sort(-top, axis=-1)


def sorted_regions(maps: np.ndarray, masses: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n_pixels [Q,N,K], ellipse [Q,N,K,5], threshold [Q,N,K] of the smallest-set regions."""
    maps = np.asarray(maps)
    if maps.ndim != 4:
        raise ValueError(f"maps must be [N,K,H,W], got shape {maps.shape}")
    qs = tuple(float(q) for q in masses)
    if any(not 0.0 < q <= 1.0 for q in qs):
        raise ValueError(f"masses must lie in (0, 1], got {qs}")
    n, k, h, w = maps.shape
    p = np.nan_to_num(maps.reshape(n * k, h * w).astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    p = np.clip(p, 0.0, None)
    total = p.sum(-1, keepdims=True)
    p = np.divide(p, total, out=np.zeros_like(p), where=total > 0)  # exact masses even after fp16/clamping
    top = _sorted_top(p)
    csum = np.cumsum(top, axis=-1)
    ys, xs = np.divmod(np.arange(h * w, dtype=np.float64), w)
    basis = np.stack([np.ones_like(xs), xs, ys, xs * xs, ys * ys, xs * ys], axis=1)  # [HW,6]
    counts = np.empty((len(qs), n * k), np.int64)
    thr = np.empty((len(qs), n * k))
    ell = np.empty((len(qs), n * k, 5))
    rows = np.arange(n * k)
    for qi, q in enumerate(qs):  # masses, not keypoints: a handful of vectorised passes
        # float64 cumsum of a row summing to 1 can end at 1 - 1e-16: treat q within 1e-12 as reached
        idx = np.minimum((csum < q - 1e-12).sum(-1), top.shape[-1] - 1)
        counts[qi] = idx + 1
        t = top[rows, idx]
        thr[qi] = t
        inside = (p >= t[:, None] * (1 - 1e-9)) & (p > 0)  # ties within 1e-9 (since session 14)
        mom = inside.astype(np.float64) @ basis  # [NK,6]: count, sums of x, y, xx, yy, xy
        cnt = np.maximum(mom[:, 0], 1.0)
        mx, my = mom[:, 1] / cnt, mom[:, 2] / cnt
        # pixels are unit squares: add 1/12 per axis so a single pixel is a 1x1 region, not a point
        vxx = mom[:, 3] / cnt - mx * mx + 1.0 / 12
        vyy = mom[:, 4] / cnt - my * my + 1.0 / 12
        vxy = mom[:, 5] / cnt - mx * my
        ell[qi] = _ellipse(mx, my, vxx, vyy, vxy)
        empty = total[:, 0] <= 0
        counts[qi][empty] = 0
        ell[qi][empty] = np.nan
    return counts.reshape(len(qs), n, k), ell.reshape(len(qs), n, k, 5), thr.reshape(len(qs), n, k)


def _ellipse(mx: np.ndarray, my: np.ndarray, vxx: np.ndarray, vyy: np.ndarray, vxy: np.ndarray) -> np.ndarray:
    """Centre, semi-axes (2 sqrt(eigenvalue): a uniform filled ellipse's moments) and angle."""
    tr, det = vxx + vyy, vxx * vyy - vxy * vxy
    disc = np.sqrt(np.maximum(tr * tr / 4 - det, 0.0))
    l1, l2 = tr / 2 + disc, np.maximum(tr / 2 - disc, 0.0)
    ang = 0.5 * np.arctan2(2 * vxy, vxx - vyy)
    return np.stack([mx, my, 2 * np.sqrt(l1), 2 * np.sqrt(l2), ang], axis=-1)


def sorted_blur_maps(maps: np.ndarray, sigma: float) -> np.ndarray:
    """Maps [N,K,H,W] convolved with an isotropic Gaussian of ``sigma`` heatmap pixels, renormalised.

    Why: sparsemax maps are exactly zero off a few pixels, so a keypoint that falls
    off the support is outside every region, whatever its mass, and no monotone map
    of the mass can raise coverage past the fraction of keypoints on the support
    (0.67 for the fixture). Spreading the map first (the calibration fits sigma)
    makes every pixel reachable. Two matrix products (separable, zero border: mass
    leaving the map is dropped, then renormalised), no loop over keypoints.
    """
    maps = np.asarray(maps, np.float64)
    if sigma <= 0:
        return maps
    n, k, h, w = maps.shape

    def kernel(m: int) -> np.ndarray:
        d = np.arange(m, dtype=np.float64)
        return np.exp(-((d[:, None] - d[None, :]) ** 2) / (2.0 * sigma * sigma))

    p = np.nan_to_num(maps.reshape(n * k, h, w), nan=0.0, posinf=0.0, neginf=0.0)
    out = kernel(h) @ p @ kernel(w)
    tot = out.sum((1, 2), keepdims=True)
    out = np.divide(out, tot, out=np.zeros_like(out), where=tot > 0)
    shaped: np.ndarray = out.reshape(n, k, h, w)
    return shaped
