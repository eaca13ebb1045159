"""A frozen copy of the host credible regions (and the calibration's blur): the unit the regions
gate measures them in, as bench/decode_frozen.py is for the decode.

Why a copy: ``regions / frozen`` compares the same work (same ufuncs, same temporaries, same
maps in, same numbers out: tests/test_gates.py checks that), so a faster or slower CPU, memory
bus or numpy build moves both sides alike and a healthy tree sits at ~1.0 anywhere. This is
``runtime/heads/credible.py`` as it stood when the gate was set (issue #29, the selection by
mass; re-frozen for item 4: blocks of maps, moments from one stacked product, running mass up to
the largest mass; session 14: ties within 1e-9 relative, the definition's change, not a speed
change). Do not edit it to follow the runtime; re-freeze it (copy the new code here) when
the regions are made faster on purpose, and say so in the commit. Imports nothing from ``runtime``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


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
        np.greater_equal(m, np.maximum(raw[qi] * (1 - 1e-9), tiny)[:, None], out=mask[qi], casting="unsafe")
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
        inside = (cand.values >= np.maximum(raw[qi] * (1 - 1e-9), tiny)[:, None]) & (pix >= 0)
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


def frozen_regions(maps: np.ndarray, masses: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n_pixels [Q,N,K], ellipse [Q,N,K,5], threshold [Q,N,K], as the runtime computed them at freezing."""
    maps = np.asarray(maps)
    if maps.ndim != 4:
        raise ValueError(f"maps must be [N,K,H,W], got shape {maps.shape}")
    qs = tuple(float(q) for q in masses)
    if any(not 0.0 < q <= 1.0 for q in qs):
        raise ValueError(f"masses must lie in (0, 1], got {qs}")
    n, k, h, w = maps.shape
    rows = maps.reshape(n * k, h, w)
    counts = np.zeros((len(qs), n * k), np.int64)
    thr = np.zeros((len(qs), n * k))
    ell = np.empty((len(qs), n * k, 5))
    for s in range(0, n * k, _REGION_BLOCK):
        sl = slice(s, s + _REGION_BLOCK)
        counts[:, sl], thr[:, sl], ell[:, sl] = _block_regions(rows[sl], qs)
    return counts.reshape(len(qs), n, k), ell.reshape(len(qs), n, k, 5), thr.reshape(len(qs), n, k)


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


def frozen_blur_maps(maps: np.ndarray, sigma: float) -> np.ndarray:
    """The calibration blur as it stood at freezing (float64, separable, renormalised)."""
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


def _gauss_matrix(m: int, sigma: float) -> np.ndarray:
    """[m,m] unnormalised Gaussian weights between pixel rows (or columns): the separable blur."""
    d = np.arange(m, dtype=np.float64)
    g: np.ndarray = np.exp(-((d[:, None] - d[None, :]) ** 2) / (2.0 * sigma * sigma))
    return g
