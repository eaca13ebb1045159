"""Per-frame results: arrays in the caller's box order, plus export helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from runtime.heads.probfields import ProbExtras

ROUTE_NAMES = {-1: "dropped", 0: "small", 1: "large"}


@dataclass
class FrameResult:
    """One row per input box, in input order.

    ``route`` is 0 (small net), 1 (large net) or -1 (box dropped by hygiene;
    its keypoints are NaN and ``dropped`` says why). ``keypoints`` are image
    coordinates with the keypoint score as third column; ``presence`` is the
    calibrated probability that the keypoint lies inside the crop window (1
    for heatmap nets, which have no presence head).
    """

    boxes: np.ndarray  # [N,4] xywh as given
    keypoints: np.ndarray  # [N,17,3]
    presence: np.ndarray  # [N,17]
    route: np.ndarray  # [N] int8
    router_score: np.ndarray  # [N]
    box_score: np.ndarray  # [N]
    dropped: dict[int, str] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    prob: ProbExtras | None = None  # probability-map nets' extra fields (runtime.heads.probfields)

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def large_fraction(self) -> float:
        valid = self.route >= 0
        return float((self.route[valid] == 1).mean()) if valid.any() else 0.0

    def split(self, sizes: list[int]) -> list[FrameResult]:
        """One result per view of a multi-view submission (rows in view order), each with its own
        row numbering; timings are the shared tick's."""
        out, start = [], 0
        for n in sizes:
            sl = slice(start, start + n)
            dropped = {i - start: why for i, why in self.dropped.items() if start <= i < start + n}
            out.append(
                FrameResult(
                    self.boxes[sl],
                    self.keypoints[sl],
                    self.presence[sl],
                    self.route[sl],
                    self.router_score[sl],
                    self.box_score[sl],
                    dropped,
                    dict(self.timings_ms),
                    None if self.prob is None else self.prob.take(sl),
                )
            )
            start += n
        if start != len(self):
            raise ValueError(f"split sizes {sizes} do not add up to {len(self)} rows")
        return out

    def persons(self) -> list[dict[str, Any]]:
        """JSON-ready records (one per input box)."""
        out = []
        for i in range(len(self)):
            rec: dict[str, Any] = {
                "index": i,
                "box": [round(float(v), 2) if np.isfinite(v) else None for v in self.boxes[i]],
                "route": ROUTE_NAMES[int(self.route[i])],
                "router_score": None
                if np.isnan(self.router_score[i])
                else round(float(self.router_score[i]), 5),
            }
            if self.route[i] >= 0:  # a dropped box has no keypoints at all, only the reason
                kp = self.keypoints[i].astype(np.float64)
                rec["keypoints"] = np.round(np.nan_to_num(kp, nan=-1.0, posinf=-1.0, neginf=-1.0), 2).tolist()
                rec["presence"] = np.round(np.nan_to_num(self.presence[i].astype(np.float64)), 4).tolist()
                rec.update(self.prob.person(i) if self.prob is not None else {})
            else:
                rec["dropped"] = self.dropped.get(i, "dropped")
            out.append(rec)
        return out

    def to_coco_records(self, image_id: int, det_index: Any = None) -> list[dict[str, Any]]:
        """One COCO record per input box, in input order (the images CLI's output).

        Posed boxes are :meth:`to_coco` records plus their ``bbox``; a dropped box keeps
        ``image_id``, ``bbox`` (non-finite numbers as null) and ``score`` and says
        ``"dropped": "<reason>"`` with no ``keypoints`` (bench.coco_eval skips such
        records). ``det_index`` (one per box) is the record's position in the detections file.
        """
        posed = iter(self.to_coco(image_id))
        out = []
        for i in range(len(self)):
            box = [None if not np.isfinite(v) else round(float(v), 2) for v in self.boxes[i]]
            if self.route[i] >= 0:
                rec = next(posed)
                rec["bbox"] = box
            else:
                s = float(self.box_score[i])
                rec = {
                    "image_id": int(image_id),
                    "category_id": 1,
                    "bbox": box,
                    "score": round(s, 5) if np.isfinite(s) else None,
                    "dropped": self.dropped.get(i, "dropped"),
                }
            if det_index is not None:
                rec["det_index"] = int(det_index[i])
            out.append(rec)
        return out

    def person_quality(self, i: int, kp: np.ndarray) -> float:
        """The person's keypoint-quality factor of its COCO score.

        A probability-map person (ProbMapHead) uses its mean predicted OKS (``quality``): COCO
        AP ranks people by how good their pose is, which is what that head estimates, and its
        keypoint scores are expected-OKS maxima (~0.03 for diffuse sparsemax maps), which the
        heatmap rule below would zero, ranking every large-net person last. A heatmap person
        uses MMPose's rescoring: the mean of its keypoint scores above 0.2.
        """
        if self.prob is not None and self.prob.has[i]:
            q = float(np.nanmean(self.prob.oks[i])) if np.isfinite(self.prob.oks[i]).any() else float("nan")
            if np.isfinite(q):
                return float(np.clip(q, 0.0, 1.0))
        conf = kp[:, 2]
        vis = conf > 0.2
        return float(conf[vis].mean()) if vis.any() else 0.0

    def to_coco(self, image_id: int) -> list[dict[str, Any]]:
        """COCO keypoint results; the person score is box score x :meth:`person_quality`,
        dropped boxes are left out."""
        res = []
        for i in map(int, np.flatnonzero(self.route >= 0)):
            kp = self.keypoints[i].copy()
            bad = ~np.isfinite(kp).all(axis=1)  # NaN/inf maps decode to NaN: score 0
            kp[bad] = 0.0
            res.append(
                {
                    "image_id": int(image_id),
                    "category_id": 1,
                    "keypoints": np.round(kp.astype(np.float64), 3).reshape(-1).tolist(),
                    "score": float(self.box_score[i]) * self.person_quality(i, kp),
                    **(self.prob.person(i) if self.prob is not None else {}),
                }
            )
        return res
