"""build.engines: a fixture config's own detector (synthetic-trained) calibrates its INT8 on the
build's synthetic calibration split, so a bare clone needs no photos; every other detector keeps
the photos of people (or the flag that names its frames)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from build.configs import get_config
from build.detector_check import chosen_detector, early_check
from build.engines import _check_detector_data, _synthetic_detector, detector_calib_default, parse_args
from calib.data import DEFAULT_CALIB


def test_a_fixture_configs_own_detector_calibrates_on_the_synthetic_split(tmp_path: Path) -> None:
    cfg = replace(get_config("fixture-dyn"), detector="build/fixtures/detector.pth")
    args = parse_args(["--target", "cpu"])
    assert _synthetic_detector(cfg, args)
    frames = detector_calib_default(cfg, args, tmp_path)
    assert frames == tmp_path / "calib-synth" / "images"
    assert len(list(frames.glob("*.jpg"))) == 200  # the pose nets' calibration drawing, drawn once
    assert (tmp_path / "calib-synth" / "person_keypoints.json").is_file()  # calib_source reuses it
    _check_detector_data(cfg, args)  # never refused for want of ../shared's photos


def test_other_detectors_keep_the_photos_or_the_flag(tmp_path: Path) -> None:
    fixture = replace(get_config("fixture-dyn"), detector="build/fixtures/detector.pth")
    for argv, cfg in (
        (["--target", "cpu", "--detector", "x.onnx"], fixture),  # the user's detector
        (["--target", "cpu", "--det-calib-data", str(tmp_path)], fixture),  # frames named by a flag
        (["--target", "cpu"], replace(fixture, calib_domain="photos")),  # a config trained on photos
        (["--target", "cpu"], replace(fixture, detector=None)),  # no detector at all
    ):
        assert detector_calib_default(cfg, parse_args(argv), tmp_path) == DEFAULT_CALIB, argv
    assert not (tmp_path / "calib-synth").exists()  # nothing drawn for them


def test_detector_none_builds_without_the_configs_detector(tmp_path: Path) -> None:
    cfg = replace(get_config("fixture-dyn"), detector="build/fixtures/detector.pth")
    assert str(chosen_detector(parse_args(["--target", "cpu"]), cfg)) == "build/fixtures/detector.pth"
    args = parse_args(["--target", "cpu", "--detector", "none"])
    assert chosen_detector(args, cfg) is None
    assert early_check(args, cfg, DEFAULT_CALIB) is None  # nothing exported, nothing checked
    assert detector_calib_default(cfg, args, tmp_path) == DEFAULT_CALIB
