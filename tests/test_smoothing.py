"""One-Euro keypoint smoothing: the filter's behaviour, and --smooth on a synthetic clip run for real."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from bench.video_eval import evaluate_run
from build.synth.video import ClipSpec, write_clip
from runtime.pose.results import FrameResult
from runtime.tracking.smoothing import OneEuroSmoother, parse_smooth
from runtime.video.engine import run_video


def test_still_keypoints_shake_less_and_moving_ones_do_not_lag() -> None:
    rng = np.random.default_rng(0)
    sm = OneEuroSmoother()
    still = np.full((17, 2), 200.0)
    raw = [still + rng.normal(0, 2.0, (17, 2)) for _ in range(100)]
    out = [sm.filter(1, r, 300.0, t / 25) for t, r in enumerate(raw)]
    assert np.std(np.array(out[20:]) - still) < 0.85 * np.std(np.array(raw[20:]) - still)  # measured 0.75
    sm = OneEuroSmoother()
    moving = [still + [6.0 * t, 0.0] for t in range(60)]  # 150 px/s, no noise
    out = [sm.filter(1, m, 300.0, t / 25) for t, m in enumerate(moving)]
    assert np.abs(out[-1] - moving[-1]).max() < 1.0  # the velocity term removes the lag
    lagging = OneEuroSmoother(predict=False)
    out = [lagging.filter(1, m, 300.0, t / 25) for t, m in enumerate(moving)]
    assert np.abs(out[-1] - moving[-1]).max() > 2.0  # the textbook filter trails behind


def test_jumps_untracked_and_nan_pass_through() -> None:
    sm = OneEuroSmoother()
    a = np.full((17, 2), 100.0)
    sm.filter(1, a, 200.0, 0.0)
    b = a.copy()
    b[3] += [120.0, 0.0]  # a swap: more than 0.25 box heights
    b[4] = np.nan
    out = sm.filter(1, b, 200.0, 0.04)
    assert np.array_equal(out[3], b[3]) and np.isnan(out[4]).all()
    kp = np.concatenate([np.full((2, 17, 2), 50.0), np.ones((2, 17, 1))], axis=2).astype(np.float32)
    res = FrameResult(
        np.array([[0, 0, 10, 20], [0, 0, 10, 20]], float),
        kp.copy(),
        np.ones((2, 17)),
        np.array([0, -1], np.int8),
        np.zeros(2),
        np.ones(2),
    )
    sm = OneEuroSmoother()
    sm(res, [0, 5], 0.0)
    assert np.array_equal(res.keypoints, kp) and not sm.states  # id 0 and dropped boxes: untouched


def test_parse_smooth_rejects_bad_values() -> None:
    assert parse_smooth("8,0.5") == (8.0, 0.5)
    for bad in ("3", "0,1", "3,-1", "a,b", "nan,1"):
        with pytest.raises(argparse.ArgumentTypeError, match="MIN_CUTOFF"):
            parse_smooth(bad)


def test_smooth_lowers_jitter_and_keeps_ap_on_a_synthetic_clip(cpu_artifacts, tmp_path) -> None:
    # Measured here: AP 0.233 raw, 0.243 smoothed; jitter 29.9 -> 23.8 px (docs/results/2026-12-video.md, "Smoothing").
    clip = write_clip(tmp_path / "clip", ClipSpec(seconds=2.4, fps=25, people=3, seed=1), photos=[])
    runs = {}
    for name, extra in (("raw", []), ("smooth", ["--smooth"])):
        out = tmp_path / name
        code, _ = run_video(
            [
                "--engines",
                str(cpu_artifacts),
                "--source",
                str(clip["video"]),
                "--detector",
                f"json:{clip['detections']}",
                "--out",
                str(out),
                "--no-video",
                "--quiet",
                *extra,
            ]
        )
        assert code == 0
        runs[name] = evaluate_run(clip["keypoints"], out / "synth.jsonl")
    raw, smooth = runs["raw"], runs["smooth"]
    assert raw["AP"] > 0.05, raw  # the fixtures do pose these figures
    assert smooth["jitter_px"] < 0.85 * raw["jitter_px"], runs
    assert smooth["AP"] >= raw["AP"] - 0.005, runs  # at most 0.5 AP points lost
