"""The end-of-run account: boxes in, posed, dropped by reason - one line, every run.

Why: box hygiene removes boxes (NaN, off-image, over the cap, ...) on purpose;
this line (and the ``dropped`` field on each record) is what makes that
visible instead of silent. Reasons come from ``runtime.pose.preprocess`` plus
``image_unreadable`` from the images CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.pose.results import FrameResult


@dataclass
class RunAccount:
    boxes: int = 0
    posed: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    det_invalid_frames: int = 0  # frames whose detector output held NaN/inf or non-probability scores

    def add_detections(self, dets: object) -> None:
        """A detector's answer for one frame: count it when the detector emitted unusable candidates
        (runtime.detectors.yolo.invalid_candidates; they never become boxes, so no other count sees them)."""
        if getattr(dets, "invalid", 0):
            self.det_invalid_frames += 1

    def add_result(self, res: FrameResult) -> None:
        self.boxes += len(res)
        self.posed += int((res.route >= 0).sum())
        for reason in res.dropped.values():
            self.drop(reason)

    def drop(self, reason: str, n: int = 1) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + n

    def add_dropped_boxes(self, reason: str, n: int) -> None:
        """Boxes that never reached the pipeline (e.g. their image could not be read)."""
        self.boxes += n
        self.drop(reason, n)

    def line(self) -> str:
        n_drop = sum(self.dropped.values())
        why = ", ".join(f"{k} {v}" for k, v in sorted(self.dropped.items()))
        bad = (
            f"; detector output invalid (NaN/inf or scores outside [0, 1]) in {self.det_invalid_frames} "
            "frames, those candidates dropped"
            if self.det_invalid_frames
            else ""
        )
        return (
            f"boxes in {self.boxes}, posed {self.posed}, dropped {n_drop}"
            + (f" ({why})" if why else "")
            + bad
        )

    def as_dict(self) -> dict[str, Any]:
        d = {"boxes": self.boxes, "posed": self.posed, "dropped": dict(sorted(self.dropped.items()))}
        return {**d, "det_invalid_frames": self.det_invalid_frames} if self.det_invalid_frames else d
