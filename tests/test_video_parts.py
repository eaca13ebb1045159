"""The video CLI's parts on real frames: sources, detectors, tracker, sinks, overlay."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.detectors.base import DetectorError
from runtime.detectors.factory import DetectorOptions, HogDetector, JsonDetections, open_detector
from runtime.detectors.net import NetDetector
from runtime.detectors.yolo import model_layout
from runtime.io.draw import ROUTE_COLOURS, draw_persons
from runtime.io.sinks import JsonlWriter, MjpegAviWriter
from runtime.io.source_spec import open_source
from runtime.io.sources import Frame, SourceError, gstreamer_available
from runtime.pose.results import FrameResult
from runtime.tracking.tracker import IoUTracker, iou_matrix


@pytest.fixture(scope="module")
def people(shared_data: Path) -> Path:
    return shared_data / "video" / "people.mp4"


@pytest.fixture(scope="module")
def people_frames(people: Path) -> list[Frame]:
    return list(open_source(str(people)).frames())


def read_all(path: Path, api: int = cv2.CAP_ANY) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path), api)
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            return frames
        frames.append(img)


# -- sources -----------------------------------------------------------------------------
def test_video_file_source(people_frames: list[Frame], people: Path) -> None:
    src = open_source(str(people))
    assert (src.kind, src.total, src.size, src.fps) == ("file", 5, (1280, 720), 30.0)
    assert [f.index for f in people_frames] == [0, 1, 2, 3, 4]
    assert [f.timestamp for f in people_frames] == pytest.approx([i / 30 for i in range(5)])
    assert people_frames[0].image.shape == (720, 1280, 3)


def test_missing_and_truncated_sources_name_the_input(tmp_path: Path, people: Path) -> None:
    with pytest.raises(SourceError, match="nope.mp4.*not found"):
        open_source(str(tmp_path / "nope.mp4"))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(people.read_bytes()[: people.stat().st_size * 2 // 3])
    with pytest.raises(SourceError, match=r"cut\.mp4.*truncated.*moov"):
        open_source(str(cut))


def test_truncated_avi_reports_ended_early(tmp_path: Path, people_frames: list[Frame]) -> None:
    avi = tmp_path / "rec.avi"
    w = MjpegAviWriter(avi, 30, (1280, 720))
    for f in people_frames * 2:
        w.write(f.image)
    w.close()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(avi.read_bytes()[: avi.stat().st_size // 2])
    src = open_source(str(cut))
    got = list(src.frames())
    assert 1 <= len(got) < 10 and src.total == 10
    assert src.ended_early and "cut.avi" in src.ended_early and "truncated" in src.ended_early


def test_folder_source_skips_and_counts_unreadable(tmp_path: Path, coco_mini: Path) -> None:
    for f in sorted(coco_mini.glob("*.jpg"))[:2]:
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "000000000001.jpg").write_bytes(b"not a jpeg")
    src = open_source(str(tmp_path), fps=10)
    frames = list(src.frames())
    assert src.kind == "folder" and len(frames) == 2 and src.corrupt == 1
    assert frames[0].index == 1 and frames[0].timestamp == pytest.approx(0.1)  # the bad file used index 0


def test_gstreamer_pipeline_or_clear_absence() -> None:
    """OpenCV's own GStreamer path (--reader ffmpeg); the PyGObject path is in test_live_sources."""
    if gstreamer_available():
        src = open_source(
            "videotestsrc num-buffers=3 ! videoconvert ! video/x-raw,format=BGR ! appsink", reader="ffmpeg"
        )
        assert len(list(src.frames())) == 3
    else:
        with pytest.raises(SourceError, match="without GStreamer"):
            open_source("csi://0", reader="ffmpeg")


# -- detectors -------------------------------------------------------------------------------
def test_hog_finds_coco_people(coco_mini: Path) -> None:
    gt = json.loads((coco_mini / "person_keypoints.json").read_text())
    best = []
    for im in gt["images"]:
        img = cv2.imread(str(coco_mini / im["file_name"]))
        boxes, scores = HogDetector()(Frame(0, 0.0, 0.0, img))
        g = np.array([a["bbox"] for a in gt["annotations"] if a["image_id"] == im["id"]])
        assert np.all(scores >= 0.3)
        if len(boxes):
            assert np.all(boxes[:, :2] > -img.shape[1]) and np.all(boxes[:, 2:] > 0)
            best.extend(iou_matrix(boxes, g).max(axis=1))
    assert len(best) >= 2 and max(best) > 0.6  # every HOG hit here is a real person


def _yolo_model(path: Path, rows: np.ndarray, v8: bool) -> Path:
    """A stand-in YOLO whose output is fixed candidates (plus 0 x the input, so it runs the image)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out = rows.T[None] if v8 else rows[None]
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Add", ["z", "cand"], ["output0"]),
    ]
    g = helper.make_graph(
        nodes,
        "yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 640, 640])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(out.shape))],
        [
            numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
            numpy_helper.from_array(out.astype(np.float32), "cand"),
        ],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("v8", [True, False])
def test_onnx_detector_letterbox_class_and_nms(tmp_path: Path, people_frames: list[Frame], v8: bool) -> None:
    def row(cx, cy, w, h, person, other, obj=1.0):
        cls = np.zeros(80)
        cls[0], cls[1] = person, other
        return np.r_[cx, cy, w, h, ([] if v8 else [obj]), cls]

    rows = np.stack(
        [
            row(320, 320, 100, 200, 0.9, 0.0),
            row(324, 322, 100, 200, 0.8, 0.0),  # duplicate
            row(100, 300, 50, 50, 0.1, 0.95),  # not a person
            row(500, 300, 40, 80, 0.9, 0.0, obj=0.2),
        ]
    )  # low objectness (v5)
    det = open_detector(DetectorOptions(f"onnx:{_yolo_model(tmp_path / 'y.onnx', rows, v8)}"), tmp_path)
    assert isinstance(det, NetDetector)
    boxes, scores = det(people_frames[0])  # 1280x720 -> scale 0.5, 140 px bars top and bottom
    want = [[540, 160, 200, 400]] + ([[960, 240, 80, 160]] if v8 else [])
    order = np.argsort(boxes[:, 0])
    np.testing.assert_allclose(boxes[order], want, atol=1e-3)
    assert scores.max() == pytest.approx(0.9, abs=1e-6)


def test_yolo_layout_errors() -> None:
    with pytest.raises(DetectorError, match="--det-layout"):
        model_layout("auto", {}, (1, 100, 7))
    with pytest.raises(DetectorError, match="onnx:PATH"):
        DetectorOptions("yolo")


def test_json_detections_on_an_image_folder(coco_mini: Path) -> None:
    det = open_detector(DetectorOptions(f"json:{coco_mini / 'person_detections.json'}"), coco_mini)
    assert isinstance(det, JsonDetections)
    det.bind_folder(coco_mini)
    recs = json.loads((coco_mini / "person_detections.json").read_text())
    names = {
        im["file_name"]: im["id"]
        for im in json.loads((coco_mini / "person_keypoints.json").read_text())["images"]
    }
    n = 0
    for f in open_source(str(coco_mini)).frames():
        boxes, scores = det(f)
        mine = [r for r in recs if r["image_id"] == names[f.name]]
        assert boxes.tolist() == [r["bbox"] for r in mine]
        assert scores.tolist() == [r["score"] for r in mine]
        n += len(boxes)
    assert n == len(recs)


# -- tracker ---------------------------------------------------------------------------------------
def test_tracker_keeps_ids_on_real_detections(people_frames: list[Frame]) -> None:
    hog, tr = HogDetector(), IoUTracker()
    prev = None
    for f in people_frames:
        boxes, scores = hog(f)
        ids = tr.update(boxes, scores, f.index)
        assert len(set(ids.tolist())) == len(ids)
        if prev is not None and len(boxes) and len(prev[0]):
            iou = iou_matrix(prev[0], boxes)
            for d in range(len(boxes)):
                p = int(iou[:, d].argmax())
                if iou[p, d] > 0.5 and iou[p].argmax() == d:
                    assert ids[d] == prev[1][p], f"frame {f.index}: same person, new id"
        prev = (boxes, ids)


def test_tracker_carries_boxes_between_detections(people_frames: list[Frame]) -> None:
    hog, tr = HogDetector(), IoUTracker()
    for f in people_frames[0:3:2]:  # detect on frames 0 and 2 only
        tr.update(*hog(f), f.index)
    boxes, _, ids = tr.predict(3, (720, 1280))
    actual, _ = hog(people_frames[3])  # what the detector sees on frame 3
    assert len(boxes) >= 1 and iou_matrix(boxes, actual).max() > 0.6
    assert np.all(boxes[:, 0] >= 0) and np.all(boxes[:, 0] + boxes[:, 2] <= 1280)


def test_tracker_expires_and_starts_tracks() -> None:
    tr = IoUTracker(max_misses=1)
    a = tr.update(np.array([[0, 0, 10, 10], [100, 100, 10, 10]]), np.ones(2), 0)
    b = tr.update(np.array([[1, 0, 10, 10]]), np.ones(1), 1)
    assert b[0] == a[0]
    assert len(tr.predict(2)[0]) == 1  # the unmatched track is not drawn ...
    tr.update(np.zeros((0, 4)), np.zeros(0), 2)
    tr.update(np.zeros((0, 4)), np.zeros(0), 3)
    c = tr.update(np.array([[100, 100, 10, 10]]), np.ones(1), 4)
    assert c[0] not in a  # ... and after max_misses rounds it is gone


# -- sinks -----------------------------------------------------------------------------------------
def test_avi_is_playable_while_open_and_after_close(tmp_path: Path, people_frames: list[Frame]) -> None:
    path = tmp_path / "o.avi"
    w = MjpegAviWriter(path, 30, (1280, 720))
    for f in people_frames[:3]:
        w.write(f.image)
    # Not closed: exactly the state a SIGKILL leaves behind.
    open_frames = read_all(path)
    assert len(open_frames) == 3
    w.write(people_frames[3].image)
    w.close()
    for api in (cv2.CAP_FFMPEG, cv2.CAP_OPENCV_MJPEG):
        got = read_all(path, api)
        assert len(got) == 4 and got[0].shape == (720, 1280, 3)
        assert np.abs(got[3].astype(int) - people_frames[3].image).mean() < 4  # JPEG, not garbage
    assert int(cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT)) == 4


def test_avi_killed_between_frame_and_header_patch(
    tmp_path: Path, people_frames: list[Frame], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two system calls per frame (data, then header) leave one window a SIGKILL can hit: the
    frame is on disk but not counted. The file must still open and decode every frame it holds,
    and its header must count only frames that are there."""
    path = tmp_path / "o.avi"
    w = MjpegAviWriter(path, 30, (1280, 720))
    for f in people_frames[:2]:
        w.write(f.image)
    monkeypatch.setattr(w, "_patch", lambda frames, flags: None)  # "killed" before the patch
    w.write(people_frames[2].image)
    header = int(cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT))
    got = read_all(path)
    assert header == 2 and len(got) == 3  # FFmpeg scans past the counted frames
    assert np.abs(got[2].astype(int) - people_frames[2].image).mean() < 4


def test_avi_rolls_over_before_the_size_limit(tmp_path: Path, people_frames: list[Frame]) -> None:
    w = MjpegAviWriter(tmp_path / "o.avi", 30, (1280, 720), max_bytes=200_000)
    for f in people_frames:
        w.write(f.image)
    w.close()
    assert len(w.paths) >= 2 and w.paths[1].name == "o.1.avi"
    assert sum(len(read_all(p)) for p in w.paths) == 5
    assert all(p.stat().st_size <= 200_000 for p in w.paths)


def test_jsonl_lines_are_whole(tmp_path: Path) -> None:
    w = JsonlWriter(tmp_path / "r.jsonl")
    for i in range(3):
        w.write({"frame": i, "persons": []})
    lines = (tmp_path / "r.jsonl").read_text().splitlines()  # readable before close
    assert [json.loads(s)["frame"] for s in lines] == [0, 1, 2]
    w.close()
    with pytest.raises(ValueError):
        JsonlWriter(tmp_path / "n.jsonl").write({"x": float("nan")})


# -- overlay -----------------------------------------------------------------------------------------
def test_overlay_colours_and_hollow_low_presence(people_frames: list[Frame]) -> None:
    img = people_frames[0].image.copy()
    kp = np.zeros((2, 17, 3), np.float32)
    kp[:, :, 0] = np.linspace(300, 900, 17)
    kp[0, :, 1], kp[1, :, 1], kp[:, :, 2] = 200, 500, 0.9
    presence = np.ones((2, 17), np.float32)
    presence[1, 0] = 0.1  # person 1, nose: doubtful
    kp[1, 1:3, 2] = 0.0  # its eyes hidden, so no limb crosses the nose
    res = FrameResult(
        np.array([[250, 150, 700, 100], [250, 450, 700, 100]], np.float32),
        kp,
        presence,
        np.array([0, 1], np.int8),
        np.array([0.3, 0.9], np.float32),
        np.ones(2, np.float32),
    )
    out = draw_persons(img, res, [7, 8], presence_thr=0.5, kpt_thr=0.5)
    assert tuple(out[200, 300]) == ROUTE_COLOURS[0]  # filled, small-net colour
    assert tuple(out[500, 450]) == ROUTE_COLOURS[1]  # a large-net joint (index 4, x = 450)
    assert np.abs(out[500, 300].astype(int) - people_frames[0].image[500, 300]).sum() < 30  # hollow centre


def test_onnx_detector_reads_the_exporters_metadata(shared_data: Path, people_frames: list[Frame]) -> None:
    """onnx: with the pose YOLO that build --detector takes: its [1, 56, 8400] output (4 box + 1 class
    + 17x3 keypoints) was refused with "cannot tell the YOLO layout"; the Ultralytics metadata
    (task, names, kpt_shape) says yolov8 with one class, as runtime.detectors.yolo reads it for the build."""
    det = open_detector(DetectorOptions(f"onnx:{shared_data / 'models' / 'yolo11n-pose.onnx'}"), shared_data)
    assert (det.layout.family, det.layout.num_classes, det.layout.kpt_shape) == ("yolov8", 1, (17, 3))
    found = det(people_frames[0])
    assert len(found) >= 1 and (found.scores >= det.score_thr).all()
    # the same decode as the artifacts' detector: the pose model's own keypoints come along, in frame pixels
    assert found.keypoints is not None and found.keypoints.shape == (len(found), 17, 3)
    inside = (found.keypoints[..., 0] >= found.boxes[:, None, 0] - 1) & (
        found.keypoints[..., 0] <= found.boxes[:, None, 0] + found.boxes[:, None, 2] + 1
    )
    assert inside[found.keypoints[..., 2] > 0.5].all()
    det.close()
