"""Which person detector a run uses: typed options, the spec they name, and the two non-network ones.

``--detector`` is one of

* ``auto`` - the artifacts' detector when they have one, else ``hog``
  (:func:`hog_fallback_note` says so);
* ``engine`` - the artifacts' detector (role ``detector``; any backend);
* ``onnx:PATH`` - a user's YOLO ONNX (v5/v8/v11 detect or pose, exported
  without NMS) on ONNX Runtime; ``--det-layout`` / ``--det-class`` apply to it;
* ``hog`` - OpenCV's HOG people detector (nothing to download);
* ``json:PATH`` - precomputed boxes (a COCO results list).

The first three are :class:`runtime.detectors.net.NetDetector` (one letterbox,
one YOLO decode); all of them follow :class:`runtime.detectors.base.Detector`
and return :class:`runtime.detectors.base.Detections`. The CLIs turn their
flags into :class:`DetectorOptions` once (:func:`detector_options_from`), so
a bad value is refused there, in one line.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from runtime.backends.options import BackendOptions, given
from runtime.detectors.base import Detections, Detector, DetectorError, nms_xywh
from runtime.detectors.yolo import FAMILIES
from runtime.io.sources import Frame

LAYOUTS = ("auto", *FAMILIES)
SPECS = "auto, engine, hog, onnx:PATH (YOLO-style model) or json:PATH (COCO results JSON)"
HOG_SCORE, OTHER_IOU = 0.3, 0.5  # HOG's defaults (the artifacts' detector has its manifest's)


@dataclass(frozen=True)
class DetectorOptions:
    """The detector a run uses (``spec``: module docstring) and how its boxes are kept.

    ``layout``/``cls``: an ``onnx:PATH`` model's output layout and person class; ``score_thr``/
    ``iou_thr``: None = the detector's own default; ``hog_width``: HOG's working frame width."""

    spec: str = "auto"
    layout: str = "auto"
    cls: int = 0
    score_thr: float | None = None
    iou_thr: float | None = None
    hog_width: int = 640

    def __post_init__(self) -> None:
        kind, colon, arg = self.spec.partition(":")
        if not (kind in ("auto", "engine", "hog") and not colon or kind in ("onnx", "json") and arg):
            raise DetectorError(f"unknown --detector {self.spec!r}: use {SPECS}")
        if self.layout not in LAYOUTS:
            raise DetectorError(f"unknown --det-layout {self.layout!r}; choose one of {', '.join(LAYOUTS)}")
        for name, v, lo, hi in (
            ("--det-class", self.cls, 0, None),
            ("--hog-width", self.hog_width, 1, None),
            ("--det-thr", self.score_thr, 0, 1),
            ("--det-nms", self.iou_thr, 0, 1),
        ):
            if v is not None and (v < lo or hi is not None and v > hi):
                raise DetectorError(f"{name} {v}: use a value >= {lo}" + (f" and <= {hi}" if hi else ""))


_FLAGS = {
    "spec": "detector",
    "layout": "det_layout",
    "cls": "det_class",
    "score_thr": "det_thr",
    "iou_thr": "det_nms",
    "hog_width": "hog_width",
}


def detector_options_from(args: argparse.Namespace) -> DetectorOptions:
    """The detector flags a CLI has (``--detector``, ``--det-layout``, ``--det-class``, ``--det-thr``,
    ``--det-nms``, ``--hog-width``) as options; a flag the CLI does not have keeps its default."""
    given = {f.name: getattr(args, _FLAGS[f.name], None) for f in fields(DetectorOptions)}
    return DetectorOptions(**{k: v for k, v in given.items() if v is not None})


def open_detector(
    opts: DetectorOptions,
    engines: str | Path,
    *,
    backend: str = "auto",
    precision: str = "fp32",
    backend_options: BackendOptions | Mapping[str, Any] | None = None,
) -> Detector:
    """The detector ``opts.spec`` names. ``backend``, ``precision`` and ``backend_options`` (e.g.
    the Triton ``url``) go to the artifacts' detector, the same as to the pose nets."""
    from runtime.artifacts.manifest import ManifestError, load_manifest
    from runtime.detectors.net import NetDetector, has_detector

    kind, _, arg = opts.spec.partition(":")
    if kind in ("auto", "engine"):
        manifest = load_manifest(engines)
        if has_detector(manifest):
            return NetDetector(
                engines,
                manifest,
                backend=backend,
                precision=precision,
                score_thr=opts.score_thr,
                iou_thr=opts.iou_thr,
                backend_options=backend_options,
            )
        if kind == "engine":
            raise ManifestError(
                f"--detector engine: {engines} has no detector; add one with "
                f"`python -m build.engines {ADD_DETECTOR}` or use --detector hog"
            )
        kind = "hog"
    iou = OTHER_IOU if opts.iou_thr is None else opts.iou_thr
    if kind == "onnx":
        threads = given(backend_options).get("threads")  # --threads: ONNX Runtime's, as for the pose nets
        return NetDetector.from_onnx(arg, opts.layout, opts.cls, opts.score_thr, iou, threads)
    if kind == "json":
        return JsonDetections(arg)
    return HogDetector(opts.hog_width, HOG_SCORE if opts.score_thr is None else opts.score_thr, iou)


ADD_DETECTOR = "--detector rtmdet-nano-person (or --detector PATH.onnx) ..."


def hog_fallback_note(engines: str | Path) -> str:
    """The line a run prints when ``auto`` found no detector in the artifacts and uses HOG. Why
    say it: HOG misses most people on real video and is the slowest stage, and nothing else
    tells the user a detector can be added."""
    return (
        f"note: {engines} has no person detector, so OpenCV's HOG is used as a fallback (slow, misses "
        f"many people); add one at build time: `python -m build.engines {ADD_DETECTOR}`, or run "
        "with --detector onnx:PATH"
    )


class HogDetector:
    """OpenCV's built-in HOG + linear SVM pedestrian detector: nothing to download.

    It finds upright people at least ~128 px tall in the (down-scaled) image
    and is slow on big frames, so frames are shrunk to ``width`` first. Its
    64x128 window has a margin around the body, trimmed off the returned box.
    """

    def __init__(self, width: int = 640, score_thr: float = 0.3, iou_thr: float = 0.45) -> None:
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())  # type: ignore[attr-defined]
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
            return Detections()
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
        return Detections(boxes, scores)

    def close(self) -> None:
        """Nothing held (the :class:`~runtime.detectors.base.Detector` protocol)."""


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
        per: dict[int, list[tuple[list[float], float]]] = defaultdict(list)
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
            return Detections()
        return Detections(
            np.array([b for b, _ in recs], np.float64), np.array([s for _, s in recs], np.float64)
        )

    def close(self) -> None:
        """Nothing held (the :class:`~runtime.detectors.base.Detector` protocol)."""
