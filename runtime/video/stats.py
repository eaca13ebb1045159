"""Per-stage timing of the video job and its end-of-run summary.

Kept apart from the stage threads in runtime.video.engine so the numbers the live
corner, the progress bar, the summary JSON and bench/bench_video.py report
are computed in one place.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from runtime.io.sources import FrameSource
from runtime.pose.results import FrameResult

STAGES = ("decode", "detect", "pose", "draw", "write")
POSE_PARTS = ("preprocess", "router", "nets", "decode")


class Stats:
    """Per-stage busy time and counts for the live corner, the progress bar and the summary."""

    def __init__(self) -> None:
        self.ms: dict[str, list[float]] = defaultdict(list)
        self.frames = self.boxes = self.large = self.routed = self.live_dropped = 0
        self.read = 0  # frames the source handed out: read == frames + live_dropped after a full run
        self.t0 = time.perf_counter()
        self.fps = 0.0
        self._last: float | None = None

    def add(self, stage_ms: dict[str, float], res: FrameResult) -> None:
        for k, v in stage_ms.items():
            self.ms[k].append(v)
        for k in POSE_PARTS:
            if k in res.timings_ms:
                self.ms["pose." + k].append(res.timings_ms[k])
        self.frames += 1
        self.boxes += len(res)
        self.routed += int((res.route >= 0).sum())
        self.large += int((res.route == 1).sum())
        now = time.perf_counter()
        if self._last is not None:
            inst = 1.0 / max(now - self._last, 1e-6)
            self.fps = inst if self.fps == 0 else 0.9 * self.fps + 0.1 * inst
        self._last = now

    def mean(self, stage: str) -> float:
        v = self.ms.get(stage)
        return float(np.mean(v)) if v else 0.0

    def summary(self, source: FrameSource) -> dict[str, Any]:
        wall = time.perf_counter() - self.t0
        busy = {s: float(np.sum(self.ms.get(s, [0.0]))) for s in STAGES}
        total_busy = sum(busy.values()) or 1.0
        return {
            "source": source.spec,
            "source_fps": source.fps,
            "source_fps_reported": source.fps_reported,
            "frames": self.frames,
            "corrupt_frames": source.corrupt,
            "frames_read": self.read,
            "live_frames_dropped": self.live_dropped + getattr(source, "dropped", 0),
            "live_dropped_waiting": self.live_dropped,
            "live_dropped_by_reader": getattr(source, "dropped", 0),
            "reconnects": getattr(source, "reconnects", 0),
            "boxes": self.boxes,
            "persons": self.routed,
            "large_net_share": self.large / self.routed if self.routed else 0.0,
            "wall_s": wall,
            "fps": self.frames / wall if wall > 0 else 0.0,
            "mean_ms": {s: self.mean(s) for s in (*STAGES, *("pose." + p for p in POSE_PARTS))},
            "share_of_busy_time": {s: busy[s] / total_busy for s in STAGES},
            "ended_early": source.ended_early,
        }


def print_summary(s: dict[str, Any], out: Path) -> None:
    ms = s["mean_ms"]
    share = s["share_of_busy_time"]
    print(
        f"{s['frames']} frames in {s['wall_s']:.1f} s = {s['fps']:.2f} FPS; {s['persons']} people, "
        f"large net {s['large_net_share']:.0%}; corrupt frames skipped: {s['corrupt_frames']}"
        + (f"; live frames dropped: {s['live_frames_dropped']}" if s["live_frames_dropped"] else ""),
        file=sys.stderr,
    )
    print(
        "mean ms/frame: "
        + ", ".join(f"{k} {ms[k]:.1f} ({share[k]:.0%})" for k in STAGES)
        + "  | pose = "
        + ", ".join(f"{p} {ms['pose.' + p]:.1f}" for p in POSE_PARTS),
        file=sys.stderr,
    )
    print(f"outputs in {out}/", file=sys.stderr)
