"""One detector interface (issue #26): every ``--detector`` kind is opened from typed options by one
function, answers a frame with the one ``Detections`` type and closes the same way; ``onnx:PATH`` and
the artifacts' detector are one stack (same letterbox, decode and NMS: the same boxes for the same
model); the layout of a bare ONNX is read once, when it is opened, and a bad ``--det-class`` is
refused there rather than on the first frame."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from tiny_detector import GOOD, LOGIT, SIZE, tiny_detector

from runtime.detectors.base import Detections, DetectorError
from runtime.detectors.factory import DetectorOptions, detector_options_from, open_detector
from runtime.detectors.net import NetDetector
from runtime.detectors.yolo import LayoutError, YoloLayout, model_layout
from runtime.io.sources import Frame

OTHER = [40.0, 20.0, 16.0, 24.0, 0.6]  # a second person, apart from GOOD


@pytest.fixture(scope="module")
def frame(shared_data: Path) -> Frame:
    img = cv2.imread(str(next(iter(sorted((shared_data / "coco-mini").glob("*.jpg"))))))
    return Frame(0, 0.0, 0.0, img, "a.jpg")


@pytest.fixture(scope="module")
def with_detector(cpu_artifacts: Path, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default CPU artifacts plus the tiny detector as their ``detector`` role (fp32)."""
    from build.detector import add_detector
    from build.detector_check import check_graph
    from runtime.artifacts.manifest import load_manifest, save_manifest

    tmp = tmp_path_factory.mktemp("with_detector")
    root = tmp / cpu_artifacts.name
    shutil.copytree(cpu_artifacts, root)
    m = load_manifest(root)
    args = argparse.Namespace(
        det_size=SIZE,
        det_layout=None,
        det_class=0,
        det_score=0.3,
        det_iou=0.7,
        det_max_batch=2,
        det_calib_data=None,
        det_calib_frames=4,
        det_precision="fp32",
        det_calib_method="percentile",
        calib_data=None,
    )
    src = tiny_detector(tmp / "tiny.onnx", [GOOD, OTHER])
    add_detector(root, m, src, args, shared_data / "coco-mini", checked=check_graph(src, args))
    save_manifest(root, m)
    return root


def test_every_detector_kind_answers_with_one_type(
    with_detector: Path, shared_data: Path, frame: Frame
) -> None:
    coco = shared_data / "coco-mini"
    for spec in (
        "hog",
        f"json:{coco / 'person_detections.json'}",
        f"onnx:{with_detector / 'detector.onnx'}",
        "engine",
    ):
        det = open_detector(DetectorOptions(spec), with_detector, backend="ort")
        got = det(frame)
        assert isinstance(got, Detections), spec
        assert got.boxes.dtype == np.float64 and got.boxes.shape == (len(got), 4), spec
        assert got.scores.dtype == np.float64 and got.invalid == 0, spec
        boxes, scores = got  # the (boxes, scores) pair every caller unpacks
        assert boxes is got.boxes and scores is got.scores
        det.close()
        det.close()  # idempotent, for every kind


def test_onnx_path_and_the_artifacts_detector_are_one_stack(with_detector: Path, frame: Frame) -> None:
    """The same model through ``onnx:PATH`` (its own file, ORT runner) and ``engine`` (the artifacts'
    copy on the ORT backend) with the same thresholds: the same boxes, scores and count."""
    opts = dict(score_thr=0.3, iou_thr=0.7)
    onnx_det = open_detector(
        DetectorOptions(f"onnx:{with_detector / 'detector.onnx'}", **opts), with_detector
    )
    engine = open_detector(DetectorOptions("engine", **opts), with_detector, backend="ort")
    assert isinstance(onnx_det, NetDetector) and isinstance(engine, NetDetector)
    assert not onnx_det.shares_cameras and engine.shares_cameras
    a, b = onnx_det(frame), engine(frame)
    assert len(a) == 2
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)
    # and in frame pixels: GOOD (cx 32, cy 32, w 20, h 40 in a 64-px letterbox) mapped back
    h, w = frame.image.shape[:2]
    s = min(SIZE / h, SIZE / w)
    px, py = (SIZE - round(w * s)) // 2, (SIZE - round(h * s)) // 2
    want = [(32 - 10 - px) / s, (32 - 20 - py) / s, 20 / s, 40 / s]
    np.testing.assert_allclose(a.boxes[np.argmax(a.scores)], want, rtol=1e-6)
    onnx_det.close()
    engine.close()


def test_a_bad_det_class_is_refused_when_opened(tmp_path: Path) -> None:
    det = tiny_detector(tmp_path / "t.onnx", [GOOD])
    with pytest.raises(DetectorError, match=r"class 3 is out of range for 1 classes.*--det-class"):
        open_detector(DetectorOptions(f"onnx:{det}", cls=3), tmp_path)


def test_onnx_detector_takes_the_runs_threads(tmp_path: Path) -> None:
    """``--threads`` reaches an ``onnx:`` detector's session as it does the pose nets' (it was
    silently every core); without it, every core."""
    from runtime.backends.options import OrtOptions

    path = tiny_detector(tmp_path / "t.onnx", [GOOD])
    for options, want in ((OrtOptions(threads=1), 1), ({"threads": 2}, 2), (None, os.cpu_count())):
        det = open_detector(DetectorOptions(f"onnx:{path}"), tmp_path, backend_options=options)
        try:
            assert det.runner.session.get_session_options().intra_op_num_threads == want
        finally:
            det.close()


def test_layout_of_an_onnx_without_metadata_with_a_dynamic_output_is_read_from_one_run(
    tmp_path: Path, frame: Frame
) -> None:
    """No metadata and a symbolic [N, F, A] output: one blank run tells the shape (yolov8, 1 class)."""
    path = tiny_detector(tmp_path / "dyn.onnx", [GOOD, LOGIT], metadata=False)
    m = onnx.load(str(path))
    dims = m.graph.output[0].type.tensor_type.shape.dim
    dims[1].dim_param, dims[2].dim_param = "F", "A"
    onnx.save(m, str(path))
    det = open_detector(DetectorOptions(f"onnx:{path}"), tmp_path)
    assert isinstance(det, NetDetector)
    assert det.layout == YoloLayout("yolov8", 1, None, "shape") and det.input_hw == (SIZE, SIZE)
    got = det(frame)
    assert len(got) == 1 and got.invalid == 1  # the logit candidate: dropped and counted
    det.close()


@pytest.mark.parametrize(
    "flag, meta, shape, want",
    [
        (
            "auto",
            {"task": "pose", "names": {0: "p"}, "kpt_shape": [17, 3]},
            [1, 56, 8400],
            ("yolov8", 1, False),
        ),
        ("auto", {"task": "detect", "names": {0: "p"}}, [1, 8400, 5], ("yolov8", 1, True)),
        ("auto", {}, [1, 84, 8400], ("yolov8", 80, False)),
        ("auto", {}, [1, 8400, 84], ("yolov8", 80, True)),
        ("auto", {}, [1, 25200, 85], ("yolov5", 80, False)),
        ("auto", {}, [1, 6, 25200], ("yolov5", 1, True)),
        ("yolov8", {}, [1, 7, 100], ("yolov8", 3, False)),  # any class count with the flag
        ("yolov8", {}, [1, 100, 7], ("yolov8", 3, True)),
        ("yolov5", {}, [1, 100, 8], ("yolov5", 3, False)),
        ("yolov5", {"task": "detect", "names": {0: "p"}}, [1, 8, 100], ("yolov5", 3, True)),  # flag wins
    ],
)
def test_model_layout(flag: str, meta: dict, shape: list, want: tuple) -> None:
    layout, swapped = model_layout(flag, meta, shape)
    assert (layout.family, layout.num_classes, swapped) == want


def test_model_layout_refusals() -> None:
    with pytest.raises(LayoutError, match="--det-layout"):
        model_layout("auto", {}, [1, 100, 7])
    with pytest.raises(LayoutError, match="dynamic"):
        model_layout("yolov8", {}, [1, "F", "A"])
    with pytest.raises(LayoutError, match="rank"):
        model_layout("auto", {}, [100, 84])
    with pytest.raises(LayoutError, match="too narrow"):
        model_layout("yolov5", {}, [1, 100, 5])


def test_options_are_checked_once_at_the_cli_edge() -> None:
    video = argparse.Namespace(
        detector="hog", det_layout="yolov5", det_class=2, det_thr=0.4, det_nms=None, hog_width=320
    )
    assert detector_options_from(video) == DetectorOptions("hog", "yolov5", 2, 0.4, None, 320)
    images = argparse.Namespace(detector="engine", score_thr=0.9)  # runtime.images has --detector only
    assert detector_options_from(images) == DetectorOptions("engine")
    for bad, msg in (
        (dict(spec="onnx:"), "onnx:PATH"),
        (dict(spec="hog:x"), "onnx:PATH"),
        (dict(layout="yolov7"), "--det-layout"),
        (dict(cls=-1), "--det-class"),
        (dict(score_thr=1.5), "--det-thr"),
    ):
        with pytest.raises(DetectorError, match=msg):
            DetectorOptions(**bad)


def test_an_unloadable_or_missing_onnx_is_one_line_exit_2(
    cpu_artifacts: Path, shared_data: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    bad = tmp_path / "bad.onnx"
    bad.write_text("not a model")
    for spec, msg in (
        (f"onnx:{bad}", "ONNX Runtime cannot load the detector"),
        (f"onnx:{tmp_path}/no.onnx", "not found"),
    ):
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "runtime.images",
                "--engines",
                str(cpu_artifacts),
                "--images",
                str(shared_data / "coco-mini"),
                "--detector",
                spec,
                "--out",
                str(tmp_path / "res"),
                "--backend",
                "ort",
            ],
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert r.returncode == 2, r.stderr
        assert msg in r.stderr and "Traceback" not in r.stderr
