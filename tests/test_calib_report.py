"""The accuracy report's pose metrics on outputs with known differences."""

from __future__ import annotations

import numpy as np
import pytest

from calib.report import RANDOM_NOTE, compare, format_table, oks_between


def _peaks(xy: np.ndarray) -> np.ndarray:
    """Heatmaps [N,17,64,48] with one Gaussian blob per keypoint at integer (x, y)."""
    n = len(xy)
    yy, xx = np.mgrid[0:64, 0:48]
    hm = np.zeros((n, 17, 64, 48), np.float32)
    for i in range(n):
        for k in range(17):
            hm[i, k] = np.exp(-((xx - xy[i, k, 0]) ** 2 + (yy - xy[i, k, 1]) ** 2) / 4.0)
    return hm


def test_identical_outputs_agree_perfectly():
    xy = np.random.default_rng(0).integers(5, 40, (3, 17, 2))
    ref = {"heatmaps": _peaks(xy)}
    m = compare("heatmap", ref, {"heatmaps": ref["heatmaps"].copy()})
    assert m["mean_disp_px"] == 0 and m["mean_oks"] == 1 and m["max_abs_err"]["heatmaps"] == 0


def test_shifted_peaks_give_the_shift_and_its_oks():
    xy = np.random.default_rng(1).integers(5, 40, (4, 17, 2))
    ref, got = _peaks(xy), _peaks(xy + [3, 4])
    m = compare("heatmap", {"heatmaps": ref}, {"heatmaps": got})
    assert m["mean_disp_px"] == pytest.approx(20.0, abs=1e-4)  # 5 heatmap px = 20 input px
    area = 64 * 48 / 1.25**2  # OKS does not depend on the unit: heatmap px here
    sig = np.array(
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
        ]
    )
    expect = np.mean(np.exp(-25.0 / (2 * area * (2 * sig) ** 2)))
    assert m["mean_oks"] == pytest.approx(expect, rel=1e-6)
    assert 0 < m["mean_oks"] < 1


def test_router_agreement_uses_the_band():
    ref = {"score": np.array([[0.1], [0.45], [0.5], [0.9]], np.float32)}
    got = {"score": np.array([[0.1], [0.39], [0.5], [0.61]], np.float32)}
    m = compare("score", ref, got, band=(0.4, 0.6))
    # routes: ref F T T F, got F F T F -> 3 of 4 agree
    assert m["route_agreement"] == 0.75
    assert m["max_abs_err"]["score"] == pytest.approx(0.29, abs=1e-6)


def _simcc(xy: np.ndarray, hw: tuple[int, int] = (256, 192)) -> dict[str, np.ndarray]:
    """SimCC outputs (split ratio 2) whose argmax bins sit at input pixels ``xy`` [n,K,2]."""
    n, k = xy.shape[:2]
    x, y = np.zeros((n, k, hw[1] * 2), np.float32), np.zeros((n, k, hw[0] * 2), np.float32)
    i, j = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    x[i, j, xy[..., 0] * 2] = 1.0
    y[i, j, xy[..., 1] * 2] = 1.0
    return {"simcc_x": x, "simcc_y": y}


def test_a_simcc_net_reads_in_the_same_units_as_a_heatmap_net():
    """The same displacement on the crop gives the same figures for a SimCC head (input-pixel grid)
    and a heatmap head (quarter grid); the report once mixed the two units, and SimCC's OKS read low."""
    xy = np.random.default_rng(2).integers(5, 40, (4, 17, 2))
    hm = compare("heatmap", {"heatmaps": _peaks(xy)}, {"heatmaps": _peaks(xy + [3, 4])})
    sc = compare("simcc", _simcc(xy * 4), _simcc(xy * 4 + [12, 16]))
    assert sc["mean_disp_px"] == pytest.approx(20.0, abs=1e-4)
    assert sc["mean_oks"] == pytest.approx(hm["mean_oks"], rel=1e-6)
    big = compare(
        "simcc", _simcc(xy * 4, (384, 288)), _simcc(xy * 4 + [12, 16], (384, 288)), input_hw=(384, 288)
    )
    assert big["mean_oks"] > sc["mean_oks"]  # the same 20 px on a larger crop is a smaller error


def test_nan_keypoints_score_zero_oks():
    a = np.zeros((1, 17, 2))
    b = np.full((1, 17, 2), np.nan)
    assert oks_between(a, b)[0] == 0


def test_table_prints_every_row_and_the_random_note():
    rep = {
        "n_crops": 3,
        "note": RANDOM_NOTE,
        "nets": {
            "router": {"int8_trt": {"max_abs_err": {"score": 0.01}, "route_agreement": 1.0}},
            "small": {
                "int8_cpu": {
                    "max_abs_err": {"heatmaps": 0.1},
                    "mean_disp_px": 0.5,
                    "p95_disp_px": 1.0,
                    "mean_oks": 0.99,
                }
            },
        },
    }
    table = format_table(rep)
    assert "router  int8_trt" in table and "small   int8_cpu" in table and "RANDOM WEIGHTS" in table
    assert "0.500" in table and "0.990" in table
