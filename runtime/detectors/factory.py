"""Person detectors for the video CLI: ``hog``, ``onnx:PATH`` or ``json:PATH``.

Every detector is called with a :class:`~runtime.io.sources.Frame` and returns
``(boxes xywh float64 [M,4], scores [M])`` in image pixels, so the video loop
does not care where boxes come from.

ONNX detectors (YOLO style, NMS done here)
------------------------------------------
Input: one image tensor ``[1,3,H,W]`` float32 RGB in 0..1; the frame is
letterboxed (aspect kept, grey 114 padding) to H x W (640 x 640 if the model's
input size is dynamic). Output: the first output, one of

* ``[1, A, 5+C]`` - YOLOv5/v7: ``cx, cy, w, h, objectness, C class scores``
* ``[1, 4+C, A]`` - YOLOv8/v11: ``cx, cy, w, h, C class scores`` (transposed)

with A candidate boxes in input pixels and probabilities already in 0..1.
``auto`` finds the axis of length 85/6 (v5) or 84/5 (v8) - 80 COCO classes
or one class; other class counts need ``--det-layout``, which takes the longer
axis as A. Person score = objectness x class score
(v5) or class score (v8) for class ``--det-class`` (0 = person in COCO).
Models exported *with* NMS are not supported: export without it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from runtime.detectors import yolo
from runtime.io.sources import Frame

Detections = tuple[np.ndarray, np.ndarray]
Detector = Callable[[Frame], Detections]
LAYOUTS = ("auto", "yolov5", "yolov8")


class DetectorError(ValueError):
    """A detector file cannot be used; the message says which and why."""


def nms_xywh(boxes: np.ndarray, scores: np.ndarray, score_thr: float, iou_thr: float) -> np.ndarray:
    """Indices kept by non-maximum suppression, best first."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    keep = cv2.dnn.NMSBoxes(
        np.asarray(boxes, np.float32).tolist(),
        np.asarray(scores, np.float32).tolist(),
        float(score_thr),
        float(iou_thr),
    )
    return np.asarray(keep, np.int64).reshape(-1)


def _empty() -> Detections:
    return np.zeros((0, 4)), np.zeros(0)


class HogDetector:
    """OpenCV's built-in HOG + linear SVM pedestrian detector: nothing to download.

    It finds upright people at least ~128 px tall in the (down-scaled) image
    and is slow on big frames, so frames are shrunk to ``width`` first. Its
    64x128 window has a margin around the body, trimmed off the returned box.
    """

    def __init__(self, width: int = 640, score_thr: float = 0.3, iou_thr: float = 0.45) -> None:
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.width, self.score_thr, self.iou_thr = width, score_thr, iou_thr

    # detectMultiScale corrupts the heap / segfaults on images smaller than its 64x128 window
    # plus padding; frames are scaled so both sides are at least this (upscaled if need be).
    MIN_WH = (64 + 2 * 8 + 8, 128 + 2 * 8 + 8)

    def __call__(self, frame: Frame) -> Detections:
        img = frame.image
        h, w = img.shape[:2]
        s = max(min(1.0, self.width / w), self.MIN_WH[0] / w, self.MIN_WH[1] / h)
        if s != 1.0:
            size = (max(self.MIN_WH[0], round(w * s)), max(self.MIN_WH[1], round(h * s)))
            small = cv2.resize(img, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        else:
            small = img
        rects, weights = self.hog.detectMultiScale(small, winStride=(8, 8), padding=(8, 8), scale=1.05)
        if len(rects) == 0:
            return _empty()
        sx, sy = small.shape[1] / w, small.shape[0] / h
        boxes = np.asarray(rects, np.float64).reshape(-1, 4) / np.array([sx, sy, sx, sy])
        scores = np.asarray(weights, np.float64).reshape(-1)
        keep = nms_xywh(boxes, scores, self.score_thr, self.iou_thr)
        boxes, scores = boxes[keep], scores[keep]
        # The window is ~1/4 wider and ~1/8 taller than the person it was trained on.
        boxes[:, 0] += boxes[:, 2] * 0.125
        boxes[:, 2] *= 0.75
        boxes[:, 1] += boxes[:, 3] * 0.05
        boxes[:, 3] *= 0.9
        return boxes, scores


def letterbox(img: np.ndarray, hw: tuple[int, int]) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Resize keeping the aspect ratio and pad to ``hw``; returns (image, scale, (pad_x, pad_y))."""
    h, w = img.shape[:2]
    s = min(hw[0] / h, hw[1] / w)
    nh, nw = round(h * s), round(w * s)
    out = np.full((hw[0], hw[1], 3), 114, np.uint8)
    py, px = (hw[0] - nh) // 2, (hw[1] - nw) // 2
    out[py : py + nh, px : px + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return out, s, (float(px), float(py))


def decode_yolo(out: np.ndarray, layout: str = "auto", cls: int = 0) -> Detections:
    """Raw YOLO output -> (cx,cy,w,h boxes in input pixels [A,4], person scores [A])."""
    a = np.asarray(out, np.float32)
    if a.ndim == 3:
        if a.shape[0] != 1:
            raise DetectorError(f"detector output has batch {a.shape[0]}; expected 1")
        a = a[0]
    if a.ndim != 2:
        raise DetectorError(f"detector output must be [1,A,5+C] or [1,4+C,A], got {np.shape(out)}")
    known = {85: "yolov5", 6: "yolov5", 84: "yolov8", 5: "yolov8"}
    if layout == "auto":
        if a.shape[1] not in known and a.shape[0] in known:
            a = a.T
        layout = known.get(a.shape[1], "")
        if not layout:
            raise DetectorError(
                f"cannot tell the YOLO layout of a {list(np.shape(out))} output; pass "
                "--det-layout yolov5 (cx,cy,w,h,obj,classes) or yolov8 (cx,cy,w,h,classes)"
            )
    elif a.shape[0] < a.shape[1]:
        a = a.T  # candidates outnumber values per candidate in any real detector
    feats = a.shape[1]
    first = 5 if layout == "yolov5" else 4
    if first + cls >= feats:
        raise DetectorError(f"class {cls} is out of range for {layout} rows of {feats} values")
    score = a[:, first + cls] * (a[:, 4] if layout == "yolov5" else 1.0)
    return a[:, :4].astype(np.float64), score.astype(np.float64)


class OnnxDetector:
    """A user-supplied YOLO-style person detector run with ONNX Runtime (layout: module docstring)."""

    def __init__(
        self,
        path: str | Path,
        layout: str = "auto",
        cls: int = 0,
        score_thr: float = 0.35,
        iou_thr: float = 0.5,
        providers: list[str] | None = None,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise DetectorError(f"ONNX detector {self.path} not found (--detector onnx:PATH)")
        if layout not in LAYOUTS:
            raise DetectorError(f"unknown detector layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
        try:
            self.session = ort.InferenceSession(
                str(self.path), providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as e:  # noqa: BLE001 - ORT raises several unrelated types
            raise DetectorError(f"ONNX Runtime cannot load the detector {self.path}: {e}") from e
        inp = self.session.get_inputs()[0]
        if len(inp.shape) != 4:
            raise DetectorError(
                f"detector {self.path} input {inp.name} has shape {inp.shape}; expected [1,3,H,W]"
            )
        h, w = inp.shape[2:]
        self.input_name = inp.name
        self.hw = (h if isinstance(h, int) and h > 0 else 640, w if isinstance(w, int) and w > 0 else 640)
        if layout == "auto":  # the exporter's metadata first, as build.detector reads it (pose models too)
            from runtime.detectors.yolo import layout_from_metadata, parse_metadata

            known = layout_from_metadata(parse_metadata(self.session.get_modelmeta().custom_metadata_map))
            layout = known.family if known is not None else layout
        self.layout, self.cls, self.score_thr, self.iou_thr = layout, cls, score_thr, iou_thr
        self.check = yolo.OutputCheck(f"onnx:{self.path}")

    def __call__(self, frame: Frame) -> Detections:
        img, s, (px, py) = letterbox(frame.image, self.hw)
        x = np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1)[None], np.float32) / 255.0
        out = self.session.run(None, {self.input_name: x})[0]
        cxcywh, scores = decode_yolo(out, self.layout, self.cls)
        bad = yolo.invalid_candidates(cxcywh, scores)
        sel = (scores >= self.score_thr) & ~bad
        cxcywh, scores = cxcywh[sel], scores[sel]
        boxes = (
            np.stack(
                [
                    (cxcywh[:, 0] - cxcywh[:, 2] / 2 - px) / s,
                    (cxcywh[:, 1] - cxcywh[:, 3] / 2 - py) / s,
                    cxcywh[:, 2] / s,
                    cxcywh[:, 3] / s,
                ],
                axis=1,
            )
            if len(scores)
            else np.zeros((0, 4))
        )
        keep = nms_xywh(boxes, scores, self.score_thr, self.iou_thr)
        return self.check([yolo.Detections(boxes[keep], scores[keep], None, int(bad.sum()))])[0]


class JsonDetections:
    """Precomputed detections: a COCO results list ``[{"image_id", "bbox": [x,y,w,h], "score"}]``.

    For videos (and cameras) ``image_id`` is the 0-based frame index; a record
    may say ``"frame"`` instead. For image folders it is the COCO image id: from
    ``person_keypoints.json`` in the folder when present, else the number in
    the file name (000000000785.jpg is 785), else the frame index. Boxes are
    returned exactly as stored; frames without records have no people.
    """

    def __init__(self, path: str | Path) -> None:
        from runtime.io.records import (
            read_detections,  # strict, names the record and field (runtime.io.records)
        )

        self.path = Path(path)
        if not self.path.is_file():
            raise DetectorError(f"detections {self.path} not found (--detector json:PATH)")
        per: dict[int, list] = defaultdict(list)
        for d in read_detections(self.path, "--detector json:", frame_keys=True)[0]:
            per[d.key].append((list(d.bbox), d.score))
        self.per = dict(per)
        self._names: dict[str, int] | None = None
        self.folder: Path | None = None

    def bind_folder(self, folder: str | Path) -> None:
        """Key folder frames by COCO image id (see the class docstring)."""
        from runtime.io.records import RecordError, image_names
        from runtime.io.sources import IMAGE_EXTS

        self.folder = Path(folder)
        self._names = {name: i for i, name in image_names(self.folder, "--source").items()}
        # Mixed numbered and unnumbered names: a frame index could equal another file's id.
        stray = sorted(
            f.name
            for f in self.folder.iterdir()
            if f.suffix.lower() in IMAGE_EXTS and f.name not in self._names
        )
        if self._names and stray:
            raise RecordError(
                f"{stray[0]} has no image id (no number in its name, not in a "
                "person_keypoints.json) while other frames do",
                f"--source {self.folder}",
                "number every file or list the images in person_keypoints.json",
            )

    def key(self, frame: Frame) -> int:
        if frame.name is not None and self._names:
            return self._names.get(frame.name, frame.index)
        return frame.index

    def __call__(self, frame: Frame) -> Detections:
        recs = self.per.get(self.key(frame), [])
        if not recs:
            return _empty()
        return np.array([b for b, _ in recs], np.float64), np.array([s for _, s in recs], np.float64)


def make_detector(
    spec: str,
    *,
    layout: str = "auto",
    cls: int = 0,
    score_thr: float | None = None,
    iou_thr: float = 0.5,
    hog_width: int = 640,
) -> Detector:
    """``hog`` | ``onnx:PATH`` | ``json:PATH`` -> a detector."""
    kind, _, arg = spec.partition(":")
    if kind == "hog" and not arg:
        return HogDetector(hog_width, 0.3 if score_thr is None else score_thr, iou_thr)
    if kind == "onnx" and arg:
        return OnnxDetector(arg, layout, cls, 0.35 if score_thr is None else score_thr, iou_thr)
    if kind == "json" and arg:
        return JsonDetections(arg)
    raise DetectorError(
        f"unknown --detector {spec!r}: use hog, onnx:PATH (YOLO-style model) or json:PATH (COCO results JSON)"
    )
