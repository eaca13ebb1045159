"""Numpy reference decode: sparsemax, expected-OKS (ProbPose) and MSRA heatmaps.

This module is the host's decoder (its expected-OKS decode runs the C++ build in
``runtime/heads/rowmath.cpp`` where installed, bit for bit this code, which runs otherwise)
and the oracle the CUDA kernels in ``kernels/`` are tested against, so it performs *the same
float32 operations in the same order* as the kernels' per-row code
(``kernels/dynpose_rowmath.cuh``) and the C++:

* Gaussian pass (one axis, radius R, half taps h[0..R]):
  ``acc = h[0]*x[i]; for d in 1..R: acc = acc + h[d]*(x[i-d] + x[i+d])``
  with the scipy/OpenCV "reflect" border (``d c b a | a b c d | d c b a``).
  Keypoints with a radius below the largest one get zero taps, which add an
  exact 0, so one vectorised loop over taps serves all keypoints bitwise.
* Newton step per axis at the argmax ``c`` with neighbours ``a`` (+1), ``b`` (-1):
  ``g = 0.5*(a-b); h = (a+b) - 2*c; dx = -g/h`` when ``h < 0``, skipped at the
  border. Ties in any argmax go to the first index in row-major order.

Identical operations make the argmax of kernel and reference identical even on
flat or tied maps, where "close enough" arithmetic would pick another pixel.

Invalid input (documented and tested): a keypoint whose map holds NaN or +-inf
(logits may hold -inf, which sparsemax treats as a masked pixel, unless every
pixel is -inf) decodes to coords ``(NaN, NaN)`` with score ``0.0``; sparsemax
of such a row is all NaN. A NaN keypoint cannot be mistaken for a real one.
"""

from __future__ import annotations

from functools import lru_cache
from math import ceil

import numpy as np
import numpy.typing as npt

COCO_SIGMAS = np.array(
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
HM_HW = (64, 48)
VAR_MIN, VAR_MAX = 0.55, 3.0
_CHUNK_LINES = 8192  # live image rows per block of the sparse pass: <= 1.6 MB

F32 = np.float32


def _check_maps(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(
            f"{name} must be [N,K,H,W], got shape {x.shape}; reshape a single crop with {name}[None]"
        )
    if x.dtype.kind != "f":
        raise TypeError(f"{name} must be float16/32/64, got {x.dtype}; cast with .astype(np.float32)")
    return x


def oks_variances(sigmas: npt.ArrayLike = COCO_SIGMAS, hm_hw: tuple[int, int] = HM_HW) -> np.ndarray:
    """Per-keypoint Gaussian variance s_k (docs/DESIGN.md section 5), float64 [K].

    Sigmas are rounded to float32 first: that is how they reach the TensorRT plugin
    (ONNX float attributes), and the same rounding keeps plugin and reference equal.
    """
    sig = np.asarray(sigmas, dtype=np.float32).astype(np.float64).reshape(-1)
    h, w = hm_hw
    s = (2.0 * sig) ** 2 * np.sqrt((h / 1.25) * (w / 1.25)) * 2.0
    out: np.ndarray = np.clip(s, VAR_MIN, VAR_MAX)
    return out


def oks_half_taps(variances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised 1-D Gaussian half taps h[k, 0..Rmax] (float32, zero past R_k) and radii R_k.

    The full kernel is h[R..1], h[0], h[1..R]; it sums to 1 in float64 before the
    cast. The kernels compute the same numbers in double (``oks_half_taps`` there).
    """
    v = np.asarray(variances, dtype=np.float64).reshape(-1)
    radii = np.array([int(ceil(3.0 * s)) for s in v], dtype=np.int64)
    rmax = int(radii.max())
    d = np.arange(rmax + 1, dtype=np.float64)
    g = np.exp(-(d[None, :] ** 2) / (2.0 * v[:, None]))
    g[d[None, :] > radii[:, None]] = 0.0
    total = g[:, 0] + 2.0 * np.cumsum(g[:, 1:], axis=1)[:, -1]  # sequential, as in C
    return (g / total[:, None]).astype(F32), radii


def reflect_index(i: np.ndarray, n: int) -> np.ndarray:
    """scipy 'reflect' (edge repeated) index for any integer i: period 2n."""
    m = np.mod(i, 2 * n)
    out: np.ndarray = np.where(m >= n, 2 * n - 1 - m, m)
    return out


def sparsemax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """Exact sparsemax by sorting (float64 inside; float32 out unless z is float64).

    Rows are shifted by their max first (sparsemax is shift invariant), which
    keeps the arithmetic small. Rows with NaN/+inf, or all -inf, come out NaN.
    """
    z = np.asarray(z)
    if z.dtype.kind != "f":
        raise TypeError(f"sparsemax input must be floating point, got {z.dtype}")
    out_dtype = np.float64 if z.dtype == np.float64 else F32
    u = np.moveaxis(z.astype(np.float64), axis, -1)
    bad = np.asarray(np.isnan(u).any(-1) | np.isposinf(u).any(-1) | np.isneginf(u).all(-1))
    u = np.where(bad[..., None], 0.0, u)
    u = u - u.max(axis=-1, keepdims=True)
    zs = -np.sort(-u, axis=-1)
    with np.errstate(invalid="ignore"):
        cs = np.cumsum(zs, axis=-1)
        k = np.arange(1, u.shape[-1] + 1, dtype=np.float64)
        k_z = ((1.0 + k * zs) > cs).sum(axis=-1, keepdims=True)
    tau = (np.take_along_axis(cs, k_z - 1, axis=-1) - 1.0) / k_z
    p = np.maximum(u - tau, 0.0)
    p[bad] = np.nan
    out: np.ndarray = np.moveaxis(p, -1, axis).astype(out_dtype)
    return out


def _gauss_pass(x: np.ndarray, half: np.ndarray, axis: int) -> np.ndarray:
    """One separable pass over ``axis`` (-1 or -2) of x [r,H,W] with per-row half taps [r,R+1]."""
    rmax = half.shape[1] - 1
    n = x.shape[axis]
    pad = [(0, 0)] * 3
    pad[axis] = (rmax, rmax)
    xp = (
        np.take(x, reflect_index(np.arange(-rmax, n + rmax), n), axis=axis)
        if rmax > n
        else np.pad(x, pad, mode="symmetric")
    )
    return _gauss_taps(xp, half, axis, n)


def _gauss_taps(xp: np.ndarray, half: np.ndarray, axis: int, n: int) -> np.ndarray:
    """The taps over ``axis`` of xp [r,...], already padded by R on both sides of that axis (reflect):
    ``acc = h0*x; acc += h_d*(x[-d] + x[+d])`` for d = 1..R, n outputs."""
    rmax = half.shape[1] - 1

    def shifted(off: int) -> np.ndarray:
        sl = [slice(None)] * 3
        sl[axis] = slice(rmax + off, rmax + off + n)
        return xp[tuple(sl)]

    acc: np.ndarray = half[:, 0, None, None] * shifted(0)
    tmp = np.empty_like(acc)
    for d in range(1, rmax + 1):
        np.add(shifted(-d), shifted(d), out=tmp)
        tmp *= half[:, d, None, None]
        acc += tmp
    return acc


def _argmax_rows(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First-index argmax of each [H,W] map: (x, y, value)."""
    r, h, w = m.shape
    flat = m.reshape(r, h * w)
    idx = flat.argmax(axis=1)
    return idx % w, idx // w, flat[np.arange(r), idx]


def _newton(m: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """One Newton step per axis at (x, y) using finite differences; skipped at the border."""
    r, h, w = m.shape
    rows = np.arange(r)
    out = np.stack([x, y], axis=-1).astype(F32)
    c = m[rows, y, x]
    for ax, (pos, size) in enumerate(((x, w), (y, h))):
        inner = (pos > 0) & (pos < size - 1)
        lo = np.clip(pos - 1, 0, size - 1)
        hi = np.clip(pos + 1, 0, size - 1)
        a = m[rows, y, hi] if ax == 0 else m[rows, hi, x]
        b = m[rows, y, lo] if ax == 0 else m[rows, lo, x]
        g = F32(0.5) * (a - b)
        hess = (a + b) - F32(2.0) * c
        ok = inner & (hess < 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(ok, -g / np.where(ok, hess, F32(-1.0)), F32(0.0)).astype(F32)
        out[:, ax] += step
    return out


def _finalize(
    coords: np.ndarray, scores: np.ndarray, bad: np.ndarray, n: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    coords = coords.astype(F32)
    scores = scores.astype(F32)
    coords[bad] = np.nan
    scores[bad] = 0.0
    return coords.reshape(n, k, 2), scores.reshape(n, k)


def _horizontal_pass(
    x: np.ndarray, half: np.ndarray, rows: np.ndarray, live: np.ndarray, out: np.ndarray
) -> None:
    """The horizontal Gaussian pass of the maps ``rows`` of x [R,H,W] into ``out``, computed only
    on image rows holding a non-zero (``live`` [R,H]); ``out`` holds zeros elsewhere.

    Sparsemax maps are mostly exact zeros (a few pixels of support per keypoint; ~5 % of
    rows live in the decode benchmark's maps), and a row of zeros comes out of the pass as exact zeros (0*h + (0+0)*h
    ... = +0), so skipping it changes no bit of the result. NaN/inf count as non-zero.
    """
    sel = np.zeros(len(x), bool)
    sel[rows] = True
    live_r, live_y = np.nonzero(live & sel[:, None])
    for s in range(0, live_r.size, _CHUNK_LINES):
        rr, yy = live_r[s : s + _CHUNK_LINES], live_y[s : s + _CHUNK_LINES]
        with np.errstate(invalid="ignore", over="ignore"):
            out[rr, yy] = _gauss_pass(x[rr, yy][:, None, :], half[rr], -1)[:, 0]


def _live_band(live: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Per map (``live`` [r,H]: rows holding a non-zero), the first and one-past-last image row
    within ``radius`` of a live row: outside [lo, hi) the vertical pass sums exact zeros (the
    reflect border maps a row within ``radius`` of the edge only onto rows within ``radius``).
    An empty map gets lo = hi = 0."""
    h = live.shape[1]
    any_live = live.any(axis=1)
    first = np.argmax(live, axis=1)
    last = h - 1 - np.argmax(live[:, ::-1], axis=1)
    lo = np.where(any_live, np.maximum(first - radius, 0), 0)
    hi = np.where(any_live, np.minimum(last + radius + 1, h), 0)
    return lo, hi


def _vertical_pass(
    x: np.ndarray, half: np.ndarray, rows: np.ndarray, live: np.ndarray, out: np.ndarray
) -> None:
    """The vertical Gaussian pass of the maps ``rows`` of x [R,H,W] into ``out`` (zeros), computed
    only on each map's band of image rows within the taps' reach of a live input row (``live``
    [R,H]); every other row is +0, as a sum of exact zeros is. The maps are bucketed by band
    height (multiples of _BAND_STEP rows) and each bucket runs :func:`_gauss_taps` on a
    reflect-gathered window, so the numbers are bitwise the dense pass's. Sparsemax supports
    span ~12 of 64 rows (fixture-l on coco-mini): the bands are a third to a half of the map."""
    h = x.shape[1]
    rmax = half.shape[1] - 1
    lo, hi = _live_band(live[rows], rmax)
    height = np.minimum(-(-(hi - lo) // _BAND_STEP) * _BAND_STEP, h)
    for b in np.unique(height[height > 0]):
        pick = height == b
        maps = rows[pick]
        y0 = np.minimum(lo[pick], h - b)
        xp = x[maps[:, None], reflect_index(y0[:, None] + np.arange(-rmax, b + rmax), h)]  # [m, b+2R, W]
        with np.errstate(invalid="ignore", over="ignore"):
            out[maps[:, None], y0[:, None] + np.arange(b)] = _gauss_taps(xp, half[maps], -2, int(b))


_BAND_STEP = 16  # band heights are rounded up to this: few buckets (per-frame calls of 4-8 crops pay
# ~20 numpy calls per bucket), little padding (measured: 8 is 35 % slower at 5 crops, 64 = dense)


def expected_oks_maps(pm: np.ndarray, sigmas: npt.ArrayLike = COCO_SIGMAS) -> np.ndarray:
    """E_k = P_k (*) G_k for every map, float32 [N,K,H,W] (rows with NaN/inf stay NaN)."""
    pm = _check_maps(pm, "probmaps")
    n, k, h, w = pm.shape
    sig = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    if sig.size != k:
        raise ValueError(f"got {sig.size} sigmas for {k} keypoint maps; pass sigmas of length {k}")
    half, radii = oks_half_taps(oks_variances(sig, (h, w)))
    src = np.ascontiguousarray(pm, dtype=F32).reshape(n * k, h, w)
    live = (src != 0).any(axis=-1)  # [N*K,H] image rows holding a non-zero (NaN/inf count)
    taps, radius = np.tile(half, (n, 1)), np.tile(radii, n)
    spread, out = np.zeros(src.shape, F32), np.zeros(src.shape, F32)  # calloc: untouched pages stay free
    # One pass per distinct radius (<= 5 for COCO) over that radius' maps, in place: no wasted
    # zero taps, no per-keypoint loop, no copy of a group of maps.
    for r in np.unique(radii):
        rows = np.flatnonzero(radius == r)
        _horizontal_pass(src, taps[:, : r + 1], rows, live, spread)
        _vertical_pass(spread, taps[:, : r + 1], rows, live, out)
    return out.reshape(n, k, h, w)


def decode_probmaps(pm: np.ndarray, sigmas: npt.ArrayLike = COCO_SIGMAS) -> tuple[np.ndarray, np.ndarray]:
    """ProbPose decode: argmax of the expected-OKS map + one Newton step per axis.

    Returns coords [N,K,2] (x, y) in heatmap pixels and the expected-OKS max as
    score [N,K], both float32. Runs the C++ build (runtime.heads.native) where it is
    installed, bitwise equal to :func:`decode_probmaps_reference`, which runs otherwise.
    """
    from runtime.heads import native

    pm = _check_maps(pm, "probmaps")
    if not native.available():
        return decode_probmaps_reference(pm, sigmas)
    n, k, h, w = pm.shape
    sig = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    if sig.size != k:
        raise ValueError(f"got {sig.size} sigmas for {k} keypoint maps; pass sigmas of length {k}")
    half, radii = _taps(tuple(sig.tolist()), h, w)
    return native.decode_probmaps(pm, half, radii)


@lru_cache(maxsize=16)
def _taps(sigmas: tuple[float, ...], h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The expected-OKS taps for a grid, made once (they cost ~8 us per crop at batch 24)."""
    half, radii = oks_half_taps(oks_variances(np.asarray(sigmas), (h, w)))
    half.flags.writeable = radii.flags.writeable = False
    return half, radii


def decode_probmaps_reference(
    pm: np.ndarray, sigmas: npt.ArrayLike = COCO_SIGMAS
) -> tuple[np.ndarray, np.ndarray]:
    """The numpy decode: the CUDA kernels' oracle and the fallback where the C++ build is absent."""
    pm = _check_maps(pm, "probmaps")
    n, k, h, w = pm.shape
    e = expected_oks_maps(pm, sigmas).reshape(n * k, h, w)
    bad = ~np.asarray(np.isfinite(pm.reshape(n * k, h * w)).all(axis=1))
    e[bad] = 0.0
    x, y, val = _argmax_rows(e)
    return _finalize(_newton(e, x, y), val, bad, n, k)


def decode_logits(
    logits: np.ndarray, sigmas: npt.ArrayLike = COCO_SIGMAS, temperature: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """What the fused decode plugin computes: sparsemax over each map, then decode_probmaps.

    ``logits`` are the head's maps already divided by the head temperature (the
    ONNX ``logits`` output); ``temperature`` here is an extra factor the plugin
    applies as a float32 multiply by 1/temperature (1.0 = none).
    """
    logits = _check_maps(logits, "logits")
    n, k, h, w = logits.shape
    z = logits.astype(F32) * F32(1.0 / temperature)
    pm = sparsemax(z.reshape(n, k, h * w), axis=-1).reshape(n, k, h, w)
    return decode_probmaps(pm, sigmas)


def decode_heatmaps(hm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MMPose MSRA decode: argmax + 0.25 px toward the higher neighbour; score = max.

    The shift needs both neighbours (0 < x < W-1); MMPose additionally skips
    x == 1 / y == 1, a quirk we do not copy. Maps with NaN/inf are invalid.
    """
    hm = _check_maps(hm, "heatmaps")
    n, k, h, w = hm.shape
    rows = hm.astype(F32, copy=False).reshape(n * k, h, w)
    bad = ~np.asarray(np.isfinite(rows.reshape(n * k, h * w)).all(axis=1))
    rows = np.where(bad[:, None, None], F32(0.0), rows)
    x, y, val = _argmax_rows(rows)
    r = np.arange(n * k)
    coords = np.stack([x, y], axis=-1).astype(F32)
    for ax, (pos, size) in enumerate(((x, w), (y, h))):
        inner = (pos > 0) & (pos < size - 1)
        lo = np.clip(pos - 1, 0, size - 1)
        hi = np.clip(pos + 1, 0, size - 1)
        a = rows[r, y, hi] if ax == 0 else rows[r, hi, x]
        b = rows[r, y, lo] if ax == 0 else rows[r, lo, x]
        coords[:, ax] += np.where(inner, F32(0.25) * np.sign(a - b), F32(0.0)).astype(F32)
    return _finalize(coords, val, bad, n, k)
