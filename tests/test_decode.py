"""runtime/heads/decode.py against independent implementations and the properties it must keep."""

from __future__ import annotations

from math import ceil

import numpy as np
import pytest
import torch
from entmax import sparsemax as entmax_sparsemax
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.ndimage import convolve

from runtime.heads import decode as D

F32 = np.float32


def _kernel2d(k: int, hw=(64, 48)) -> np.ndarray:
    """Independent 2-D kernel straight from docs/DESIGN.md section 5 (float64)."""
    sig = float(np.float32(D.COCO_SIGMAS[k]))
    s = float(np.clip((2 * sig) ** 2 * np.sqrt((hw[0] / 1.25) * (hw[1] / 1.25)) * 2, 0.55, 3.0))
    r = ceil(3 * s)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    g = np.exp(-(xx**2 + yy**2) / (2 * s))
    return g / g.sum()


def _slow_decode(pm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-keypoint 2-D convolution loop in float64: the decode as ProbPose writes it."""
    n, k, h, w = pm.shape
    coords, scores, gaps = np.zeros((n, k, 2)), np.zeros((n, k)), np.zeros((n, k))
    for i in range(n):
        for j in range(k):
            e = convolve(pm[i, j].astype(np.float64), _kernel2d(j, (h, w)), mode="reflect")
            y, x = np.unravel_index(e.argmax(), e.shape)
            srt = np.sort(e.ravel())
            gaps[i, j] = srt[-1] - srt[-2]
            dx = dy = 0.0
            if 0 < x < w - 1 and e[y, x + 1] + e[y, x - 1] - 2 * e[y, x] < 0:
                dx = -0.5 * (e[y, x + 1] - e[y, x - 1]) / (e[y, x + 1] + e[y, x - 1] - 2 * e[y, x])
            if 0 < y < h - 1 and e[y + 1, x] + e[y - 1, x] - 2 * e[y, x] < 0:
                dy = -0.5 * (e[y + 1, x] - e[y - 1, x]) / (e[y + 1, x] + e[y - 1, x] - 2 * e[y, x])
            coords[i, j] = (x + dx, y + dy)
            scores[i, j] = e[y, x]
    return coords, scores, gaps


def _random_probmaps(rng, n=3, k=17, h=64, w=48, scale=4.0) -> np.ndarray:
    z = (rng.normal(size=(n, k, h * w)) * scale).astype(F32)
    return D.sparsemax(z).reshape(n, k, h, w)


def test_variances_radii_follow_design():
    s = D.oks_variances(D.COCO_SIGMAS)
    assert s.min() == 0.55 and s.max() == 3.0  # both clip bounds are hit by COCO's sigmas
    half, radii = D.oks_half_taps(s)
    for k in range(17):
        kern = _kernel2d(k)
        assert radii[k] == kern.shape[0] // 2
        full = np.concatenate([half[k, 1 : radii[k] + 1][::-1], half[k, : radii[k] + 1]]).astype(np.float64)
        np.testing.assert_allclose(np.outer(full, full), kern, atol=1e-7)


@pytest.mark.parametrize("hw", [(64, 48), (7, 5)])  # (7, 5): radius 9 exceeds the map, reflect repeats
def test_expected_oks_maps_match_scipy_2d_convolution(hw):
    rng = np.random.default_rng(0)
    pm = _random_probmaps(rng, n=2, h=hw[0], w=hw[1], scale=1.0)
    e = D.expected_oks_maps(pm)
    for j in range(17):
        ref = np.stack(
            [convolve(pm[i, j].astype(np.float64), _kernel2d(j, hw), mode="reflect") for i in range(2)]
        )
        np.testing.assert_allclose(e[:, j], ref, atol=2e-7, rtol=1e-5)


def test_skipping_zero_rows_changes_no_bit():
    """expected_oks_maps skips image rows of exact zeros in its first pass and, in its second,
    every row beyond the taps' reach of a live row (bands bucketed by height); the result must be
    bitwise the dense two-pass computation (the order the CUDA kernel uses), NaN/inf included,
    with supports on the top and bottom rows (reflect border), empty and full-height maps."""
    rng = np.random.default_rng(5)
    pm = _random_probmaps(rng, n=3, h=64, w=48, scale=6.0)
    pm[0, 1, 20] = -0.0  # negative zero counts as zero
    pm[0, 2], pm[0, 11] = 0.0, 0.0
    pm[0, 2, 0, 5] = pm[0, 11, 1, 7] = 1.0  # top rows: the reflect border folds the taps back
    pm[0, 3], pm[0, 12] = 0.0, 0.0
    pm[0, 3, 63, 47] = pm[0, 12, 62, 0] = 1.0  # bottom rows
    pm[1, 4], pm[1, 13] = 0.0, 0.0  # empty maps
    pm[1, 11] = 0.0
    pm[1, 11, :, 10] = 1.0 / 64  # a full-height support (widest taps)
    pm[1, 3, 7, 9] = np.nan
    pm[2, 5, 40, 0] = np.inf
    pm[2, 6] = rng.normal(size=(64, 48)).astype(F32)  # dense, signed
    assert 0.02 < (pm != 0).any(-1).mean() < 0.5  # mostly zero rows, as sparsemax gives
    half, radii = D.oks_half_taps(D.oks_variances())
    got = D.expected_oks_maps(pm)
    with np.errstate(invalid="ignore", over="ignore"):
        for k in range(17):
            taps = np.repeat(half[k : k + 1, : radii[k] + 1], 3, axis=0)
            dense = D._gauss_pass(D._gauss_pass(pm[:, k], taps, -1), taps, -2)
            assert np.array_equal(got[:, k].view(np.uint32), dense.view(np.uint32)), f"keypoint {k}"


def test_decode_probmaps_matches_slow_loop():
    rng = np.random.default_rng(1)
    pm = _random_probmaps(rng, n=6)
    coords, scores = D.decode_probmaps(pm)
    ref, ref_scores, gaps = _slow_decode(pm)
    clear = gaps > 1e-6  # float32 vs float64 may pick either of two near-equal maxima
    assert clear.mean() > 0.9
    np.testing.assert_allclose(coords[clear], ref[clear], atol=1e-4)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-6)
    assert coords.dtype == np.float32 and coords.shape == (6, 17, 2) and scores.shape == (6, 17)


def test_decode_logits_is_sparsemax_then_decode():
    rng = np.random.default_rng(2)
    z = (rng.normal(size=(2, 17, 64, 48)) * 3).astype(F32)
    c1, s1 = D.decode_logits(z, temperature=0.5)
    c2, s2 = D.decode_probmaps(D.sparsemax((z * F32(2.0)).reshape(2, 17, -1)).reshape(z.shape))
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(s1, s2)


def test_decode_heatmaps_msra():
    rng = np.random.default_rng(3)
    hm = rng.random((4, 17, 64, 48)).astype(F32)
    coords, scores = D.decode_heatmaps(hm)
    for i in range(4):
        for j in range(17):
            m = hm[i, j]
            y, x = np.unravel_index(m.argmax(), m.shape)
            ex = x + (0.25 * np.sign(m[y, x + 1] - m[y, x - 1]) if 0 < x < 47 else 0.0)
            ey = y + (0.25 * np.sign(m[y + 1, x] - m[y - 1, x]) if 0 < y < 63 else 0.0)
            assert tuple(coords[i, j]) == (ex, ey)
            assert scores[i, j] == m.max()


def test_sparsemax_matches_entmax():
    rng = np.random.default_rng(4)
    z = (rng.normal(size=(64, 3072)) * rng.uniform(0.1, 10, size=(64, 1))).astype(F32)
    ref = entmax_sparsemax(torch.from_numpy(z.astype(np.float64)), dim=-1).numpy()
    np.testing.assert_allclose(D.sparsemax(z), ref, atol=1e-6)
    np.testing.assert_allclose(D.sparsemax(z.T, axis=0), ref.T, atol=1e-6)


rows = arrays(
    np.float32, st.tuples(st.integers(1, 6), st.integers(1, 300)), elements=st.floats(-50, 50, width=32)
)


@settings(max_examples=60, deadline=None)
@given(rows, st.floats(-100, 100))
def test_sparsemax_properties(z, c):
    p = D.sparsemax(z)
    assert (p >= 0).all()
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    shifted = D.sparsemax(z.astype(np.float64) + c)
    np.testing.assert_allclose(shifted, p, atol=1e-5)
    # Ties: equal inputs get equal probability.
    for r in range(z.shape[0]):
        top = z[r] == z[r].max()
        assert np.ptp(p[r][top]) <= 1e-7


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4000), st.floats(-1e6, 1e6, width=32))
def test_sparsemax_all_equal_and_one_huge(n, v):
    np.testing.assert_allclose(D.sparsemax(np.full((1, n), v, F32)), 1.0 / n, rtol=1e-6)
    z = np.zeros((1, n + 1), F32)
    z[0, n // 2] = 1e30
    p = D.sparsemax(z)
    assert p[0, n // 2] == 1.0 and p.sum() == 1.0


def test_invalid_inputs_documented_result():
    z = np.zeros((3, 17, 64, 48), F32)
    z[0, 3, 5, 5] = np.nan
    z[1, 4, 0, 0] = np.inf
    z[2, 5] = -np.inf  # the whole map masked
    z[2, 6, :, 1:] = -np.inf  # masked except one column: a valid logits map
    p = D.sparsemax(z.reshape(3, 17, -1))
    assert np.isnan(p[0, 3]).all() and np.isnan(p[1, 4]).all() and np.isnan(p[2, 5]).all()
    np.testing.assert_allclose(p[2, 6].reshape(64, 48)[:, 0], 1 / 64, rtol=1e-6)
    for coords, scores in (D.decode_logits(z), D.decode_heatmaps(z), D.decode_probmaps(z)):
        for n, k in ((0, 3), (1, 4), (2, 5)):
            assert np.isnan(coords[n, k]).all() and scores[n, k] == 0.0
        assert np.isfinite(coords[0, :3]).all()  # neighbours of a bad map are untouched
    c, s = D.decode_logits(z)
    assert np.isfinite(c[2, 6]).all() and c[2, 6, 0] == 0.0


def test_bad_input_errors_name_the_input():
    with pytest.raises(ValueError, match="probmaps must be \\[N,K,H,W\\]"):
        D.decode_probmaps(np.zeros((17, 64, 48), F32))
    with pytest.raises(TypeError, match="heatmaps must be float"):
        D.decode_heatmaps(np.zeros((1, 17, 64, 48), np.int32))
    with pytest.raises(ValueError, match="sigmas"):
        D.decode_probmaps(np.zeros((1, 5, 64, 48), F32))
