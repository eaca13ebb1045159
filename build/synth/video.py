"""Synthetic video clips with ground truth: ``python -m build.synth --video OUT [--seconds 10] ...``.

Writes ``OUT/<name>.mp4``, ``OUT/person_keypoints.json`` (PoseTrack-like COCO:
one image per frame with ``frame_id``, annotations with ``track_id``, cut-off
keypoints kept with v = 0 and ``out_of_image``) and ``OUT/detections.json``
(per-frame detector-like boxes, keyed by the 0-based ``frame`` that
``runtime.video --detector json:PATH`` reads).

Why a video of the training figures: the fixture nets know only these
figures, so a clip of them is the one input on which the whole product
(routing, presence, tracking, smoothing) can be shown working and scored
against exact ground truth. Frame ``t`` is a pure function of (seed, t): the
motion is planned once per person (``motion.py``) and every frame redraws
the figures with their own fixed generators (same clothes every frame).

A clip and its ground truth are written together or not at all
(build/staging.py, merged into an existing folder): a full disk or a kill
keeps the folder's previous clip. A clip of an earlier run under another
``--name`` whose ground truth this run replaces is removed and named.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from runtime.errors import OutputError
from runtime.safe_io import atomic_write_text

from ..staging import StagedDir
from .coco import categories, load_photos
from .motion import Motion, plan_motion
from .render import background, clutter, draw_figure
from .scene import EASY, Person, Scene, _annotate, detector_boxes
from .skeleton import pose_figure

# Detector noise per frame: the easy level's jitter, fewer duplicates and false positives.
VIDEO_BOXES = replace(EASY, p_dup=0.05, p_bad=0.02, fp_rate=0.08)


@dataclass(frozen=True)
class ClipSpec:
    seconds: float = 10.0
    fps: float = 25.0
    width: int = 640
    height: int = 480
    people: int = 5
    seed: int = 0

    @property
    def frames(self) -> int:
        return max(1, int(round(self.seconds * self.fps)))


@dataclass
class FrameTruth:
    """One rendered frame: the image, its people (with track ids and masks) and detector boxes."""

    index: int
    image: np.ndarray
    track_ids: list[int]
    people: list[Person]
    masks: list[np.ndarray]  # each person's own drawn pixels (before anyone covers them)
    boxes: np.ndarray
    scores: np.ndarray
    box_track: list[int | None]  # which track each box came from (None: false positive)
    kinds: list[str]


class Clip:
    """The planned clip: backdrop, occluder and per-person motion; :meth:`frames` renders it."""

    def __init__(self, spec: ClipSpec, photos: list[np.ndarray] | None = None) -> None:
        self.spec = spec
        s, h, w = spec, spec.height, spec.width
        rng = np.random.default_rng([s.seed, 0])
        self.moving = bool(rng.random() < 0.5)
        wide = int(w * 1.5) if self.moving else w
        self.backdrop = background(
            rng, h, wide, photos or [], plain=bool(rng.random() < 0.5), max_clutter=5, p_limb_like=0.2
        )
        self.occluder = bool(rng.random() < 0.5)
        n_walk = max(1, int(round(0.6 * s.people)))
        self.motions: list[Motion] = [
            plan_motion(
                np.random.default_rng([s.seed, 1, k]), k + 1, s.frames, s.fps, w, h, walker=k < n_walk
            )
            for k in range(s.people)
        ]
        self.motions.sort(key=lambda m: m.height)  # far (small) first: nearer people cover them

    def _backdrop(self, t: int) -> np.ndarray:
        w = self.spec.width
        if not self.moving:
            return self.backdrop.copy()
        span = self.backdrop.shape[1] - w
        period = max(2.0, 8.0 * self.spec.fps)
        off = int(round(span * 0.5 * (1 - np.cos(2 * np.pi * t / period))))  # a slow pan, back and forth
        return self.backdrop[:, off : off + w].copy()

    def render(self, t: int) -> FrameTruth:
        s = self.spec
        h, w = s.height, s.width
        img = self._backdrop(t)
        figs, masks, ids = [], [], []
        for m in self.motions:
            fig = pose_figure(m.pose_at(t), (float(m.x[t]), float(m.y[t])), m.height)
            kp = fig.keypoints
            reach = 0.5 * fig.torso_len
            if kp[:, 0].max() + reach < 0 or kp[:, 0].min() - reach > w:
                continue  # wholly outside: nobody to draw or annotate
            mask = draw_figure(img, fig, np.random.default_rng([s.seed, 2, m.track_id]))
            if not mask.any():
                continue
            figs.append(fig)
            masks.append(mask)
            ids.append(m.track_id)
        occ = np.zeros((h, w), np.uint8)
        if self.occluder:
            clutter(img, np.random.default_rng([s.seed, 3]), mask=occ)
        people: list[Person] = []
        above = occ > 0
        for i in range(len(figs) - 1, -1, -1):  # nearest first, accumulating what covers the rest
            people.append(_annotate(figs[i], masks[i], above, h, w))
            above = above | (masks[i] > 0)
        people.reverse()
        scene = Scene(img, people)
        detector_boxes(np.random.default_rng([s.seed, 4, t]), scene, VIDEO_BOXES)
        return FrameTruth(
            t,
            img,
            ids,
            people,
            masks,
            scene.boxes,
            scene.scores,
            [ids[int(k)] if k >= 0 else None for k in scene.source],
            scene.kinds,
        )

    def frames(self) -> Iterator[FrameTruth]:
        for t in range(self.spec.frames):
            yield self.render(t)


def _r(v: float) -> float:
    return round(float(v), 2)


def write_clip(
    out_dir: str | Path,
    spec: ClipSpec = ClipSpec(),
    photos: list[np.ndarray] | None = None,
    name: str = "synth",
) -> dict[str, Path]:
    """Render ``spec`` into ``out_dir``; returns the paths (video, keypoints, detections)."""
    out = Path(out_dir)
    paths = {
        "video": out / f"{name}.mp4",
        "keypoints": out / "person_keypoints.json",
        "detections": out / "detections.json",
    }
    stale = _earlier_clip(paths["keypoints"], paths["video"].name)
    with StagedDir(out, merge=True, replace=tuple(p.name for p in stale)) as st:
        _render(st.path, spec, photos, name, paths)
        st.commit()
    for p in stale:
        print(f"removed {p}: the clip of an earlier run, whose ground truth this clip replaced")
    return paths


def _earlier_clip(gt_path: Path, new_name: str) -> list[Path]:
    """The clip an existing ground-truth file describes, when it has another name than the new one."""
    try:
        old = json.loads(gt_path.read_text())["videos"][0]["file_name"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return []
    p = gt_path.parent / str(old)
    return [p] if old != new_name and p.parent == gt_path.parent and p.is_file() else []


def _render(
    out: Path, spec: ClipSpec, photos: list[np.ndarray] | None, name: str, paths: dict[str, Path]
) -> None:
    video = out / paths["video"].name
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), spec.fps, (spec.width, spec.height))
    if not writer.isOpened():
        raise OutputError(
            "OpenCV cannot open the video writer (mp4v)",
            str(paths["video"]),
            "check the folder is writable and has space",
        )
    images, anns, dets = [], [], []
    clip = Clip(spec, photos)
    try:
        for fr in clip.frames():
            writer.write(fr.image)
            img_id = fr.index + 1
            images.append(
                {
                    "id": img_id,
                    "frame_id": fr.index,
                    "vid_id": 1,
                    "file_name": f"{name}.mp4",
                    "height": spec.height,
                    "width": spec.width,
                    "timestamp": round(fr.index / spec.fps, 4),
                }
            )
            for tid, p in zip(fr.track_ids, fr.people):
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": img_id,
                        "track_id": tid,
                        "category_id": 1,
                        "iscrowd": 0,
                        "keypoints": [_r(v) for v in p.keypoints.reshape(-1)],
                        "num_keypoints": p.num_keypoints,
                        "bbox": [_r(v) for v in p.bbox],
                        "area": p.area,
                        "out_of_image": [int(o) for o in p.out_of_image],
                        "facing": "front" if p.front else "back",
                    }
                )
            for b, sc, tid, kind in zip(fr.boxes, fr.scores, fr.box_track, fr.kinds):
                dets.append(
                    {
                        "frame": fr.index,
                        "image_id": img_id,
                        "category_id": 1,
                        "bbox": [_r(v) for v in b],
                        "score": round(float(sc), 4),
                        "kind": kind,
                        "track_id": tid,
                    }
                )
    finally:
        writer.release()
    # OpenCV's writer reports no write error (a full disk included): count what the file holds.
    cap = cv2.VideoCapture(str(video))
    got = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    cap.release()
    if got != spec.frames:
        raise OutputError(
            f"the video holds {got} of {spec.frames} frames (disk full?)",
            str(paths["video"]),
            "free disk space or choose another --video folder",
        )
    gt = {
        "info": {
            "description": f"dynpose-trt synthetic clip, seed {spec.seed}",
            "version": "1",
            "spec": spec.__dict__,
        },
        "videos": [
            {
                "id": 1,
                "file_name": paths["video"].name,
                "fps": spec.fps,
                "frames": spec.frames,
                "width": spec.width,
                "height": spec.height,
            }
        ],
        "images": images,
        "annotations": anns,
        "categories": categories(),
    }
    atomic_write_text(out / paths["keypoints"].name, json.dumps(gt))
    atomic_write_text(out / paths["detections"].name, json.dumps(dets))


def long_clip(out_dir: str | Path, frames: int = 600, seed: int = 1, fps: float = 25.0) -> dict[str, Path]:
    """A long clip (default 600 frames, 24 s) for FPS benchmarks and crash tests; rendered, not stored."""
    return write_clip(
        out_dir, ClipSpec(seconds=frames / fps, fps=fps, people=7, seed=seed), load_photos(None)
    )


def _file_stem(text: str) -> str:
    """--name: a plain file name (the clip is written inside --video, never elsewhere)."""
    if not text or "/" in text or "\\" in text or text in (".", "..") or "\0" in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not a plain file name (no folders); e.g. synth")
    return text


def photos_dir(text: str) -> str:
    """--photos: '' (no photos) or an existing folder, checked before any frame is drawn."""
    if text and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(
            f"{text} is not an existing folder (pass '' for synthetic backgrounds)"
        )
    return text


def build_parser() -> argparse.ArgumentParser:
    from runtime.cli.args import OneLineParser, nonneg_int, number, output_dir

    p = OneLineParser(
        prog="python -m build.synth --video",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--video", required=True, type=output_dir, help="output folder")
    p.add_argument("--seconds", type=number(float, 0.04, 3600), default=10.0, help="clip length (default 10)")
    p.add_argument("--fps", type=number(float, 1, 120), default=25.0, help="frame rate (default 25)")
    p.add_argument("--width", type=number(int, 64, 4096), default=640)
    p.add_argument("--height", type=number(int, 64, 4096), default=480)
    p.add_argument("--people", type=number(int, 1, 50), default=5, help="people in the clip (default 5)")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument(
        "--name", default="synth", type=_file_stem, help="video file name without .mp4 (default synth)"
    )
    p.add_argument(
        "--photos",
        default=None,
        type=photos_dir,
        help="folder of .jpg backdrops (default ../shared/data/coco-mini; '' for none)",
    )
    return p


def main(argv: list[str]) -> int:
    from runtime.errors import InputError

    a = build_parser().parse_args(argv)
    spec = ClipSpec(a.seconds, a.fps, a.width, a.height, a.people, a.seed)
    try:
        photos = load_photos(a.photos)
    except FileNotFoundError as e:
        raise InputError(
            str(e).split(";")[0], "--photos", "name a folder of .jpg files, or '' for none"
        ) from None
    paths = write_clip(a.video, spec, photos, a.name)
    print("\n".join(f"{k}: {v}" for k, v in paths.items()))
    return 0
