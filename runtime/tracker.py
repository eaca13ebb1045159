"""A small IoU tracker: ids for people across frames, boxes between detections.

Detection is the expensive part on small devices, so ``--det-every k`` runs
it on every k-th frame only. On those frames the detector's boxes are used
exactly as given (the tracker only names them); on the frames in between
each live track's box is carried forward along its last observed velocity.
Matching is greedy on IoU (largest overlap first), which is what the usual
"IoU tracker" baselines do and is plenty for people seen at video rate.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every xywh box in ``a`` [N,4] with every one in ``b`` [M,4]."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


@dataclass
class Track:
    id: int
    box: np.ndarray        # xywh at the last detection
    score: float
    frame: int             # frame index of the last detection
    velocity: np.ndarray   # xywh change per frame
    misses: int = 0        # detection rounds without a match


class IoUTracker:
    """``update`` on detection frames, ``predict`` on the others."""

    def __init__(self, iou_thr: float = 0.3, max_misses: int = 2, smoothing: float = 0.5) -> None:
        self.iou_thr, self.max_misses, self.smoothing = iou_thr, max_misses, smoothing
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, boxes: np.ndarray, scores: np.ndarray, frame: int) -> np.ndarray:
        """Assign ids to this frame's detections (returned in the detections' order)."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        ids = np.zeros(len(boxes), np.int64)
        prior = np.stack([self._at(t, frame) for t in self.tracks]) if self.tracks else np.zeros((0, 4))
        iou = iou_matrix(prior, boxes)
        matched_t: set[int] = set()
        if iou.size:
            for flat in np.argsort(-iou, axis=None):
                ti, di = divmod(int(flat), len(boxes))
                if iou[ti, di] < self.iou_thr:
                    break
                if ti in matched_t or ids[di]:
                    continue
                t = self.tracks[ti]
                gap = max(1, frame - t.frame)
                v = (boxes[di] - t.box) / gap
                t.velocity = self.smoothing * t.velocity + (1 - self.smoothing) * v
                t.box, t.score, t.frame, t.misses = boxes[di].copy(), float(scores[di]), frame, 0
                matched_t.add(ti)
                ids[di] = t.id
        for ti, t in enumerate(self.tracks):
            if ti not in matched_t:
                t.misses += 1
        self.tracks = [t for t in self.tracks if t.misses <= self.max_misses]
        for di in np.flatnonzero(ids == 0):
            self.tracks.append(Track(self._next_id, boxes[di].copy(), float(scores[di]), frame, np.zeros(4)))
            ids[di] = self._next_id
            self._next_id += 1
        return ids

    def predict(self, frame: int, image_hw: tuple[int, int] | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes, scores and ids of the tracks seen at the last detection round, moved to ``frame``."""
        live = [t for t in self.tracks if t.misses == 0]
        if not live:
            return np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)
        boxes = np.stack([self._at(t, frame) for t in live])
        if image_hw is not None:
            h, w = image_hw
            x1 = np.clip(boxes[:, 0], 0, w - 1)
            y1 = np.clip(boxes[:, 1], 0, h - 1)
            x2 = np.clip(boxes[:, 0] + boxes[:, 2], x1 + 1, w)
            y2 = np.clip(boxes[:, 1] + boxes[:, 3], y1 + 1, h)
            boxes = np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)
        return boxes, np.array([t.score for t in live]), np.array([t.id for t in live], np.int64)

    @staticmethod
    def _at(t: Track, frame: int) -> np.ndarray:
        b = t.box + t.velocity * max(0, frame - t.frame)
        b[2:] = np.maximum(b[2:], 1.0)
        return b
