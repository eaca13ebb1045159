"""Tracking alone, measured: ``python -m bench.track_eval --clip DIR`` (a ``build.synth --video`` folder).

Runs each tracker of ``runtime.tracking.tracker.TRACKERS`` over the clip's frames
with two box sources: the clip's own noisy detections (``detections.json``)
and the default detector (HOG), and prints IDF1, MOTA and ID switches
(py-motmetrics, via bench.video_eval) per pair. No pose nets run: this
isolates the tracker, so before/after numbers say what the tracker did.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np

from runtime.detectors.factory import HogDetector, JsonDetections
from runtime.io.safe_io import atomic_write_text
from runtime.io.sources import Frame
from runtime.tracking.tracker import TRACKERS

from .video_eval import load_clip_gt, tracking_metrics

Detect = Callable[[Frame], tuple[np.ndarray, np.ndarray]]


def clip_frames(video: str | Path) -> Iterable[np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    try:
        while True:
            ok, img = cap.read()
            if not ok:
                return
            yield img
    finally:
        cap.release()


def run_tracker(
    tracker_name: str, frames: Iterable[np.ndarray], detect: Detect, fps: float = 25.0, **kw: float
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per frame (ids, boxes) of ``TRACKERS[tracker_name](**kw)`` fed by ``detect``."""
    tracker = TRACKERS[tracker_name](**kw)
    out = {}
    for t, img in enumerate(frames):
        frame = Frame(t, t / fps, 0.0, img)
        boxes, scores = detect(frame)
        out[t] = (tracker.update(boxes, scores, t, img), np.asarray(boxes).reshape(-1, 4))
    return out


def _replay(boxes: list[tuple[np.ndarray, np.ndarray]]) -> Detect:
    """A detector that answers each frame with the boxes computed for it once, so every tracker is
    fed the same detections without running the detector again."""
    return lambda frame: boxes[frame.index]


def evaluate_clip(
    clip: str | Path,
    detectors: dict[str, Detect] | None = None,
    trackers: Iterable[str] = ("iou", "buffered"),
) -> list[tuple[str, dict[str, float]]]:
    clip = Path(clip)
    gt, per = load_clip_gt(clip / "person_keypoints.json")
    video = clip / gt["videos"][0]["file_name"]
    fps = float(gt["videos"][0]["fps"])
    n = len(gt["images"])
    detectors = detectors or {"clip boxes": JsonDetections(clip / "detections.json"), "HOG": HogDetector()}
    frames = list(clip_frames(video))
    if len(frames) != n:  # a truncated or re-encoded video: the missing frames would count as misses
        from runtime.errors import InputError

        raise InputError(
            f"{video} has {len(frames)} frames, its ground truth {n}",
            f"--clip {clip}",
            "regenerate the clip with python -m build.synth --video",
        )
    rows = []
    for dname, det in detectors.items():
        boxes_cache = [det(Frame(t, t / fps, 0.0, img)) for t, img in enumerate(frames)]
        for tname in trackers:
            hyp = run_tracker(tname, frames, _replay(boxes_cache), fps)
            rows.append((f"{dname}, {tname}", tracking_metrics(per, hyp, n)))
    return rows


def format_rows(rows: list[tuple[str, dict[str, float]]]) -> str:
    lines = [
        "| boxes, tracker | IDF1 | MOTA | ID switches | precision | recall |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in rows:
        lines.append(
            f"| {name} | {m['idf1']:.3f} | {m['mota']:.3f} | {m['num_switches']:.0f} | "
            f"{m['precision']:.3f} | {m['recall']:.3f} |"
        )
    return "\n".join(lines)


def clip_dir(text: str) -> Path:
    """--clip: a folder written by build.synth --video (its ground truth and boxes, checked before any frame)."""
    from runtime.cli.args import existing_dir

    clip = existing_dir(text)
    for name in ("person_keypoints.json", "detections.json"):
        if not (clip / name).is_file():
            raise argparse.ArgumentTypeError(
                f"{text} has no {name}; pass a folder written by python -m build.synth --video"
            )
    return clip


def main(argv: list[str]) -> int:
    from runtime.cli.args import OneLineParser, add_json_argument

    p = OneLineParser(
        prog="python -m bench.track_eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--clip", required=True, type=clip_dir, help="folder written by build.synth --video")
    p.add_argument("--no-hog", action="store_true", help="only the clip's own boxes")
    add_json_argument(p, "also write the numbers here (JSON)")
    a = p.parse_args(argv)
    dets = {"clip boxes": JsonDetections(a.clip / "detections.json")}
    if not a.no_hog:
        dets["HOG"] = HogDetector()
    rows = evaluate_clip(a.clip, dets)
    print(format_rows(rows))
    if a.json:
        atomic_write_text(Path(a.json), json.dumps(dict(rows), indent=2))
    return 0


if __name__ == "__main__":
    from runtime.errors import guarded

    raise SystemExit(guarded(main, prog="python -m bench.track_eval"))
