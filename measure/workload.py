"""The benchmark workload: coco-mini's 4 images with their 118 real detector boxes.

Benchmarks, the trade-off sweep and their tests all load frames and make
crops here, through ``runtime.pose.preprocess`` exactly as ``PosePipeline`` does,
so a number measured on "the 118 boxes" always means the same crops.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from measure.gt_records import read_gt
from runtime.errors import InputError
from runtime.io.records import read_detections
from runtime.pose.preprocess import DEFAULT_MAX_BOXES, HW, INPUT_HW, CropWindows, sanitize_boxes


@dataclass
class Frame:
    image_id: int
    image: np.ndarray  # BGR
    boxes: np.ndarray  # [n,4] xywh as the detector gave them
    scores: np.ndarray  # [n]


@dataclass
class CropSet:
    """All kept crops of a list of frames, concatenated in frame order, at each net size asked for."""

    by_hw: dict[HW, np.ndarray]  # (H, W) -> [N,3,H,W]; row i is the same box at every size
    centers: np.ndarray  # [N,2] the windows at the first size
    scales: np.ndarray  # [N,2]
    frame_of: np.ndarray  # [N] index into the frames
    kept: list[np.ndarray]  # per frame: indices of the kept boxes into that frame's boxes
    windows: CropWindows  # every row's box: its window at any net size (decode at the net's own)

    @property
    def crops(self) -> np.ndarray:
        """The crops at the first size (the router's; INPUT_HW by default)."""
        return next(iter(self.by_hw.values()))

    def at(self, hw: HW) -> np.ndarray:
        if hw not in self.by_hw:
            have = ", ".join(f"{h}x{w}" for h, w in self.by_hw)
            raise ValueError(f"no crops at {hw[0]}x{hw[1]} in this set (have {have}); pass it in sizes")
        return self.by_hw[hw]

    def __len__(self) -> int:
        return len(self.crops)

    def frame_slice(self, i: int) -> slice:
        idx = np.flatnonzero(self.frame_of == i)
        return slice(int(idx[0]), int(idx[-1]) + 1) if idx.size else slice(0, 0)


def load_frames(coco_dir: str | Path) -> list[Frame]:
    """Frames sorted by image id, each with its detector boxes (category person only)."""
    d = Path(coco_dir)
    gt_path, det_path = d / "person_keypoints.json", d / "person_detections.json"
    for p in (gt_path, det_path):
        if not p.is_file():
            raise InputError(
                f"{p.name} not found",
                f"--data {d}",
                "pass a COCO-format folder with "
                "person_keypoints.json and person_detections.json (default ../shared/data/coco-mini)",
            )
    gt = read_gt(gt_path, "--data")  # strict: names the bad record and field
    dets = read_detections(det_path, "--data")[0]
    frames = []
    for im in sorted(gt["images"], key=lambda i: i["id"]):
        if not isinstance(im.get("file_name"), str):
            raise InputError(
                "image entry has no file_name", f"--data {gt_path} image {im['id']}", "fix the GT file"
            )
        img = cv2.imread(str(d / im["file_name"]))
        if img is None:
            raise InputError(
                "image unreadable or missing",
                f"--data {d / im['file_name']}",
                "restore the image or remove it from person_keypoints.json",
            )
        mine = [x for x in dets if x.key == im["id"]]
        frames.append(
            Frame(
                int(im["id"]),
                img,
                np.array([x.bbox for x in mine], np.float64).reshape(-1, 4),
                np.array([x.score for x in mine], np.float64),
            )
        )
    return frames


def n_boxes(frames: list[Frame]) -> int:
    return sum(len(f.boxes) for f in frames)


def make_cropset(
    frames: list[Frame], max_boxes: int | None = DEFAULT_MAX_BOXES, sizes: Sequence[HW] = (INPUT_HW,)
) -> CropSet:
    """Box hygiene + affine crops per frame at each of ``sizes`` (a pipeline's
    ``net_sizes(manifest)``), the pipeline's own preprocessing."""
    sizes = tuple(dict.fromkeys(sizes)) or (INPUT_HW,)
    crops: dict[HW, list[np.ndarray]] = {hw: [] for hw in sizes}
    centers, scales, frame_of, kept_all, boxes = [], [], [], [], []
    for i, f in enumerate(frames):
        b, kept, _ = sanitize_boxes(f.boxes, f.image.shape[:2], f.scores, None, max_boxes)
        windows = CropWindows(b)
        for hw, cr in windows.crops_by_size(f.image, sizes).items():
            crops[hw].append(cr)
        c, s = windows.at(sizes[0])
        boxes.append(b)
        centers.append(c)
        scales.append(s)
        frame_of.append(np.full(len(b), i))
        kept_all.append(kept)
    return CropSet(
        {hw: np.concatenate(crops[hw]) for hw in sizes},
        np.concatenate(centers),
        np.concatenate(scales),
        np.concatenate(frame_of),
        kept_all,
        CropWindows(np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32)),
    )


def subset_frames(frames: list[Frame], n_crops: int) -> list[Frame]:
    """The same frames with only their first boxes, ~``n_crops`` in all, shared out in
    proportion to each frame's box count (every frame keeps at least one box).

    The gates pair many short rounds instead of one long one: fewer crops per round
    keep the total time in budget while the pairing removes the noise.
    """
    total = n_boxes(frames)
    if n_crops >= total:
        return frames
    out = []
    for f in frames:
        k = max(1, round(len(f.boxes) * n_crops / total))
        out.append(Frame(f.image_id, f.image, f.boxes[:k], f.scores[:k]))
    return out


def synthetic_probmaps(n: int, k: int = 17, h: int = 64, w: int = 48, seed: int = 0) -> np.ndarray:
    """Sparsemax maps [n,k,h,w] of random logits with per-map sharpness (a few pixels of
    support up to broad blobs), the decode benchmark's input: random-weight nets give maps
    of no realistic sparsity, and the decode's cost depends on it."""
    from runtime.heads.decode import sparsemax

    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(n, k, h * w)) * rng.uniform(0.05, 8.0, size=(n, k, 1))).astype(np.float32)
    return sparsemax(logits).reshape(n, k, h, w)
