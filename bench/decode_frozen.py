"""A frozen copy of the host ProbPose decode: the unit the decode gate measures it in.

Why a copy, not a probe: a ratio only ignores the machine when both sides respond
to it alike. A generic numpy probe (multiply-add over an L2 block) does not touch
memory the way the decode does (5 MB of maps, strided vertical passes, fancy-index
gathers of live rows), so decode/probe moved 1.84-2.27 between healthy runs on one
machine and a planted 30 % slowdown hid inside that band. This module is
``runtime.heads.decode.decode_probmaps`` as it stood when the gate's baseline was set
(same ufuncs, same blocks, same memory footprint, same maps in, same numbers
out: ``tests/test_gates.py`` checks that bit for bit), so on any CPU, idle or
loaded, ``decode / frozen`` is ~1.0 and moves only when ``runtime/heads/decode.py``
gets slower or faster. Do not edit it to follow the decode: it is the yardstick.
When the decode is made faster on purpose, re-freeze it (copy the new code here)
and say so in the commit. Re-frozen for issue #29 item 4 (in-place passes over all maps, the
vertical pass only on each map's band of rows near its support). Imports nothing from ``runtime`` on purpose.
"""

from __future__ import annotations

from math import ceil

import numpy as np

F32 = np.float32
_SIGMAS = np.array(
    [
        0.026,
        0.025,
        0.025,
        0.035,
        0.035,
        0.079,
        0.079,
        0.072,
        0.072,
        0.062,
        0.062,
        0.107,
        0.107,
        0.087,
        0.087,
        0.089,
        0.089,
    ],
    dtype=np.float64,
)
_CHUNK_LINES, _BAND_STEP = 8192, 16


def _half_taps(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    sig = _SIGMAS.astype(np.float32).astype(np.float64)
    v = np.clip((2.0 * sig) ** 2 * np.sqrt((h / 1.25) * (w / 1.25)) * 2.0, 0.55, 3.0)
    radii = np.array([int(ceil(3.0 * s)) for s in v], dtype=np.int64)
    d = np.arange(int(radii.max()) + 1, dtype=np.float64)
    g = np.exp(-(d[None, :] ** 2) / (2.0 * v[:, None]))
    g[d[None, :] > radii[:, None]] = 0.0
    total = g[:, 0] + 2.0 * np.cumsum(g[:, 1:], axis=1)[:, -1]
    return (g / total[:, None]).astype(F32), radii


def _reflect(i: np.ndarray, n: int) -> np.ndarray:
    m = np.mod(i, 2 * n)
    return np.where(m >= n, 2 * n - 1 - m, m)


def _pass(x: np.ndarray, half: np.ndarray, axis: int) -> np.ndarray:
    rmax, n = half.shape[1] - 1, x.shape[axis]
    pad = [(0, 0)] * 3
    pad[axis] = (rmax, rmax)
    xp = (
        np.take(x, _reflect(np.arange(-rmax, n + rmax), n), axis=axis)
        if rmax > n
        else np.pad(x, pad, mode="symmetric")
    )
    return _taps(xp, half, axis, n)


def _taps(xp: np.ndarray, half: np.ndarray, axis: int, n: int) -> np.ndarray:
    rmax = half.shape[1] - 1

    def shifted(off: int) -> np.ndarray:
        sl = [slice(None)] * 3
        sl[axis] = slice(rmax + off, rmax + off + n)
        return xp[tuple(sl)]

    acc = half[:, 0, None, None] * shifted(0)
    tmp = np.empty_like(acc)
    for d in range(1, rmax + 1):
        np.add(shifted(-d), shifted(d), out=tmp)
        tmp *= half[:, d, None, None]
        acc += tmp
    return acc


def _horizontal(x: np.ndarray, half: np.ndarray, rows: np.ndarray, live: np.ndarray, out: np.ndarray) -> None:
    sel = np.zeros(len(x), bool)
    sel[rows] = True
    live_r, live_y = np.nonzero(live & sel[:, None])
    for s in range(0, live_r.size, _CHUNK_LINES):
        rr, yy = live_r[s : s + _CHUNK_LINES], live_y[s : s + _CHUNK_LINES]
        with np.errstate(invalid="ignore", over="ignore"):
            out[rr, yy] = _pass(x[rr, yy][:, None, :], half[rr], -1)[:, 0]


def _vertical(x: np.ndarray, half: np.ndarray, rows: np.ndarray, live: np.ndarray, out: np.ndarray) -> None:
    h, rmax = x.shape[1], half.shape[1] - 1
    lv = live[rows]
    any_live = lv.any(axis=1)
    lo = np.where(any_live, np.maximum(np.argmax(lv, axis=1) - rmax, 0), 0)
    hi = np.where(any_live, np.minimum(h - np.argmax(lv[:, ::-1], axis=1) + rmax, h), 0)
    height = np.minimum(-(-(hi - lo) // _BAND_STEP) * _BAND_STEP, h)
    for b in np.unique(height[height > 0]):
        pick = height == b
        maps = rows[pick]
        y0 = np.minimum(lo[pick], h - b)
        xp = x[maps[:, None], _reflect(y0[:, None] + np.arange(-rmax, b + rmax), h)]
        with np.errstate(invalid="ignore", over="ignore"):
            out[maps[:, None], y0[:, None] + np.arange(b)] = _taps(xp, half[maps], -2, int(b))


def _newton(m: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    r, h, w = m.shape
    rows = np.arange(r)
    out = np.stack([x, y], axis=-1).astype(F32)
    c = m[rows, y, x]
    for ax, (pos, size) in enumerate(((x, w), (y, h))):
        inner = (pos > 0) & (pos < size - 1)
        lo, hi = np.clip(pos - 1, 0, size - 1), np.clip(pos + 1, 0, size - 1)
        a = m[rows, y, hi] if ax == 0 else m[rows, hi, x]
        b = m[rows, y, lo] if ax == 0 else m[rows, lo, x]
        g = F32(0.5) * (a - b)
        hess = (a + b) - F32(2.0) * c
        ok = inner & (hess < 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(ok, -g / np.where(ok, hess, F32(-1.0)), F32(0.0)).astype(F32)
        out[:, ax] += step
    return out


def frozen_decode(pm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """coords [N,K,2], scores [N,K] of float maps [N,17,H,W], as the decode computed them at freezing."""
    n, k, h, w = pm.shape
    half, radii = _half_taps(h, w)
    src = np.ascontiguousarray(pm, dtype=F32).reshape(n * k, h, w)
    live = (src != 0).any(axis=-1)
    taps, radius = np.tile(half, (n, 1)), np.tile(radii, n)
    spread, e = np.zeros(src.shape, F32), np.zeros(src.shape, F32)
    for r in np.unique(radii):
        rows = np.flatnonzero(radius == r)
        _horizontal(src, taps[:, : r + 1], rows, live, spread)
        _vertical(spread, taps[:, : r + 1], rows, live, e)
    e = e.reshape(n * k, h, w)
    bad = ~np.isfinite(pm.reshape(n * k, h * w)).all(axis=1)
    e[bad] = 0.0
    flat = e.reshape(n * k, h * w)
    idx = flat.argmax(axis=1)
    x, y, val = idx % w, idx // w, flat[np.arange(n * k), idx]
    coords, scores = _newton(e, x, y), val.astype(F32)
    coords[bad], scores[bad] = np.nan, 0.0
    return coords.reshape(n, k, 2), scores.reshape(n, k)
