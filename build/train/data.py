"""Training crops made exactly the way the runtime makes them.

Why through ``runtime.pose.preprocess``: a net trained on crops cut any other way
(another padding, aspect or pixel-centre convention) loses accuracy at run
time for reasons no test would show. Each synthetic scene yields one crop per
detector-like box that belongs to a person (jittered, duplicated and broken
boxes alike: DynPose's box diversity), with the targets of that person.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from runtime.heads.grid import HEATMAP_HW, image_to_heatmap
from runtime.pose.preprocess import boxes_to_center_scale, make_crops

from ..synth.coco import load_photos
from ..synth.scene import Scene, _jitter, make_scene


@dataclass
class CropTargets:
    """Per-crop targets, numpy, stacked over crops.

    ``xy`` heatmap-pixel coords of the true keypoints; ``known`` = the
    coordinate is meaningful; ``inside`` = it lies in the crop window
    (ProbPose's presence); ``visible`` = COCO v == 2; ``labelled`` = COCO v > 0;
    ``area_hm`` = the person's area in heatmap pixels^2 (OKS scale).
    """

    xy: np.ndarray
    known: np.ndarray
    inside: np.ndarray
    visible: np.ndarray
    labelled: np.ndarray
    area_hm: np.ndarray

    def __len__(self) -> int:
        return len(self.xy)


def in_window(xy: np.ndarray, hm_hw: tuple[int, int] = HEATMAP_HW) -> np.ndarray:
    """Inside the crop window: heatmap pixel centres run 0..W-1, so the window is [-0.5, W-0.5)."""
    h, w = hm_hw
    return (xy[..., 0] >= -0.5) & (xy[..., 0] < w - 0.5) & (xy[..., 1] >= -0.5) & (xy[..., 1] < h - 0.5)


def targets_for(
    people_kp: np.ndarray, known: np.ndarray, area: np.ndarray, centers: np.ndarray, scales: np.ndarray
) -> CropTargets:
    """Targets of persons ``people_kp`` [N,17,3] (image x, y, v) seen through crops (centers, scales)."""
    xy = image_to_heatmap(people_kp[..., :2], centers, scales)
    hh, hw = HEATMAP_HW
    area_hm = area * (hw / scales[:, 0]) * (hh / scales[:, 1])
    inside = in_window(xy) & known
    v = people_kp[..., 2]
    return CropTargets(
        xy.astype(np.float32), known.astype(bool), inside, v == 2, v > 0, area_hm.astype(np.float32)
    )


def scene_crops(
    scene: Scene, rng: np.random.Generator | None = None, extra: int = 0
) -> tuple[np.ndarray, CropTargets] | None:
    """Crops of every box that belongs to a person, with that person's targets.

    ``extra`` more jittered boxes per annotated person (drawn from ``rng``)
    reuse the rendered scene: drawing costs about as much as a training step
    of the small net, so each scene should feed more than one crop.
    """
    keep = np.flatnonzero(scene.source >= 0)
    if len(keep) == 0:
        return None
    boxes = scene.boxes[keep]
    src = scene.source[keep]
    if extra and rng is not None:
        owners = np.repeat(np.unique(src), extra)
        more = [_jitter(rng, scene.people[i].bbox, 0.06, 0.12) for i in owners]
        boxes = np.concatenate([boxes, np.array(more).reshape(-1, 4)])
        src = np.concatenate([src, owners])
    centers, scales = boxes_to_center_scale(boxes)
    crops = make_crops(scene.image, centers, scales)
    people = [scene.people[i] for i in src]
    kp = np.stack([p.keypoints for p in people])
    known = np.stack([p.known for p in people])
    area = np.array([p.area for p in people], np.float32)
    return crops, targets_for(kp, known, area, centers, scales)


class SceneStream(torch.utils.data.IterableDataset):
    """Endless batches of fresh crops; scene i of worker w is drawn from ``[seed, w, i]``."""

    def __init__(self, seed: int, batch_size: int, photo_dir: str | None = None, extra: int = 1) -> None:
        super().__init__()
        self.seed, self.batch_size, self.photo_dir, self.extra = seed, batch_size, photo_dir, extra

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid = info.id if info is not None else 0
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        photos = load_photos(self.photo_dir)
        i = 0
        xs: list[np.ndarray] = []
        ts: list[CropTargets] = []
        n = 0
        while True:
            rng = np.random.default_rng([self.seed, wid, i])
            i += 1
            got = scene_crops(make_scene(rng, photos), rng, self.extra)
            if got is None:
                continue
            xs.append(got[0])
            ts.append(got[1])
            n += len(got[0])
            if n >= self.batch_size:
                yield collate(xs, ts, self.batch_size)
                xs, ts, n = [], [], 0


def collate(xs: list[np.ndarray], ts: list[CropTargets], batch_size: int) -> dict[str, torch.Tensor]:
    """Stack crops/targets into tensors, cut to exactly ``batch_size`` (the rest is dropped)."""

    def cat(name: str) -> torch.Tensor:
        return torch.from_numpy(np.concatenate([getattr(t, name) for t in ts])[:batch_size])

    return {
        "input": torch.from_numpy(np.concatenate(xs)[:batch_size]),
        **{k: cat(k) for k in ("xy", "known", "inside", "visible", "labelled", "area_hm")},
    }


def batches(seed: int, batch_size: int, workers: int = 1, photo_dir: str | None = None):
    """A DataLoader over :class:`SceneStream` (one worker overlaps drawing with training).

    Workers are spawned, not forked: a fork after OpenCV has started its
    thread pool in the parent (writing the evaluation sets does) deadlocks.
    """
    return torch.utils.data.DataLoader(
        SceneStream(seed, batch_size, photo_dir),
        batch_size=None,
        num_workers=workers,
        prefetch_factor=4 if workers else None,
        multiprocessing_context="spawn" if workers else None,
        persistent_workers=False,
    )
