"""Defaults that help a user: artifacts with a detector use it (``--detector auto``); without one
``python -m runtime.video`` says once, on stderr, that HOG is a fallback and how to add a
detector; a real-architecture build without a detector offers one in its summary."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from test_video import run_cli

from build.configs import get_config, list_configs
from build.detector import add_detector
from build.detector_check import detector_offer
from build.detector_rtmdet import export_rtmdet
from build.models.rtmdet import build_rtmdet
from runtime.artifacts.manifest import load_manifest, save_manifest
from runtime.detectors.factory import DetectorOptions, HogDetector, open_detector
from runtime.detectors.net import NetDetector

NOTE = "OpenCV's HOG is used as a fallback"


def test_video_without_a_detector_says_hog_is_a_fallback_once(
    cpu_artifacts: Path, shared_data: Path, tmp_path
):
    r = run_cli(
        cpu_artifacts, shared_data / "video" / "street.mp4", tmp_path / "o", "--max-frames", "2", "--no-video"
    )
    assert r.returncode == 0, r.stderr
    notes = [ln for ln in r.stderr.splitlines() if NOTE in ln]
    assert len(notes) == 1, r.stderr
    assert "--detector rtmdet-nano-person" in notes[0] and "onnx:PATH" in notes[0]
    # a user who asks for HOG is not told
    r = run_cli(
        cpu_artifacts,
        shared_data / "video" / "street.mp4",
        tmp_path / "h",
        "--max-frames",
        "1",
        "--no-video",
        "--detector",
        "hog",
    )
    assert r.returncode == 0 and NOTE not in r.stderr, r.stderr


def test_artifacts_with_a_detector_use_it(cpu_artifacts: Path, shared_data: Path, tmp_path: Path):
    root = tmp_path / cpu_artifacts.name
    shutil.copytree(cpu_artifacts, root)
    torch.manual_seed(0)
    onnx_path = export_rtmdet(
        build_rtmdet("rtmdet-nano", 1), tmp_path / "nano.onnx", 320, {"license": "test"}
    )
    manifest = load_manifest(root)
    args = argparse.Namespace(det_size=320, det_precision="fp32", det_score=0.3, det_iou=0.7, det_max_batch=4)
    add_detector(root, manifest, onnx_path, args, shared_data / "coco-mini", log=lambda m: None)
    save_manifest(root, manifest)
    det = open_detector(DetectorOptions("auto"), root, backend="ort")
    try:
        assert isinstance(det, NetDetector) and det.input_hw == (320, 320)
    finally:
        det.close()
    assert isinstance(open_detector(DetectorOptions("auto"), cpu_artifacts, backend="ort"), HogDetector)
    r = run_cli(root, shared_data / "video" / "street.mp4", tmp_path / "o", "--max-frames", "2", "--no-video")
    assert r.returncode == 0 and NOTE not in r.stderr, r.stderr


def test_real_architecture_builds_offer_a_detector() -> None:
    real = [n for n in list_configs() if get_config(n).calib_domain != "synthetic"]
    fixture = [n for n in list_configs() if get_config(n).calib_domain == "synthetic"]
    assert real and fixture
    offer = detector_offer({"models": {"small": {}}}, get_config(real[0]))
    assert offer is not None and "--detector rtmdet-nano-person" in offer and "HOG" in offer
    assert detector_offer({"models": {"detector": {}}}, get_config(real[0])) is None
    assert detector_offer({"models": {}}, get_config(fixture[0])) is None
