"""Credible regions on hand-made maps are exact; image mapping follows the keypoints' affine;
coverage calibration brings a miscalibrated map family to nominal on held-out draws."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.heads.credible import covered, credible_regions, fit_coverage, regions_to_image
from runtime.heads.grid import heatmap_to_image

H, W = 64, 48


def _maps(*planes: np.ndarray) -> np.ndarray:
    return np.stack(planes)[None].astype(np.float32)  # [1,K,H,W]


def test_single_pixel_is_one_unit_square():
    m = np.zeros((H, W))
    m[20, 10] = 1.0
    r = credible_regions(_maps(m), (0.1, 0.5, 0.9, 1.0))
    assert (r.n_pixels == 1).all()
    cx, cy, a, b, _ = r.ellipse[0, 0, 0]
    assert (cx, cy) == (10, 20)
    assert a == pytest.approx(2 * np.sqrt(1 / 12)) and b == pytest.approx(2 * np.sqrt(1 / 12))


def test_uniform_block_counts_and_shape():
    m = np.zeros((H, W))
    m[10:14, 5:11] = 1.0 / 24  # 4 rows x 6 cols
    r = credible_regions(_maps(m), (0.5, 0.9, 1.0))
    assert r.n_pixels[:, 0, 0].tolist() == [12, 22, 24]
    cx, cy, a, b, ang = r.ellipse[0, 0, 0]  # ties: the whole block describes the shape
    assert (cx, cy) == pytest.approx((7.5, 11.5))
    # uniform 6x4 rectangle: var x = 36/12, var y = 16/12 -> semi-axes 2*sqrt(var)
    assert a == pytest.approx(2 * np.sqrt(3.0)) and b == pytest.approx(2 * np.sqrt(16 / 12))
    assert abs(np.sin(ang)) < 1e-9  # major axis along x


def test_two_peaks():
    m = np.zeros((H, W))
    m[5, 5], m[50, 40] = 0.6, 0.4
    r = credible_regions(_maps(m), (0.5, 0.6, 0.61, 0.9))
    assert r.n_pixels[:, 0, 0].tolist() == [1, 1, 2, 2]
    cx, cy, a, b, _ = r.ellipse[3, 0, 0]
    assert (cx, cy) == pytest.approx((22.5, 27.5))
    assert a > 25 and b < 1  # one long thin ellipse through both peaks


def test_vectorised_over_many_maps_matches_per_map_sort():
    rng = np.random.default_rng(0)
    from runtime.heads.decode import sparsemax

    logits = rng.normal(size=(5, 17, H * W)) * rng.uniform(0.5, 30, size=(5, 17, 1))
    maps = sparsemax(logits.astype(np.float32)).reshape(5, 17, H, W)
    r = credible_regions(maps, (0.3, 0.9))
    for q_i, q in enumerate((0.3, 0.9)):
        for n in range(5):
            for k in range(17):
                v = np.sort(maps[n, k].astype(np.float64).ravel())[::-1]
                v /= v.sum()
                want = int(np.searchsorted(np.cumsum(v), q - 1e-12) + 1)
                assert r.n_pixels[q_i, n, k] == want


def test_image_mapping_uses_the_keypoint_affine():
    m = np.zeros((H, W))
    m[10:14, 5:11] = 1.0 / 24
    maps = np.concatenate([_maps(m), _maps(m)])  # two crops, different windows
    centers = np.array([[100.0, 200.0], [50.0, 60.0]])
    scales = np.array([[192.0, 256.0], [96.0, 64.0]])
    r = credible_regions(maps, (0.9,))
    img = regions_to_image(r, scales, centers, (H, W))
    px = (scales[:, 0] / W) * (scales[:, 1] / H)
    np.testing.assert_allclose(img["area"][0, :, 0], 22 * px)
    want_c = heatmap_to_image(r.ellipse[0, :, :, :2], centers, scales, (H, W))
    np.testing.assert_allclose(img["ellipse"][0, :, :, :2], want_c, rtol=1e-5)
    sx = scales[:, 0] / W
    np.testing.assert_allclose(img["ellipse"][0, :, 0, 2], r.ellipse[0, :, 0, 2] * sx)  # major along x


def test_empty_or_invalid_map_has_no_region():
    r = credible_regions(np.zeros((1, 1, H, W), np.float32), (0.5,))
    assert r.n_pixels[0, 0, 0] == 0 and np.isnan(r.ellipse[0, 0, 0]).all()
    with pytest.raises(ValueError):
        credible_regions(np.zeros((1, 1, H, W)), (1.5,))


def _family(rng, n: int, spread_map: float, spread_true: float):
    """Gaussian blobs of width spread_map around a centre; the truth is drawn with spread_true:
    maps that are over-confident when spread_true > spread_map."""
    ys, xs = np.mgrid[0:H, 0:W]
    cx, cy = rng.uniform(12, 36, n), rng.uniform(16, 48, n)
    maps = np.exp(-((xs - cx[:, None, None]) ** 2 + (ys - cy[:, None, None]) ** 2) / (2 * spread_map**2))
    maps /= maps.sum((1, 2), keepdims=True)
    gt = np.stack([cx + rng.normal(0, spread_true, n), cy + rng.normal(0, spread_true, n)], -1)
    return maps[:, None].astype(np.float32), gt[:, None]


def test_coverage_calibration_reaches_nominal_on_held_out_draws():
    rng = np.random.default_rng(1)
    cal_maps, cal_gt = _family(rng, 1000, 2.0, 3.5)
    test_maps, test_gt = _family(rng, 1000, 2.0, 3.5)
    valid = np.ones((1000, 1), bool)
    raw = covered(test_maps, test_gt, (0.5, 0.9))[:, valid].mean(-1)
    assert raw[0] < 0.35 and raw[1] < 0.7  # over-confident maps under-cover
    cmap = fit_coverage(cal_maps, cal_gt, valid)
    for q in (0.5, 0.7, 0.9):
        got = covered(test_maps, test_gt, (cmap.nominal_for(q),))[:, valid].mean()
        assert abs(got - q) < 0.03, (q, got)


def test_mass_above_truth_agrees_with_region_membership_and_blur_keeps_mass():
    from runtime.heads.credible import blur_maps, mass_above_truth
    from runtime.heads.decode import sparsemax

    rng = np.random.default_rng(3)
    logits = rng.normal(size=(6, 17, H * W)) * rng.uniform(0.5, 5, size=(6, 17, 1))
    maps = sparsemax(logits.astype(np.float32)).reshape(6, 17, H, W)
    peak = np.stack(np.unravel_index(maps.reshape(6, 17, -1).argmax(-1), (H, W)), -1)[..., ::-1]
    gt = peak + rng.integers(-3, 4, size=peak.shape)
    qs = (0.1, 0.5, 0.9, 0.99)
    for m in (maps, blur_maps(maps, 2.0)):
        hit = covered(m, gt, qs)
        assert 0 < hit.mean() < 1  # both outcomes occur, so the comparison means something
        above = mass_above_truth(m, gt)
        for i, q in enumerate(qs):
            assert ((above < q - 1e-12) == hit[i]).all()
    b = blur_maps(maps, 2.0)
    np.testing.assert_allclose(b.sum((2, 3)), 1.0, atol=1e-9)
    assert (b > 0).mean() > (maps > 0).mean()
