"""A detector whose outputs are NaN/inf or not probabilities is said once and counted, never a silent
"0 people": the ONNX detector (``onnx:PATH``) and the artifacts' detector (``engine``) on real tiny
ONNX models run by ONNX Runtime through the real CLIs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_detector import GOOD, INF_BOX, LOGIT, NAN_SCORE, SIZE, tiny_detector

REPO = Path(__file__).resolve().parents[1]


def _images(tmp: Path, coco_mini: Path, n: int = 2) -> Path:
    d = tmp / "imgs"
    d.mkdir()
    for f in sorted(coco_mini.glob("*.jpg"))[:n]:
        shutil.copy(f, d / f.name)
    return d


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


def test_onnx_detector_nan_and_logits_are_warned_once_and_counted(cpu_artifacts, coco_mini, tmp_path) -> None:
    det = tiny_detector(tmp_path / "nan.onnx", [GOOD, NAN_SCORE, LOGIT, INF_BOX])
    imgs = _images(tmp_path, coco_mini)
    out = tmp_path / "res"  # --out is a folder: results.json inside
    r = _run(
        "runtime.images",
        "--engines",
        str(cpu_artifacts),
        "--images",
        str(imgs),
        "--detector",
        f"onnx:{det}",
        "--out",
        str(out),
        "--backend",
        "ort",
    )
    assert r.returncode == 0, r.stderr
    warn = [ln for ln in r.stderr.splitlines() if ln.strip().startswith("warning: detector")]
    assert len(warn) == 1 and f"onnx:{det}" in warn[0] and "NaN/inf or scores outside [0, 1]" in warn[0]
    assert "(3 candidates in one frame)" in warn[0]
    assert "detector output invalid (NaN/inf or scores outside [0, 1]) in 2 frames" in r.stdout
    res = json.loads((out / "results.json").read_text())
    assert len(res) == 2 and all("keypoints" in r for r in res)  # only the good box of each image


def test_engine_detector_emitting_logits_is_counted_in_the_video_summary(
    cpu_artifacts, shared_data, tmp_path
) -> None:
    """The artifacts' detector (added by build.detector like any user model) emitting scores > 1:
    the video run warns once and its summary JSON counts every frame."""
    import argparse

    from build.detector import add_detector
    from runtime.artifacts.manifest import load_manifest, save_manifest

    root = tmp_path / cpu_artifacts.name
    shutil.copytree(cpu_artifacts, root)
    m = load_manifest(root)
    args = argparse.Namespace(
        det_size=SIZE,
        det_layout=None,
        det_class=0,
        det_score=0.3,
        det_iou=0.7,
        det_max_batch=1,
        det_calib_data=None,
        det_calib_frames=4,
        det_precision="fp32",
        det_calib_method="percentile",
        calib_data=None,
    )
    # The build runs the detector once and refuses logits it sees there (build.detector_check); a
    # detector that misbehaves only on frames after that one is what the run-time check is for, so
    # the graph checks stand and the one check run is left out here.
    from build.detector_check import check_graph

    src = tiny_detector(tmp_path / "logit.onnx", [GOOD, LOGIT])
    add_detector(root, m, src, args, shared_data / "coco-mini", checked=check_graph(src, args))
    save_manifest(root, m)
    out = tmp_path / "run"
    r = _run(
        "runtime.video",
        "--engines",
        str(root),
        "--source",
        str(shared_data / "video" / "people.mp4"),
        "--detector",
        "engine",
        "--out",
        str(out),
        "--backend",
        "ort",
        "--max-frames",
        "3",
        "--quiet",
        "--no-video",
    )
    assert r.returncode == 0, r.stderr
    warn = [ln for ln in r.stderr.splitlines() if ln.strip().startswith("warning: detector engine")]
    assert len(warn) == 1 and str(root) in warn[0]
    summary = json.loads(next(out.glob("*.summary.json")).read_text())
    assert summary["account"]["det_invalid_frames"] == 3


def test_decode_drops_and_counts_unusable_candidates_per_frame() -> None:
    """The shared decode of the artifacts' detector: per frame, NaN/inf or non-probability candidates
    never become boxes and are counted (a NaN score would otherwise just fail the threshold)."""
    import numpy as np

    from runtime.detectors.letterbox import Geometry
    from runtime.detectors.yolo import OutputCheck, YoloLayout, decode

    clean = np.asarray([GOOD, GOOD], np.float32).T[None]
    broken = np.asarray([GOOD, NAN_SCORE, LOGIT, INF_BOX], np.float32).T[None]
    clean = np.concatenate([clean, clean], axis=2)  # same anchor count as ``broken``
    a, b = decode(np.concatenate([clean, broken]), YoloLayout("yolov8", 1), [Geometry(1, 0, 0)] * 2, 0.3, 0.5)
    assert a.invalid == 0 and len(a) == 1
    assert b.invalid == 3 and len(b) == 1 and np.isfinite(b.boxes).all() and b.scores[0] == pytest.approx(0.9)
    assert OutputCheck("x")([a]) == [a]


def test_cameras_with_one_broken_detector_file_share_one_warning(
    cpu_artifacts, shared_data, tmp_path
) -> None:
    det = tiny_detector(tmp_path / "nan.onnx", [NAN_SCORE])
    out = tmp_path / "run"
    video = shared_data / "video"
    r = _run(
        "runtime.video",
        "--engines",
        str(cpu_artifacts),
        "--source",
        str(video / "people.mp4"),
        "--source",
        str(video / "street.mp4"),
        "--detector",
        f"onnx:{det}",
        "--out",
        str(out),
        "--backend",
        "ort",
        "--max-frames",
        "2",
        "--quiet",
        "--no-video",
    )
    assert r.returncode == 0, r.stderr
    assert sum(ln.strip().startswith("warning: detector") for ln in r.stderr.splitlines()) == 1
    for cam in ("people", "street"):
        assert json.loads((out / f"{cam}.summary.json").read_text())["account"]["det_invalid_frames"] == 2
