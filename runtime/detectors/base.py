"""What every person detector is: a frame in, one :class:`Detections` out.

The video engine and ``runtime.images`` call any detector the same way, so the
network detectors (the artifacts' detector and ``onnx:PATH``, both
:class:`runtime.detectors.net.NetDetector`), HOG and precomputed JSON boxes
share this one protocol, this one result type and this one NMS.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt

from runtime.io.sources import Frame

F64 = npt.NDArray[np.float64]


class DetectorError(ValueError):
    """A detector (file, spec or option) cannot be used; the message says which and how to fix it."""


def _no_boxes() -> F64:
    return np.zeros((0, 4), np.float64)


def _no_scores() -> F64:
    return np.zeros(0, np.float64)


@dataclass
class Detections:
    """One frame's people: xywh boxes [M,4] and scores [M] in frame pixels (float64), a pose
    detector's own keypoints [M,K,3] (or None); ``invalid``: candidates the detector emitted
    unusable (:func:`runtime.detectors.yolo.invalid_candidates`), dropped and counted."""

    boxes: F64 = field(default_factory=_no_boxes)
    scores: F64 = field(default_factory=_no_scores)
    keypoints: F64 | None = None
    invalid: int = 0

    def __iter__(self) -> Iterator[F64]:  # ``boxes, scores = dets``
        return iter((self.boxes, self.scores))

    def __len__(self) -> int:
        return len(self.scores)


class Detector(Protocol):
    """A person detector: called once per frame; ``close`` frees what it holds (idempotent)."""

    def __call__(self, frame: Frame) -> Detections: ...

    def close(self) -> None: ...


def nms_xywh(
    boxes: npt.NDArray[np.floating],
    scores: npt.NDArray[np.floating],
    score_thr: float,
    iou_thr: float,
    top_k: int = 0,
) -> npt.NDArray[np.int64]:
    """Indices kept by non-maximum suppression (OpenCV's C++ NMS), best first; ``top_k`` > 0 caps them."""
    if len(scores) == 0:
        return np.zeros(0, np.int64)
    keep = cv2.dnn.NMSBoxes(
        np.asarray(boxes, np.float32).tolist(),
        np.asarray(scores, np.float32).tolist(),
        float(score_thr),
        float(iou_thr),
        top_k=int(top_k),
    )
    return np.asarray(keep, np.int64).reshape(-1)
