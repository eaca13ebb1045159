"""Credible regions of ProbPose probability maps: "the wrist is in here with probability q".

For each keypoint map P (non-negative, sums to 1: sparsemax output) and mass q,
the q-region is the smallest set of heatmap pixels whose probabilities add up
to at least q: take pixels in decreasing probability until the running sum
reaches q. Its **area** is that pixel count (exact, ties broken arbitrarily,
which does not change the count). Its **shape** is reported as the ellipse with
the same second moments as the region taken as a uniform set of pixels
(semi-axes 2*sqrt(eigenvalues), exact for a filled ellipse); pixels tied with
the last one taken are all included for the shape, so a tie never depends on
pixel order. An ellipse (5 numbers) was chosen over a convex hull because it is
fixed-size, cheap to vectorise, survives the crop -> image affine exactly, and
two separated peaks still show up as a long ellipse plus a large area.

Why hand-written: no library computes highest-density regions of many small
discrete maps at once; this is one partial sort per map and one matrix product
for all moments, with no Python loop over keypoints.

Calibration (``CoverageMap``): ProbPose asks that the top-q pixels hold the
keypoint q of the time. ``fit_coverage`` measures that on crops with known
keypoints and ``CoverageMap.nominal_for`` returns the map mass to use so the
reported q-region covers q of the keypoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_MASSES = (0.5, 0.9)
# Pixels within this relative distance of a region's last pixel are tied with it (all in, for the
# ellipse and coverage). Why not exact equality: pixels equal in real arithmetic (the two sides of
# a symmetric blur) come out a few ulps apart, and which side is "above" then depends on the order
# a blur sums in (numpy's matrix products against the C++ build moved 3 % of the sigma-1 ellipses).
TIE_RTOL = 1e-9


@dataclass
class Regions:
    """Per mass q (in ``masses`` order): arrays over [N, K]."""

    masses: tuple[float, ...]
    n_pixels: np.ndarray  # [Q,N,K] int: heatmap pixels in the smallest set holding mass q
    ellipse: np.ndarray  # [Q,N,K,5] float64: cx, cy, semi-major, semi-minor, angle (rad, of the major axis)
    threshold: np.ndarray  # [Q,N,K] float: probability of the last pixel taken


def _cleaned(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows [N*K, H*W] of non-negative finite values (the input itself when it already is; a
    cleaned copy otherwise) and their float64 sums [N*K] (0 marks an empty map).

    Nothing is normalised here: dividing a row by its sum keeps the pixels' order, so the
    selection ranks the values as given and divides only the candidates it keeps. At these
    sizes every full-size temporary costs more than the arithmetic on it.
    """
    n, k, h, w = maps.shape
    m = maps.reshape(n * k, h * w)
    if m.dtype not in (np.float32, np.float64):
        m = m.astype(np.float32)
    if m.size and not (np.isfinite(m).all() and m.min() >= 0):
        m = np.maximum(np.nan_to_num(m, nan=0.0, posinf=0.0, neginf=0.0), 0)
    return m, m.sum(-1, dtype=np.float64)


@dataclass
class _Candidates:
    """The pixels that can be in any requested region, per map, most probable first: values
    [R,C] (raw, zero-padded), and for a compacted block their pixel index [R,C] (-1 = padding)."""

    values: np.ndarray
    pixel: np.ndarray | None  # None: every pixel is a candidate (dense block, sorted values only)
    count: np.ndarray  # [R] real candidates per map


def _candidates(m: np.ndarray, total: np.ndarray, q_max: float) -> _Candidates:
    """Selection by mass, one pass: a pixel below ``(1 - q_max) / 2 / HW`` of its map's mass
    cannot be in the q_max region, because all such pixels together hold at most
    ``(1 - q_max) / 2`` (HW of them at most), so the pixels above hold more than q_max.
    Sparsemax maps keep a few pixels each; only the candidates are sorted (one padded block
    for all maps). Blurred, nearly flat maps keep most pixels: they are sorted whole."""
    r, hw = m.shape
    bound = (0.5 * (1.0 - q_max) / max(hw, 1)) * total
    keep = m > bound[:, None] if q_max < 1.0 else m > 0
    count = keep.sum(-1)
    width = max(1, int(count.max(initial=0)))
    if width > hw // 4:  # dense: a block would not be smaller, and compacting costs a pass
        return _Candidates(np.sort(m, axis=-1)[:, ::-1], None, np.where(total > 0, hw, 0))
    sel_r, sel_c = np.nonzero(keep)
    pos = np.arange(sel_r.size) - (np.cumsum(count) - count)[sel_r]
    vals = np.zeros((r, width), m.dtype)
    vals[sel_r, pos] = m[sel_r, sel_c]
    pix = np.full((r, width), -1, np.intp)
    pix[sel_r, pos] = sel_c
    order = np.argsort(-vals, axis=-1, kind="stable")
    return _Candidates(np.take_along_axis(vals, order, -1), np.take_along_axis(pix, order, -1), count)


def _thresholds(
    cand: _Candidates, total: np.ndarray, qs: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per mass and map: the region's pixel count, its last pixel's probability, and that
    pixel's raw value (what the moments compare against)."""
    r = total.shape[0]
    tot = np.where(total > 0, total, 1.0)[:, None]  # p = v / sum, divided as the definition divides
    csum = _running_mass(cand, tot[:, 0], total <= 0, max(qs, default=1.0) - 1e-12)
    rows = np.arange(r)
    last = np.maximum(cand.count - 1, 0)
    counts = np.zeros((len(qs), r), np.int64)
    thr = np.zeros((len(qs), r))
    raw = np.zeros((len(qs), r), cand.values.dtype)
    for qi, q in enumerate(qs):  # masses, not keypoints: a handful of vectorised passes
        # float64 cumsum of a row summing to 1 can end at 1 - 1e-16: treat q within 1e-12 as reached
        idx = np.minimum((csum < q - 1e-12).sum(-1), last)
        counts[qi] = idx + 1
        raw[qi] = cand.values[rows, idx]
        thr[qi] = raw[qi] / tot[:, 0]
    return counts, thr, raw


def _running_mass(cand: _Candidates, tot: np.ndarray, empty: np.ndarray, q_max: float) -> np.ndarray:
    """The running sums of the candidates' probabilities (``v / tot``, most probable first), up
    to the column where every map has reached ``q_max`` or run out of candidates: columns past
    that cannot change any region's count, and on blurred maps the largest region holds about
    half the pixels, so half the divisions and additions are never done.

    Computed in segments, each continuing the last one's sum with one float64 addition, so the
    sums are bitwise those of one sequential cumsum over the whole row.
    """
    r, c = cand.values.shape
    csum = np.empty((r, c))
    seg = max(64, c // 8)
    for s in range(0, c, seg):
        e = min(c, s + seg)
        part = cand.values[:, s:e] / tot[:, None]
        if s:
            part[:, 0] += csum[:, s - 1]
        np.cumsum(part, axis=1, out=csum[:, s:e])
        if (empty | (csum[:, e - 1] >= q_max) | (cand.count <= e)).all():
            return csum[:, :e]
    return csum


def _masses(masses: Sequence[float]) -> tuple[float, ...]:
    """The requested masses as floats, each in (0, 1] (both implementations check here)."""
    qs = tuple(float(q) for q in masses)
    if any(not 0.0 < q <= 1.0 for q in qs):
        raise ValueError(f"masses must lie in (0, 1], got {qs}")
    return qs


def credible_regions(maps: np.ndarray, masses: Sequence[float] = DEFAULT_MASSES) -> Regions:
    """Smallest-set regions of ``maps`` [N,K,H,W] (each map sums to ~1) for every mass.

    Equal to sorting each map (bench/credible_sorted.py keeps that code as the reference):
    same thresholds and ellipses, counts equal up to one pixel where float64 summation order
    decides whether a running sum reaches q (tests/test_credible_fast.py).
    """
    maps = np.asarray(maps)
    if maps.ndim != 4:
        raise ValueError(f"maps must be [N,K,H,W], got shape {maps.shape}")
    qs = _masses(masses)
    n, k, h, w = maps.shape
    rows = maps.reshape(n * k, h, w)
    counts = np.zeros((len(qs), n * k), np.int64)
    thr = np.zeros((len(qs), n * k))
    ell = np.empty((len(qs), n * k, 5))
    for s in range(0, n * k, _REGION_BLOCK):  # blocks of maps whose temporaries stay in L2
        sl = slice(s, s + _REGION_BLOCK)
        counts[:, sl], thr[:, sl], ell[:, sl] = _block_regions(rows[sl], qs)
    return Regions(
        qs, counts.reshape(len(qs), n, k), ell.reshape(len(qs), n, k, 5), thr.reshape(len(qs), n, k)
    )


_REGION_BLOCK = 32  # maps per block (measured on the fixture's blurred maps: ~1.2x faster than one
# pass over 24 crops; rows are independent, so the blocks change no number)


def _block_regions(maps: np.ndarray, qs: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts [Q,R], thresholds [Q,R] and ellipses [Q,R,5] of the maps [R,H,W] of one block."""
    r, h, w = maps.shape
    m, total = _cleaned(maps.reshape(r, 1, h, w))
    cand = _candidates(m, total, max(qs, default=1.0))
    counts, thr, raw = _thresholds(cand, total, qs)
    if cand.pixel is None:
        ell = _moments_ellipses(m, raw, h, w)
    else:
        ell = _compact_ellipses(cand, raw, w)
    empty = total <= 0
    ell[:, empty] = np.nan
    counts[:, empty] = 0
    thr[:, empty] = 0.0
    return counts, thr, ell


def _moments_ellipses(m: np.ndarray, raw: np.ndarray, h: int, w: int) -> np.ndarray:
    """[Q,R,5] ellipses of the sets {m >= raw[q]} of the map rows m [R,H*W] (pixels tied with the
    last one taken are all in; zeros never are).

    The sets of every mass are written once as float32 0/1 masks [Q*R,H,W]; one stacked product
    with (1, x, x^2) [W,3] gives per image row its pixel count, sum of x and of x^2, and all six
    moments follow from [H]-long sums. Sums of 0/1 and of small integers are exact in float32
    here, so the moments equal float64 ones. Stacked per map, not one [Q*R*H, W] product:
    OpenBLAS threads a product that size, and on the 2-core test machine its spinning workers
    cost 10x the product.
    """
    q, r = raw.shape
    mask = np.empty((q, r, h * w), np.float32)
    tiny = np.finfo(m.dtype).tiny
    for qi in range(q):
        np.greater_equal(
            m, np.maximum(raw[qi] * (1 - TIE_RTOL), tiny)[:, None], out=mask[qi], casting="unsafe"
        )
    x = np.arange(w, dtype=np.float64)
    ys = np.arange(h, dtype=np.float64)
    per_row = np.matmul(mask.reshape(q * r, h, w), np.stack([np.ones(w), x, x * x], -1).astype(np.float32))
    cnt, sx, sxx = (per_row[..., i].astype(np.float64) for i in range(3))  # [QR,H] each
    ell: np.ndarray = _moment_ellipse(cnt.sum(1), sx.sum(1), cnt @ ys, sxx.sum(1), cnt @ (ys * ys), sx @ ys)
    return ell.reshape(q, r, 5)


def _compact_ellipses(cand: _Candidates, raw: np.ndarray, w: int) -> np.ndarray:
    """[Q,R,5] ellipses from the candidate block alone (every pixel of every region is a
    candidate): the same integer moment sums as the dense path, on a few pixels per map."""
    pix = cand.pixel
    assert pix is not None
    ys, xs = np.divmod(np.maximum(pix, 0), w)
    basis = np.stack([np.ones_like(xs), xs, ys, xs * xs, ys * ys, xs * ys], axis=-1).astype(np.float64)
    q = raw.shape[0]
    ell = np.empty((q, pix.shape[0], 5))
    tiny = np.finfo(cand.values.dtype).tiny
    for qi in range(q):
        inside = (cand.values >= np.maximum(raw[qi] * (1 - TIE_RTOL), tiny)[:, None]) & (pix >= 0)
        mom = np.einsum("rc,rcm->rm", inside.astype(np.float64), basis)
        ell[qi] = _moment_ellipse(mom[:, 0], mom[:, 1], mom[:, 2], mom[:, 3], mom[:, 4], mom[:, 5])
    return ell


def _moment_ellipse(
    n: np.ndarray, sx: np.ndarray, sy: np.ndarray, sxx: np.ndarray, syy: np.ndarray, sxy: np.ndarray
) -> np.ndarray:
    """The ellipse of a pixel set from its count and sums of x, y, x^2, y^2, xy."""
    cnt = np.maximum(n, 1.0)
    mx, my = sx / cnt, sy / cnt
    # pixels are unit squares: add 1/12 per axis so a single pixel is a 1x1 region, not a point
    vxx = sxx / cnt - mx * mx + 1.0 / 12
    vyy = syy / cnt - my * my + 1.0 / 12
    vxy = sxy / cnt - mx * my
    return _ellipse(mx, my, vxx, vyy, vxy)


def _ellipse(mx: np.ndarray, my: np.ndarray, vxx: np.ndarray, vyy: np.ndarray, vxy: np.ndarray) -> np.ndarray:
    """Centre, semi-axes (2 sqrt(eigenvalue): a uniform filled ellipse's moments) and angle."""
    tr, det = vxx + vyy, vxx * vyy - vxy * vxy
    disc = np.sqrt(np.maximum(tr * tr / 4 - det, 0.0))
    l1, l2 = tr / 2 + disc, np.maximum(tr / 2 - disc, 0.0)
    ang = 0.5 * np.arctan2(2 * vxy, vxx - vyy)
    return np.stack([mx, my, 2 * np.sqrt(l1), 2 * np.sqrt(l2), ang], axis=-1)


def regions_to_image(
    reg: Regions, scales: np.ndarray, centers: np.ndarray, heatmap_hw: tuple[int, int]
) -> dict[str, np.ndarray]:
    """Areas (px^2) and ellipses in image coordinates, through the keypoints' inverse affine.

    The crop affine is axis-aligned (no rotation): heatmap x scales by sw/W and y by sh/H,
    so an area scales by their product and the ellipse by the same diagonal map.
    """
    from runtime.heads.grid import heatmap_to_image

    hh, hw = heatmap_hw
    sx = np.asarray(scales, np.float64)[:, 0] / hw
    sy = np.asarray(scales, np.float64)[:, 1] / hh
    area = reg.n_pixels * (sx * sy)[None, :, None]
    e = reg.ellipse
    q, n, k = e.shape[:3]
    centre = heatmap_to_image(
        e[..., :2].reshape(q * n, k, 2), np.tile(centers, (q, 1)), np.tile(scales, (q, 1)), heatmap_hw
    )
    # the diagonal map D = diag(sx, sy) applied to the ellipse's covariance D C D
    a, b, t = e[..., 2], e[..., 3], e[..., 4]
    c, s = np.cos(t), np.sin(t)
    vxx = (a * c) ** 2 + (b * s) ** 2
    vyy = (a * s) ** 2 + (b * c) ** 2
    vxy = (a * a - b * b) * c * s
    sxb, syb = sx[None, :, None], sy[None, :, None]
    out = _ellipse(
        centre[..., 0].reshape(q, n, k),
        centre[..., 1].reshape(q, n, k),
        vxx * sxb * sxb / 4,
        vyy * syb * syb / 4,
        vxy * sxb * syb / 4,
    )
    return {"area": area, "ellipse": out}


def covered(maps: np.ndarray, gt_xy: np.ndarray, masses: Sequence[float]) -> np.ndarray:
    """bool [Q,N,K]: whether the ground-truth pixel (heatmap xy, rounded) is in each q-region.

    A pixel is in the region when its probability is above the region's last pixel, or tied
    with it (within TIE_RTOL: ties are all in, as for the ellipse). GT outside the map is never
    covered.
    """
    reg = credible_regions(maps, masses)
    n, k, h, w = maps.shape
    x = np.rint(np.asarray(gt_xy)[..., 0]).astype(np.int64)
    y = np.rint(np.asarray(gt_xy)[..., 1]).astype(np.int64)
    ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    pix = np.asarray(maps, np.float64).reshape(n, k, h * w)
    tot = pix.sum(-1)
    val = np.take_along_axis(pix, np.where(ok, y * w + x, 0)[..., None], -1)[..., 0]
    val = np.divide(val, tot, out=np.zeros_like(val), where=tot > 0)
    covered: np.ndarray = ok[None] & (val[None] > 0) & (val[None] >= reg.threshold * (1 - TIE_RTOL))
    return covered


def blur_maps(maps: np.ndarray, sigma: float) -> np.ndarray:
    """Maps [N,K,H,W] convolved with an isotropic Gaussian of ``sigma`` heatmap pixels, renormalised.

    Why: sparsemax maps are exactly zero off a few pixels, so a keypoint that falls
    off the support is outside every region, whatever its mass, and no monotone map
    of the mass can raise coverage past the fraction of keypoints on the support
    (0.67 for the fixture). Spreading the map first (the calibration fits sigma)
    makes every pixel reachable. Two matrix products (separable, zero border: mass
    leaving the map is dropped, then renormalised), no loop over keypoints.
    Kept in float64 on purpose: a float32 blur is twice as fast but creates exact ties between
    pixels that differ in float64, and a region takes every pixel tied with its last one, so
    7-12 % of the calibrated ellipses moved (measured on the benchmark maps, sigma 1-8).
    Not shared with the decode's expected-OKS smoothing of the same maps: that one is per
    keypoint (variance <= 3 px^2), truncated at 3 sigma, reflect border, float32 in the kernels'
    order; this one is sigma 8, untruncated, zero border, renormalised. Gaussians compose, but
    the borders and the truncation do not, so neither can be derived from the other exactly.
    """
    maps = np.asarray(maps)
    if sigma <= 0:
        return np.asarray(maps, np.float64)
    n, k, h, w = maps.shape
    kh, kw = _gauss_matrix(h, sigma), _gauss_matrix(w, sigma)
    src = maps.reshape(n * k, h, w)
    out = np.empty((n * k, h, w))
    for s in range(0, n * k, _BLUR_BLOCK):  # blocks of maps: each block's temporaries stay in L2
        p = src[s : s + _BLUR_BLOCK].astype(np.float64)
        if not np.isfinite(p).all():
            p = np.nan_to_num(p, nan=0.0, posinf=0.0, neginf=0.0)
        blk = kh @ p @ kw
        tot = blk.sum((1, 2), keepdims=True)
        np.divide(blk, tot, out=blk, where=tot > 0)
        blk[(tot <= 0)[:, 0, 0]] = 0.0
        out[s : s + _BLUR_BLOCK] = blk
    shaped: np.ndarray = out.reshape(n, k, h, w)
    return shaped


_BLUR_BLOCK = 32  # maps per block of blur_maps: 32 x 64 x 48 float64 = 786 KB (measured: 2x faster than
# one pass over 24 crops, whose 10 MB temporaries leave the caches between the two products)


def calibrated_regions(maps: np.ndarray, masses: Sequence[float], sigma: float) -> Regions:
    """``credible_regions(blur_maps(maps, sigma), masses)`` (sigma 0: the maps as given), in one
    C++ pass per map where runtime.heads.native is built (counts within one pixel, thresholds and
    ellipses to ~1e-12 of these numpy references, which run otherwise)."""
    from runtime.heads import native

    maps = np.asarray(maps)
    qs = _masses(masses)
    if not (
        native.available() and maps.ndim == 4 and maps.dtype in (np.float16, np.float32) and len(qs) <= 8
    ):
        return credible_regions(blur_maps(maps, sigma) if sigma > 0 else maps, qs)
    counts, thr, ell = native.regions(maps, qs, sigma)
    return Regions(qs, counts, ell, thr)


def _gauss_matrix(m: int, sigma: float) -> np.ndarray:
    """[m,m] unnormalised Gaussian weights between pixel rows (or columns): the separable blur."""
    d = np.arange(m, dtype=np.float64)
    g: np.ndarray = np.exp(-((d[:, None] - d[None, :]) ** 2) / (2.0 * sigma * sigma))
    return g


def mass_above_truth(maps: np.ndarray, gt_xy: np.ndarray) -> np.ndarray:
    """[N,K] mass of the pixels more probable than the ground-truth pixel (inf where that pixel
    is off the map or has probability 0). The truth is in the q region exactly when this is
    below q (the region takes pixels in decreasing order, ties all in), so one pass gives the
    coverage at every q: ``mean(mass_above_truth < q)``, the calibration's empirical CDF."""
    maps = np.asarray(maps, np.float64)
    n, k, h, w = maps.shape
    p = np.clip(np.nan_to_num(maps.reshape(n, k, h * w), nan=0.0, posinf=0.0, neginf=0.0), 0.0, None)
    tot = p.sum(-1, keepdims=True)
    p = np.divide(p, tot, out=np.zeros_like(p), where=tot > 0)
    x = np.rint(np.asarray(gt_xy)[..., 0]).astype(np.int64)
    y = np.rint(np.asarray(gt_xy)[..., 1]).astype(np.int64)
    ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    v = np.take_along_axis(p, np.where(ok, y * w + x, 0)[..., None], -1)
    above = np.where(p > v * (1 + TIE_RTOL), p, 0.0).sum(-1)  # ties (TIE_RTOL) are not above
    return np.where(ok & (v[..., 0] > 0), above, np.inf)


@dataclass
class CoverageMap:
    """Monotone map from nominal map mass to measured coverage (and back), on maps blurred
    by ``sigma`` heatmap pixels first (0 = the raw maps)."""

    nominal: np.ndarray  # increasing masses in (0, 1]
    coverage: np.ndarray  # non-decreasing measured coverage at each nominal mass
    sigma: float = 0.0

    def nominal_for(self, q: float) -> float:
        """The map mass whose region covers the keypoint with probability ~q."""
        cov = np.concatenate([[0.0], self.coverage, [1.0]])
        nom = np.concatenate([[0.0], self.nominal, [1.0]])
        cov, keep = np.unique(cov, return_index=True)  # strictly increasing for interpolation
        return float(np.clip(np.interp(q, cov, nom[keep]), 1e-6, 1.0))

    def to_json(self) -> dict[str, Any]:
        return {
            "nominal": np.round(self.nominal, 4).tolist(),
            "coverage": np.round(self.coverage, 4).tolist(),
            "sigma": float(self.sigma),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CoverageMap:
        return cls(
            np.asarray(d["nominal"], np.float64),
            np.asarray(d["coverage"], np.float64),
            float(d.get("sigma", 0.0)),
        )

    def prepare(self, maps: np.ndarray) -> np.ndarray:
        """The maps the calibrated regions are taken on."""
        return blur_maps(maps, self.sigma) if self.sigma > 0 else maps


# fine near 1: over-confident maps reach a high coverage only with nearly all of their mass
COVERAGE_GRID = (*np.round(np.arange(0.05, 0.96, 0.05), 2).tolist(), 0.97, 0.98, 0.99, 0.995, 0.999, 1.0)


def fit_coverage(
    maps: np.ndarray,
    gt_xy: np.ndarray,
    valid: np.ndarray,
    grid: Sequence[float] = COVERAGE_GRID,
    sigma: float = 0.0,
) -> CoverageMap:
    """Coverage of each nominal mass on keypoints with known in-window positions (``valid``),
    made monotone (running maximum), as the calibration stored in the manifest."""
    above = mass_above_truth(blur_maps(maps, sigma) if sigma > 0 else maps, gt_xy)[np.asarray(valid, bool)]
    g = np.asarray(grid, np.float64)
    cov = (above[None, :] < g[:, None] - 1e-12).mean(-1) if above.size else g
    return CoverageMap(np.asarray(grid, np.float64), np.maximum.accumulate(cov), float(sigma))


SIGMA_GRID = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)
TARGET_QS = (0.5, 0.7, 0.9)


def fit_calibration(
    maps: np.ndarray,
    gt_xy: np.ndarray,
    valid: np.ndarray,
    sigmas: Sequence[float] = SIGMA_GRID,
    qs: Sequence[float] = TARGET_QS,
) -> CoverageMap:
    """Blur width and monotone map together: for each sigma, fit the map on the even crops and
    score the worst |coverage - q| on the odd ones; the best sigma is refitted on all crops.
    The smallest sigma wins ties, so the regions stay as tight as calibration allows."""
    valid = np.asarray(valid, bool)
    a, b = slice(0, None, 2), slice(1, None, 2)
    best, best_err = 0.0, np.inf
    for s in sigmas:
        cm = fit_coverage(maps[a], gt_xy[a], valid[a], sigma=s)
        above = mass_above_truth(cm.prepare(maps[b]), gt_xy[b])[valid[b]]
        got = (above[None, :] < np.array([cm.nominal_for(q) for q in qs])[:, None] - 1e-12).mean(-1)
        err = float(np.max(np.abs(got - np.asarray(qs)))) if valid[b].any() else np.inf
        if err < best_err - 1e-9:
            best, best_err = float(s), err
    return fit_coverage(maps, gt_xy, valid, sigma=best)
