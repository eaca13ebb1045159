"""Presence temperature: the fit lowers ECE on a miscalibrated set, matches the runtime's
scaling, and the CropCOCO-style data really has keypoints on both sides of the window."""

from __future__ import annotations

import numpy as np
import pytest

from calib.presence import apply_temperature, cropcoco_samples, ece, fit_temperature, presence_fit
from runtime.heads.base import scaled_presence


def _synthetic(true_t: float, n: int = 20000, seed: int = 0):
    """Labels drawn from sigmoid(z); the 'net' reports sigmoid(z * true_t): over-confident for t > 1."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.5, 2.0, n)
    y = rng.random(n) < 1 / (1 + np.exp(-z))
    p = 1 / (1 + np.exp(-z * true_t))
    return p, y


@pytest.mark.parametrize("true_t", [3.0, 0.4])
def test_temperature_fit_lowers_ece_and_recovers_t(true_t):
    p, y = _synthetic(true_t)
    t = fit_temperature(p, y)
    assert t == pytest.approx(true_t, rel=0.08)
    before, after = ece(p, y), ece(apply_temperature(p, t), y)
    assert before > 0.05 and after < 0.02 and after < before / 3


def test_well_calibrated_set_keeps_t_near_one():
    p, y = _synthetic(1.0, seed=3)
    assert fit_temperature(p, y) == pytest.approx(1.0, abs=0.08)


def test_ece_by_hand():
    # two bins used: [0.1]*2 with labels (0,1) -> |0.5-0.1|; [0.9]*2 with (1,1) -> |1-0.9|
    p = np.array([0.1, 0.1, 0.9, 0.9])
    y = np.array([0, 1, 1, 1])
    assert ece(p, y) == pytest.approx(0.5 * 0.4 + 0.5 * 0.1)


def test_scaling_is_the_runtimes():
    p = np.random.default_rng(1).random((5, 17)).astype(np.float32)
    for t in (0.37, 1.0, 2.5):
        np.testing.assert_allclose(
            apply_temperature(p, t), scaled_presence({"presence": p}, 5, t), rtol=1e-6, atol=1e-7
        )


def test_one_class_is_a_clear_error():
    with pytest.raises(ValueError, match="inside and outside"):
        fit_temperature(np.array([0.2, 0.7]), np.array([1, 1]))


def test_cropcoco_samples_have_keypoints_in_and_out(coco_mini):
    d = cropcoco_samples(coco_mini, per_annotation=4, seed=0)
    lab = d.inside[d.labelled]
    assert d.crops.shape[1:] == (3, 256, 192) and np.isfinite(d.crops).all()
    assert 0.2 < lab.mean() < 0.95  # both classes, mostly inside
    assert not d.inside[~d.labelled].any()  # unlabelled keypoints are never "inside"
    again = cropcoco_samples(coco_mini, per_annotation=4, seed=0)
    np.testing.assert_array_equal(d.inside, again.inside)


def test_presence_fit_reports_threshold_on_grid():
    p, y = _synthetic(2.0, n=4000)
    p = p.reshape(-1, 20)
    y = y.reshape(-1, 20)
    out = presence_fit(p, y, np.ones_like(y, bool))
    assert out["ece_after"] < out["ece_before"]
    assert round(out["threshold"] / 0.05, 6) == round(out["threshold"] / 0.05)
    assert 0.05 <= out["threshold"] <= 0.95 and out["n_keypoints"] == 4000


def test_synthetic_presence_set_is_the_coverage_cuts():
    """The fixture configs' presence fit uses the coverage fit's own synthetic cuts: inside = known,
    in the window and in the cut image, so every inside keypoint is labelled and some labelled are out."""
    from calib.coverage import synthetic_set
    from calib.presence import synthetic_presence_set

    ps, cs = synthetic_presence_set(4, seed=3), synthetic_set(4, seed=3)
    assert len(ps) == len(cs) > 0 and ps.crops.shape[1:] == (3, 256, 192)
    np.testing.assert_array_equal(ps.inside, cs.valid)
    assert not (ps.inside & ~ps.labelled).any() and (ps.labelled & ~ps.inside).any()


def test_unknown_calibration_domain_is_refused(tmp_path):
    from calib.presence import calibrate_presence

    manifest = {"models": {"large": {"outputs": [{"name": "presence"}], "onnx": "large.onnx"}}}
    with pytest.raises(ValueError, match="photos' or 'synthetic'"):
        calibrate_presence(tmp_path, manifest, domain="video")
