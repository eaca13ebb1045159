"""Letterbox into a preallocated batch and the vectorised YOLO decode + NMS (synthetic outputs with
known answers, and the real model against the previous OnnxDetector path)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from runtime.detectors.base import Detections
from runtime.detectors.letterbox import Geometry, Letterboxer
from runtime.detectors.yolo import (
    LayoutError,
    YoloLayout,
    check_output_shape,
    decode,
    layout_from_metadata,
)


def letterbox(img: np.ndarray, hw: tuple[int, int]) -> tuple[np.ndarray, float, tuple[float, float]]:
    """The first ONNX detector's letterbox, whose box AP on coco-mini was measured: the reference."""
    h, w = img.shape[:2]
    s = min(hw[0] / h, hw[1] / w)
    nh, nw = round(h * s), round(w * s)
    out = np.full((hw[0], hw[1], 3), 114, np.uint8)
    py, px = (hw[0] - nh) // 2, (hw[1] - nw) // 2
    out[py : py + nh, px : px + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return out, s, (float(px), float(py))


def test_letterboxer_matches_reference_and_reuses_its_buffer() -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (h, w, 3), np.uint8) for h, w in ((480, 640), (720, 300), (100, 1000))]
    box = Letterboxer((320, 320), 3)
    buf = box.batch
    batch, geos = box.fill(frames)
    assert batch.base is buf or batch is buf or np.shares_memory(batch, buf)
    for img, x, g in zip(frames, batch, geos):
        ref, s, (px, py) = letterbox(img, (320, 320))
        assert (g.scale, g.pad_x, g.pad_y) == (s, px, py)
        np.testing.assert_allclose(x, ref[:, :, ::-1].transpose(2, 0, 1) / 255.0, atol=1e-6)
    again, _ = box.fill(frames[:1])
    assert np.shares_memory(again, buf)
    with pytest.raises(ValueError, match="at most 3"):
        box.fill(frames * 2)


def test_layout_from_metadata_families() -> None:
    assert layout_from_metadata({"task": "pose", "names": {0: "person"}, "kpt_shape": [17, 3]}) == YoloLayout(
        "yolov8", 1, (17, 3)
    )
    assert layout_from_metadata({"task": "detect", "names": {i: str(i) for i in range(80)}}).features == 84
    assert layout_from_metadata({"names": ["a", "b"], "stride": 32}) == YoloLayout("yolov5", 2)
    assert layout_from_metadata({"author": "someone"}) is None
    check_output_shape(YoloLayout("yolov8", 1, (17, 3)), (None, 56, 8400))
    with pytest.raises(LayoutError, match="needs 84"):
        check_output_shape(YoloLayout("yolov8", 80), (1, 56, 8400))


def _v8_pose_output(
    boxes_in: np.ndarray, scores: np.ndarray, kpts_in: np.ndarray, anchors: int = 50
) -> np.ndarray:
    """[1, 56, A]: the given candidates first, low-score noise after."""
    rng = np.random.default_rng(1)
    out = np.zeros((1, 56, anchors), np.float32)
    out[0, :4] = rng.uniform(10, 100, (4, anchors))
    out[0, 4] = rng.uniform(0, 0.05, anchors)
    n = len(scores)
    out[0, :4, :n] = boxes_in.T
    out[0, 4, :n] = scores
    out[0, 5:, :n] = kpts_in.reshape(n, -1).T
    return out


def test_decode_maps_to_frame_pixels_and_suppresses_duplicates() -> None:
    g = Geometry(scale=0.5, pad_x=0.0, pad_y=80.0)
    boxes = np.array([[100, 200, 40, 80], [101, 201, 40, 80], [300, 250, 60, 100]], np.float32)  # cx cy w h
    scores = np.array([0.9, 0.8, 0.6], np.float32)
    kpts = np.zeros((3, 17, 3), np.float32)
    kpts[..., 0], kpts[..., 1], kpts[..., 2] = 100, 180, 0.7
    out = _v8_pose_output(boxes, scores, kpts)
    (d,) = decode(out, YoloLayout("yolov8", 1, (17, 3)), [g], score_thr=0.3, iou_thr=0.5)
    assert isinstance(d, Detections) and len(d) == 2  # the near-duplicate is gone
    np.testing.assert_allclose(d.scores, [0.9, 0.6], rtol=1e-6)
    np.testing.assert_allclose(d.boxes[0], [(100 - 20) / 0.5, (200 - 40 - 80) / 0.5, 80, 160], rtol=1e-6)
    assert d.keypoints.shape == (2, 17, 3)
    np.testing.assert_allclose(d.keypoints[0, 0], [200, 200, 0.7], rtol=1e-6)
    b, s = d  # unpacks like the other detectors
    assert b is d.boxes and s is d.scores
    # a batch of two frames decodes each with its own geometry
    two = decode(
        np.concatenate([out, out]), YoloLayout("yolov8", 1, (17, 3)), [g, Geometry(1, 0, 0)], 0.3, 0.5
    )
    np.testing.assert_allclose(two[1].boxes[0], [80, 160, 40, 80], rtol=1e-6)
    none = decode(out, YoloLayout("yolov8", 1, (17, 3)), [g], score_thr=0.95, iou_thr=0.5)[0]
    assert none.boxes.shape == (0, 4) and none.keypoints.shape == (0, 17, 3)


def test_decode_yolov5_uses_objectness_times_class() -> None:
    out = np.zeros((1, 3, 7), np.float32)  # [N, A, 5 + 2 classes]
    out[0, :, :4] = [[50, 50, 20, 20], [150, 50, 20, 20], [250, 50, 20, 20]]
    out[0, :, 4] = [0.9, 0.9, 0.2]
    out[0, :, 5] = [0.8, 0.1, 0.9]  # class 0
    out[0, :, 6] = [0.1, 0.9, 0.1]
    (d,) = decode(out, YoloLayout("yolov5", 2), [Geometry(1, 0, 0)], score_thr=0.3, iou_thr=0.5)
    np.testing.assert_allclose(d.scores, [0.72], rtol=1e-6)
    (d1,) = decode(out, YoloLayout("yolov5", 2), [Geometry(1, 0, 0)], score_thr=0.3, iou_thr=0.5, cls=1)
    np.testing.assert_allclose(d1.boxes[0], [140, 40, 20, 20])
    with pytest.raises(LayoutError, match="out of range"):
        decode(out, YoloLayout("yolov5", 2), [Geometry(1, 0, 0)], 0.3, 0.5, cls=2)
    with pytest.raises(LayoutError, match="does not fit"):
        decode(out, YoloLayout("yolov8", 80), [Geometry(1, 0, 0)], 0.3, 0.5)
