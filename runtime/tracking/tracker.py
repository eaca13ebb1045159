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
    box: np.ndarray  # xywh at the last detection
    score: float
    frame: int  # frame index of the last detection
    velocity: np.ndarray  # xywh change per frame
    misses: int = 0  # detection rounds without a match


class IoUTracker:
    """``update`` on detection frames, ``predict`` on the others."""

    def __init__(self, iou_thr: float = 0.3, max_misses: int = 2, smoothing: float = 0.5) -> None:
        self.iou_thr, self.max_misses, self.smoothing = iou_thr, max_misses, smoothing
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(
        self, boxes: np.ndarray, scores: np.ndarray, frame: int, image: np.ndarray | None = None
    ) -> np.ndarray:
        """Assign ids to this frame's detections (returned in the detections' order); ``image`` is unused."""
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
        for new in np.flatnonzero(ids == 0):
            di = int(new)
            self.tracks.append(Track(self._next_id, boxes[di].copy(), float(scores[di]), frame, np.zeros(4)))
            ids[di] = self._next_id
            self._next_id += 1
        return ids

    def predict(
        self, frame: int, image_hw: tuple[int, int] | None = None
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
        b: np.ndarray = t.box + t.velocity * max(0, frame - t.frame)
        b[2:] = np.maximum(b[2:], 1.0)
        return b


@dataclass
class BufferedTrack:
    id: int
    box: np.ndarray  # xywh at the last match
    score: float
    frame: int  # frame of the last match
    velocity: np.ndarray  # xywh per frame (only x, y are extrapolated)
    hist: np.ndarray | None  # appearance (runtime.tracking.appearance), updated slowly
    hits: int = 1


class BufferedTracker:
    """The default tracker: holds ids through crossings and short occlusions.

    Why more than :class:`IoUTracker` (kept as the measured "before"): when two
    people cross, their boxes overlap and IoU alone hands one's id to the
    other; when one walks behind another it vanishes for a second and comes
    back as a new id. So, in the manner of ByteTrack: (1) confident boxes
    (score >= ``high_thr``) are matched first, on IoU with each track's
    position extrapolated along its velocity plus ``appearance`` x a colour
    histogram similarity; (2) the leftover weak boxes can only continue
    tracks seen in the last detection round, on IoU alone; (3) tracks not
    matched stay in a buffer for ``buffer`` frames and can be re-found by a
    box near where they should be that looks like them; (4) only confident
    boxes start tracks, and not one that mostly repeats a box already matched
    this frame (a duplicate): other boxes get id 0, "untracked". Matching is
    greedy on the combined score, best pair first.
    """

    def __init__(
        self,
        iou_thr: float = 0.3,
        buffer: int = 30,
        appearance: float = 0.5,
        high_thr: float = 0.5,
        reid_sim: float = 0.75,
        reid_dist: float = 0.6,
        dup_iou: float = 0.6,
        smoothing: float = 0.7,
    ) -> None:
        self.iou_thr, self.buffer, self.appearance, self.high_thr = iou_thr, buffer, appearance, high_thr
        self.reid_sim, self.reid_dist, self.dup_iou, self.smoothing = reid_sim, reid_dist, dup_iou, smoothing
        self.tracks: list[BufferedTrack] = []
        self._next_id = 1
        self._last_frame: int | None = None

    def _hists(self, image: np.ndarray | None, boxes: np.ndarray) -> list[np.ndarray | None]:
        if image is None or self.appearance <= 0:
            return [None] * len(boxes)
        from runtime.tracking.appearance import box_histogram

        return [box_histogram(image, b) for b in boxes]

    def _scores(
        self, boxes: np.ndarray, hists: list[np.ndarray | None], frame: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """[T, N] match score (-inf where a pair is not allowed) and IoU with the extrapolated tracks."""
        from runtime.tracking.appearance import similarity

        T, N = len(self.tracks), len(boxes)
        if T == 0 or N == 0:
            return np.full((T, N), -np.inf), np.zeros((T, N))
        prior = np.stack([self._at(t, frame) for t in self.tracks])
        iou = iou_matrix(prior, boxes)
        app = np.array([[similarity(t.hist, h) for h in hists] for t in self.tracks]).reshape(T, N)
        c_p = prior[:, :2] + prior[:, 2:] / 2
        c_b = boxes[:, :2] + boxes[:, 2:] / 2
        dist = np.hypot(*(c_p[:, None] - c_b[None]).transpose(2, 0, 1)) / np.maximum(prior[:, 3:4], 1.0)
        size = np.abs(np.log(np.maximum(boxes[None, :, 3], 1) / np.maximum(prior[:, None, 3], 1)))
        ok = iou >= self.iou_thr
        ok |= (app >= self.reid_sim) & (dist <= self.reid_dist) & (size < 0.4)  # re-found near its path
        return np.where(ok, iou + self.appearance * app, -np.inf), iou

    def _greedy(self, score: np.ndarray, rows: list[int], cols: list[int]) -> list[tuple[int, int]]:
        pairs: list[tuple[int, int]] = []
        if not rows or not cols:
            return pairs
        sub = score[np.ix_(rows, cols)]
        used_r, used_c = set(), set()
        for flat in np.argsort(-sub, axis=None):
            r, c = divmod(int(flat), len(cols))
            if not np.isfinite(sub[r, c]):
                break
            if r in used_r or c in used_c:
                continue
            used_r.add(r)
            used_c.add(c)
            pairs.append((rows[r], cols[c]))
        return pairs

    def update(
        self, boxes: np.ndarray, scores: np.ndarray, frame: int, image: np.ndarray | None = None
    ) -> np.ndarray:
        """Ids for this frame's boxes (detector order; 0 = untracked). ``image`` enables appearance."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        ids = np.zeros(len(boxes), np.int64)
        hists = self._hists(image, boxes)
        score, iou = self._scores(boxes, hists, frame)
        high = [i for i in range(len(boxes)) if scores[i] >= self.high_thr]
        low = [i for i in range(len(boxes)) if scores[i] < self.high_thr]
        pairs = self._greedy(score, list(range(len(self.tracks))), high)
        done_t = {ti for ti, _ in pairs}
        recent = [ti for ti, t in enumerate(self.tracks) if ti not in done_t and t.frame == self._last_frame]
        pairs += self._greedy(np.where(iou >= self.iou_thr, iou, -np.inf), recent, low)
        for ti, di in pairs:
            t = self.tracks[ti]
            gap = max(1, frame - t.frame)
            v = (boxes[di] - t.box) / gap
            t.velocity = self.smoothing * t.velocity + (1 - self.smoothing) * v
            t.box, t.score, t.frame, t.hits = boxes[di].copy(), float(scores[di]), frame, t.hits + 1
            h = hists[di]
            if h is not None:
                t.hist = h if t.hist is None else 0.8 * t.hist + 0.2 * h
            ids[di] = t.id
        self.tracks = [t for t in self.tracks if frame - t.frame <= self.buffer]
        matched = boxes[ids > 0]
        for di in high:
            if ids[di] or (len(matched) and iou_matrix(boxes[di : di + 1], matched).max() >= self.dup_iou):
                continue
            self.tracks.append(
                BufferedTrack(
                    self._next_id, boxes[di].copy(), float(scores[di]), frame, np.zeros(4), hists[di]
                )
            )
            ids[di] = self._next_id
            matched = np.concatenate([matched, boxes[di : di + 1]])
            self._next_id += 1
        self._last_frame = frame
        return ids

    def predict(
        self, frame: int, image_hw: tuple[int, int] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes, scores and ids of the tracks matched at the last detection round, moved to ``frame``."""
        live = [t for t in self.tracks if t.frame == self._last_frame]
        if not live:
            return np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)
        boxes = np.stack([self._at(t, frame) for t in live])
        if image_hw is not None:
            boxes = clip_boxes(boxes, image_hw)
        return boxes, np.array([t.score for t in live]), np.array([t.id for t in live], np.int64)

    @staticmethod
    def _at(t: BufferedTrack, frame: int) -> np.ndarray:
        b = t.box.copy()
        b[:2] += t.velocity[:2] * min(max(0, frame - t.frame), 15)  # far extrapolation only drifts
        return b


def clip_boxes(boxes: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    h, w = image_hw
    x1 = np.clip(boxes[:, 0], 0, w - 1)
    y1 = np.clip(boxes[:, 1], 0, h - 1)
    x2 = np.clip(boxes[:, 0] + boxes[:, 2], x1 + 1, w)
    y2 = np.clip(boxes[:, 1] + boxes[:, 3], y1 + 1, h)
    return np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)


TRACKERS = {"buffered": BufferedTracker, "iou": IoUTracker}
