"""Scenes: several figures, occluders, truncation, and detector-like boxes.

Every random choice comes from the ``rng`` passed in, so one seed gives one
image, bit for bit (the writer seeds each image with ``[seed, index]``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .render import background, clutter, draw_figure
from .skeleton import sample_figure


@dataclass
class Person:
    """One annotation, COCO style. ``keypoints`` [17,3] = x, y, v (0 unlabelled/out, 1 occluded, 2 visible).

    Keypoints cut off by the image border keep their true x, y with v = 0 and
    ``out_of_image`` True (CropCOCO-style evaluation can use them).
    """

    keypoints: np.ndarray
    out_of_image: np.ndarray
    bbox: np.ndarray        # xywh of the visible pixels
    area: float             # visible pixels
    front: bool
    known: np.ndarray       # [17] bool: the true x, y are meaningful (False: face parts seen from behind)

    @property
    def num_keypoints(self) -> int:
        return int((self.keypoints[:, 2] > 0).sum())


@dataclass
class Scene:
    image: np.ndarray                       # HxWx3 BGR uint8
    people: list[Person]
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))   # detector xywh
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    source: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # person index, -1 false positive
    kinds: list[str] = field(default_factory=list)


def _place(rng: np.random.Generator, h: int, w: int) -> tuple[tuple[float, float], float]:
    """Hip position and height; a quarter of the figures straddle a border."""
    height = rng.uniform(0.3, 1.0) * h
    x = rng.uniform(0.12, 0.88) * w
    y = rng.uniform(0.45, 0.6) * h
    if rng.random() < 0.25:
        side = rng.integers(4)
        if side == 0:
            x = rng.uniform(-0.05, 0.1) * w
        elif side == 1:
            x = rng.uniform(0.9, 1.05) * w
        elif side == 2:
            y = h - rng.uniform(0.0, 0.35) * height        # legs cut at the bottom
        else:
            y = rng.uniform(0.25, 0.5) * height             # head cut at the top
    return (x, y), height


def make_scene(rng: np.random.Generator, photos: list[np.ndarray], hw: tuple[int, int] | None = None,
               n_people: int | None = None, p_occluder: float = 0.6) -> Scene:
    h, w = hw or (int(rng.integers(20, 31)) * 16, int(rng.integers(20, 33)) * 16)
    img = background(rng, h, w, photos)
    n = n_people if n_people is not None else int(min(4, 1 + rng.poisson(1.0)))
    placed = sorted((_place(rng, h, w) for _ in range(n)), key=lambda p: p[0][1] + 0.5 * p[1])
    figs, masks = [], []
    for centre, height in placed:                     # far (higher up) first
        fig = sample_figure(rng, centre, height)
        figs.append(fig)
        masks.append(draw_figure(img, fig, rng))
    occ = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(1, 3)) if rng.random() < p_occluder else 0):
        fig = figs[rng.integers(len(figs))]
        j = rng.integers(17)
        near = (fig.keypoints[j, 0], fig.keypoints[j, 1], fig.torso_len * rng.uniform(0.3, 0.8))
        clutter(img, rng, limb_like=rng.random() < 0.3, mask=occ, near=near)
    people = []
    above = occ > 0
    for i in range(len(figs) - 1, -1, -1):            # nearest first, accumulating what covers the rest
        people.append(_annotate(figs[i], masks[i], above, h, w))
        above = above | (masks[i] > 0)
    people.reverse()
    scene = Scene(img, people)
    detector_boxes(rng, scene)
    return scene


def _annotate(fig, mask: np.ndarray, covered: np.ndarray, h: int, w: int) -> Person:
    kp = fig.keypoints
    out = (kp[:, 0] < 0) | (kp[:, 1] < 0) | (kp[:, 0] > w - 1) | (kp[:, 1] > h - 1)
    xi = np.clip(np.round(kp[:, 0]).astype(int), 0, w - 1)
    yi = np.clip(np.round(kp[:, 1]).astype(int), 0, h - 1)
    v = np.where(covered[yi, xi], 1, 2)
    v[out | ~fig.labelled] = 0
    vis = ((mask > 0) & ~covered).view(np.uint8)
    area = cv2.countNonZero(vis)
    bbox = np.array(cv2.boundingRect(vis), np.float64)
    if area == 0:
        v[:] = 0
    return Person(np.concatenate([kp, v[:, None]], axis=1), out, bbox, float(area), fig.front,
                  fig.labelled.copy())


def _jitter(rng: np.random.Generator, box: np.ndarray, shift: float, scale: float) -> np.ndarray:
    x, y, bw, bh = box
    cx, cy = x + bw / 2 + rng.normal(0, shift) * bw, y + bh / 2 + rng.normal(0, shift) * bh
    bw, bh = bw * np.exp(rng.normal(0, scale)), bh * np.exp(rng.normal(0, scale))
    return np.array([cx - bw / 2, cy - bh / 2, bw, bh])


def _bad_crop(rng: np.random.Generator, box: np.ndarray) -> np.ndarray:
    """Part of the person: a top, bottom, left or right share of the box (a detector's broken box)."""
    x, y, bw, bh = box
    f = rng.uniform(0.4, 0.7)
    side = rng.integers(4)
    if side == 0:
        return np.array([x, y, bw, bh * f])
    if side == 1:
        return np.array([x, y + bh * (1 - f), bw, bh * f])
    if side == 2:
        return np.array([x, y, bw * f, bh])
    return np.array([x + bw * (1 - f), y, bw * f, bh])


def detector_boxes(rng: np.random.Generator, scene: Scene, p_miss: float = 0.03, p_dup: float = 0.25,
                   p_bad: float = 0.15, fp_rate: float = 0.6) -> None:
    """Fill ``scene.boxes``: jittered boxes per person, duplicates, broken boxes, false positives."""
    h, w = scene.image.shape[:2]
    boxes, scores, src, kinds = [], [], [], []
    for i, p in enumerate(scene.people):
        if p.num_keypoints == 0 or p.area < 300 or rng.random() < p_miss:
            continue
        boxes.append(_jitter(rng, p.bbox, 0.04, 0.08)); scores.append(rng.uniform(0.6, 1.0))
        src.append(i); kinds.append("jitter")
        if rng.random() < p_dup:
            boxes.append(_jitter(rng, p.bbox, 0.1, 0.2)); scores.append(rng.uniform(0.2, 0.8))
            src.append(i); kinds.append("duplicate")
        if rng.random() < p_bad:
            boxes.append(_bad_crop(rng, p.bbox)); scores.append(rng.uniform(0.2, 0.7))
            src.append(i); kinds.append("bad_crop")
    for _ in range(rng.poisson(fp_rate)):
        bh = rng.uniform(0.15, 0.6) * h
        bw = bh * rng.uniform(0.3, 0.8)
        boxes.append(np.array([rng.uniform(0, w - bw), rng.uniform(0, h - bh), bw, bh]))
        scores.append(rng.uniform(0.05, 0.5)); src.append(-1); kinds.append("false_positive")
    b = np.array(boxes, np.float64).reshape(-1, 4)
    # clip to the image the way a detector would report them
    x1, y1 = np.clip(b[:, 0], 0, w - 1), np.clip(b[:, 1], 0, h - 1)
    x2, y2 = np.clip(b[:, 0] + b[:, 2], 1, w), np.clip(b[:, 1] + b[:, 3], 1, h)
    scene.boxes = np.stack([x1, y1, np.maximum(x2 - x1, 1), np.maximum(y2 - y1, 1)], axis=1)
    scene.scores = np.array(scores, np.float64)
    scene.source = np.array(src, int)
    scene.kinds = kinds
