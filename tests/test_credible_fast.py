"""The selection-by-mass credible regions equal the sorted definition they replaced.

``bench/credible_sorted.py`` is the code as it stood before issue #29 (a full descending sort
per map). On the raw maps the rewrite must give the same pixel counts and thresholds bit for
bit and the same ellipses (compared as centre + covariance: the angle of a near-circle is
arbitrary), on raw, blurred (the calibrated path), tied, fp16 and invalid maps.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.credible_sorted import sorted_blur_maps, sorted_regions
from measure.workload import synthetic_probmaps
from runtime.heads.credible import CoverageMap, credible_regions

MASSES = (0.05, 0.3, 0.5, 0.85, 0.9, 0.99, 1.0)


def _cov(ell: np.ndarray) -> np.ndarray:
    """[...,5] ellipses -> [...,5] centre x, y and covariance xx, yy, xy (angle-free)."""
    a, b, t = ell[..., 2], ell[..., 3], ell[..., 4]
    c, s = np.cos(t), np.sin(t)
    return np.stack(
        [
            ell[..., 0],
            ell[..., 1],
            (a * c) ** 2 + (b * s) ** 2,
            (a * s) ** 2 + (b * c) ** 2,
            (a * a - b * b) * c * s,
        ],
        -1,
    )


def _same(maps: np.ndarray, masses: tuple[float, ...]) -> None:
    count, ell, thr = sorted_regions(maps, masses)
    got = credible_regions(maps, masses)
    np.testing.assert_array_equal(got.n_pixels, count)
    np.testing.assert_array_equal(got.threshold, thr)
    np.testing.assert_allclose(_cov(got.ellipse), _cov(ell), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparsemax_maps_equal_the_sorted_definition(seed: int) -> None:
    _same(synthetic_probmaps(6, seed=seed), MASSES)


@pytest.mark.parametrize("sigma", [0.5, 2.0, 8.0])
def test_dense_blurred_maps_equal_the_sorted_definition(sigma: float) -> None:
    _same(sorted_blur_maps(synthetic_probmaps(4, seed=3), sigma), MASSES)


def test_ties_zeros_fp16_and_invalid_maps_equal_the_sorted_definition() -> None:
    rng = np.random.default_rng(5)
    maps = np.round(rng.random((3, 17, 64, 48)) * 4) / 4  # few distinct values: ties everywhere
    maps[0, :4] = 0.0  # empty maps
    maps[1, 2, 5, 5] = np.nan
    maps[1, 3, 6, 6] = -np.inf
    maps[2, 1] = -maps[2, 1]  # negative only: empty after clipping
    maps[2, 4, 10:14, 5:11] = 1.0 / 24  # a flat block
    _same(maps, MASSES)
    _same(maps.astype(np.float16), (0.5, 0.9))
    _same(synthetic_probmaps(2).astype(np.float16), (0.5, 0.9))


def test_calibrated_path_equals_the_sorted_definition() -> None:
    """The runtime's calibrated regions: blurred maps (bit for bit the reference blur), then regions."""
    maps = synthetic_probmaps(8, seed=4)
    for sigma in (1.0, 8.0):
        cm = CoverageMap(np.array([0.5, 1.0]), np.array([0.5, 1.0]), sigma)
        np.testing.assert_array_equal(cm.prepare(maps), sorted_blur_maps(maps, sigma))
        _same(cm.prepare(maps), (0.05, 0.5, 0.85))
