"""The detector's TensorRT runner on the API harness + the pycuda stand-in: engine built from the
manifest entry with its multi-camera profile, results equal to ONNX Runtime, its own stream,
and queued work that really is asynchronous (frame t+1 enqueued while frame t is still pending)."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pytest

from build.detector import add_detector
from build.trt import build_engines
from runtime.detectors.net import NetDetector
from tests.trt_harness import fake_cuda
from tools.device_check.tiny_artifacts import make_artifacts

pytestmark = pytest.mark.trt


@pytest.fixture
def built(trt_world, tmp_path: Path, shared_data: Path):
    root = tmp_path / "det-orin"
    manifest = make_artifacts(root)
    args = argparse.Namespace(
        det_size=640,
        det_layout=None,
        det_class=0,
        det_score=0.3,
        det_iou=0.7,
        det_max_batch=4,
        det_precision="fp32",
    )
    add_detector(
        root, manifest, shared_data / "models" / "yolo11n-pose.onnx", args, shared_data / "coco-mini"
    )
    build_engines(root, manifest, "orin")
    return root, manifest


def _frames(coco: Path) -> list[np.ndarray]:
    return [cv2.imread(str(p)) for p in sorted(coco.glob("*.jpg"))]


def test_trt_detector_matches_ort_on_its_own_stream(built, coco_mini: Path) -> None:
    root, manifest = built
    rec = manifest["models"]["detector"]["engine"]
    assert rec["profiles"] == [{"min": 1, "opt": 1, "max": 4}]
    frames = _frames(coco_mini)
    ort_det = NetDetector(root, manifest, backend="ort")
    want = [ort_det(f) for f in frames]
    ort_det.close()
    det = NetDetector(root, manifest, backend="trt", max_batch=4)
    assert det.runner.max_batch == 4 and det.max_batch == 4
    be = det.backend
    small, s_small = be.open_runner("small").activate(), be.new_stream("small")
    n0 = len(fake_cuda.GPU.log)
    j1 = det.submit(frames[:2])  # frame batch t
    j2 = det.submit(frames[2:])  # frame batch t+1, queued before t is collected
    crops = np.random.default_rng(0).normal(size=(3, 3, 256, 192)).astype(np.float32)
    p_small = small.infer_async(crops, s_small)
    assert len(fake_cuda.GPU.log) == n0, "submit ran GPU work synchronously: nothing can overlap"
    got = det.collect(j2) + det.collect(j1)  # waiting on t+1 first still gives each its own frames
    got = got[2:] + got[:2]
    p_small.wait()
    for w, g in zip(want, got):
        assert len(g) == len(w) > 0
        np.testing.assert_allclose(g.boxes, w.boxes, atol=1e-2)
        np.testing.assert_allclose(g.keypoints, w.keypoints, atol=1e-2)
    log = fake_cuda.GPU.log[n0:]
    det_ops = [(k, lbl) for h, k, lbl in log if h == det.stream.handle]
    assert det.stream.handle != s_small.handle
    # per batch, in submission order: a timing event, input copy -> engine -> output copy, then the
    # timing end and the done event (runtime.backends.trt: timing events apart from done events)
    assert [k for k, _ in det_ops] == ["record", "htod", "kernel", "dtoh", "record", "record"] * 2, det_ops
    assert {lbl for k, lbl in det_ops if k == "kernel"} == {"detector.onnx"}
    assert any(h == s_small.handle and k == "kernel" for h, k, _ in log)
    det.close()


def test_trt_detector_chunks_to_the_profile(built, coco_mini: Path) -> None:
    root, manifest = built
    det = NetDetector(root, manifest, backend="trt", max_batch=8)
    assert det.max_batch == 4  # capped by the engine profile
    frames = _frames(coco_mini) * 2  # 8 frames -> two batches of 4
    res = det.detect_many(frames)
    assert len(res) == 8
    for a, b in zip(res[:4], res[4:]):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)
    det.close()
