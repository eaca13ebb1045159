"""The DynPose band, policies and budget mode (docs/DESIGN.md section 3)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from runtime.pose.routing import apply_budget, budget_max_large, fit_thresholds, route, route_band


def test_thresholds_reproduce_a_hand_computed_example():
    scores = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.6, 0.4, 0.8, 0.05])
    # sorted: .05 .1 .2 .3 .4 .5 .6 .7 .8 .9 ; k1 = .05 + .2*(.85) = .22 -> closest .2 (j=2)
    # ceil(10 * 0.3) = 3 -> k2 = S[2+3] = .5 ; band [.22, .5] = {.3, .4, .5}
    band = fit_thresholds(scores, theta=0.2, p=30)
    assert band.k1 == pytest.approx(0.22)
    assert band.k2 == pytest.approx(0.5)
    assert route_band(scores, band.k1, band.k2).sum() == 3
    assert band.large_fraction == pytest.approx(0.3)


@pytest.mark.parametrize("p", [0, 10, 25, 50, 75])
def test_fraction_matches_p_within_one_crop(p):
    s = np.random.default_rng(p).beta(2, 5, 118)
    band = fit_thresholds(s, theta=0.05, p=p)
    n_large = route_band(s, band.k1, band.k2).sum()
    assert abs(n_large - math.ceil(118 * p / 100)) <= 1


def test_bad_inputs():
    with pytest.raises(ValueError, match="finite"):
        fit_thresholds(np.array([0.1, np.nan]), 0.1, 50)
    with pytest.raises(ValueError, match="percent"):
        fit_thresholds(np.array([0.1, 0.2]), 0.1, 0.5 * 300)
    with pytest.raises(ValueError, match="unknown policy"):
        route("fastest", np.zeros(3), 0, 1, 0.5)


def test_policies():
    s = np.linspace(0, 1, 20)
    assert not route("small", s, 0.2, 0.6, 0.4).any()
    assert route("large", s, 0.2, 0.6, 0.4).all()
    assert route("random", s, 0.2, 0.6, 0.4, np.random.default_rng(1)).sum() == 8
    assert (route("dyn", s, 0.2, 0.6, 0.4) == ((s >= 0.2) & (s <= 0.6))).all()


def test_budget_keeps_crops_nearest_the_band_centre():
    s = np.array([0.21, 0.4, 0.59, 0.45, 0.9])
    large = route_band(s, 0.2, 0.6)
    capped = apply_budget(s, large, 0.2, 0.6, 2)
    assert np.flatnonzero(capped).tolist() == [1, 3]
    assert budget_max_large(100, 10, 5, 15, 10) == 4  # 10*5 + 4*10 = 90 <= 90
    assert budget_max_large(10, 10, 5, 15) == 0
    assert budget_max_large(1000, 10, 5, 15) == 10
