"""The SimCC decode against a reference written from MMPose's documented SimCCLabel decode.

The reference is a plain loop over keypoints (argmax per axis, first index on ties, score the
smaller axis maximum, location -1 where the score is not above zero, then divide by the split
ratio), independent of the vectorised code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from runtime.heads.base import DecodeContext
from runtime.heads.simcc import SPLIT_RATIO, SimCCDecoder, decode_simcc


def _reference(x: np.ndarray, y: np.ndarray, split: float) -> tuple[np.ndarray, np.ndarray]:
    n, k, _ = x.shape
    coords = np.zeros((n, k, 2), np.float64)
    scores = np.zeros((n, k), np.float64)
    for i in range(n):
        for j in range(k):
            rx, ry = list(x[i, j]), list(y[i, j])
            if not all(math.isfinite(v) for v in rx + ry):
                coords[i, j], scores[i, j] = (math.nan, math.nan), 0.0
                continue
            bx, by = rx.index(max(rx)), ry.index(max(ry))
            s = min(max(rx), max(ry))
            if s <= 0:
                bx = by = -1
            coords[i, j] = (bx / split, by / split)
            scores[i, j] = s
    return coords, scores


@pytest.mark.parametrize("hw", [(256, 192), (384, 288)])
def test_decode_equals_the_reference(hw):
    rng = np.random.default_rng(3)
    h, w = hw
    x = rng.normal(size=(4, 17, int(w * SPLIT_RATIO))).astype(np.float32)
    y = rng.normal(size=(4, 17, int(h * SPLIT_RATIO))).astype(np.float32)
    x[0, 0] = -1.0  # every bin tied and negative: first bin, then location -1
    y[1, 2, 7] = y[1, 2, 9] = 50.0  # a tie: the first of the two
    x[2, 3] = -5.0  # score below zero
    x[3, 4, 5] = np.nan  # invalid row
    y[3, 5, 0] = np.inf
    coords, scores = decode_simcc(x, y)
    want_c, want_s = _reference(x, y, SPLIT_RATIO)
    np.testing.assert_array_equal(coords, want_c.astype(np.float32))
    np.testing.assert_array_equal(scores, want_s.astype(np.float32))
    assert coords[1, 2, 1] == 3.5 and coords[0, 0, 0] == -0.5
    assert np.isnan(coords[3, 4]).all() and scores[3, 5] == 0


def test_decoder_reports_the_input_grid_and_prefers_fused_outputs():
    rng = np.random.default_rng(0)
    outs = {"simcc_x": rng.normal(size=(2, 17, 384)), "simcc_y": rng.normal(size=(2, 17, 512))}
    net = SimCCDecoder().decode(outs, DecodeContext(input_hw=(256, 192)))
    assert net.grid_hw == (256, 192) and net.coords.shape == (2, 17, 2)
    assert (net.presence == 1).all()
    fused = {
        "keypoints": np.full((2, 17, 2), 7.0, np.float32),
        "keypoint_scores": np.ones((2, 17), np.float32),
    }
    net = SimCCDecoder().decode(fused, DecodeContext(input_hw=(384, 288)))
    assert net.grid_hw == (384, 288) and (net.coords == 7.0).all()
