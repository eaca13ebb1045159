"""The score that starts a track comes from the detector (ByteTrack's high threshold): the
manifest's ``thresholds.track`` (build: ``--det-track-thr``, else what an RTMDet checkpoint's
recipe measured), overridden by ``runtime.video --track-thr``; the tracker's 0.5 only where
neither says. Real trackers and real option parsing, no mocks."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from build.detector import _thresholds
from runtime.errors import InputError
from runtime.tracking.tracker import BufferedTracker, IoUTracker
from runtime.video.args import DetectOptions, video_options
from runtime.video.stages import make_tracker

BOX = np.array([[10.0, 10.0, 40.0, 100.0]])


@pytest.mark.parametrize(
    ("flag", "det", "want"), [(None, None, 0.5), (None, 0.3, 0.3), (0.6, 0.3, 0.6), (0.2, None, 0.2)]
)
def test_the_flag_wins_then_the_detector_then_the_trackers_default(flag, det, want) -> None:
    t = make_tracker(DetectOptions(track_thr=flag), det)
    assert isinstance(t, BufferedTracker) and t.high_thr == want
    assert isinstance(make_tracker(DetectOptions(tracker="iou", track_thr=flag), det), IoUTracker)


def test_a_box_scoring_between_the_detectors_threshold_and_05_starts_a_track() -> None:
    assert make_tracker(DetectOptions(), None).update(BOX, np.array([0.4]), 0)[0] == 0  # untracked
    assert make_tracker(DetectOptions(), 0.35).update(BOX, np.array([0.4]), 0)[0] == 1


def test_video_cli_reads_and_checks_track_thr() -> None:
    base = ["--engines", "a", "--source", "x.mp4", "--out", "o"]
    assert video_options(base).detect.track_thr is None
    assert video_options([*base, "--track-thr", "0.25"]).detect.track_thr == 0.25
    with pytest.raises(InputError, match="--track-thr: 1.5 is out of range") as e:
        video_options([*base, "--track-thr", "1.5"])
    assert e.value.code == 2
    with pytest.raises(InputError, match="--tracker iou starts a track from every box") as e:
        video_options([*base, "--tracker", "iou", "--track-thr", "0.4"])  # would be ignored: refused
    assert e.value.code == 2


def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(det_score=0.3, det_iou=0.7, **kw)


def test_the_manifests_track_threshold_comes_from_the_flag_else_the_checkpoint() -> None:
    measured = {"source": "rtmdet", "thresholds": {"track": 0.31}}
    assert _thresholds(_args(det_track_thr=None), measured)["track"] == 0.31
    assert _thresholds(_args(det_track_thr=0.45), measured)["track"] == 0.45
    assert "track" not in _thresholds(_args(det_track_thr=None), {"source": "detector-onnx"})
    assert "track" not in _thresholds(_args(), None)  # a namespace without the flag (API callers)
    assert _thresholds(_args(), None) == {"score": 0.3, "iou": 0.7, "max_det": 300}
