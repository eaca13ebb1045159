"""Scenes: several figures, occluders, truncation, and detector-like boxes.

Every random choice comes from the ``rng`` passed in, so one seed gives one
image, bit for bit (the writer seeds each image with ``[seed, index]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .render import background, clutter, degrade, draw_figure
from .skeleton import Figure, sample_figure


@dataclass
class Person:
    """One annotation, COCO style. ``keypoints`` [17,3] = x, y, v (0 unlabelled/out, 1 occluded, 2 visible).

    Keypoints cut off by the image border keep their true x, y with v = 0 and
    ``out_of_image`` True (CropCOCO-style evaluation can use them).
    """

    keypoints: np.ndarray
    out_of_image: np.ndarray
    bbox: np.ndarray  # xywh of the visible pixels
    area: float  # visible pixels
    front: bool
    known: np.ndarray  # [17] bool: the true x, y are meaningful (False: face parts seen from behind)

    @property
    def num_keypoints(self) -> int:
        return int((self.keypoints[:, 2] > 0).sum())


@dataclass
class Scene:
    image: np.ndarray  # HxWx3 BGR uint8
    people: list[Person]
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # detector xywh
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    source: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # person index, -1 false positive
    kinds: list[str] = field(default_factory=list)
    level: str = "easy"  # which :data:`LEVELS` entry drew it


@dataclass(frozen=True)
class Difficulty:
    """The knobs one scene is drawn with.

    Why three kinds of scene and not one mix of everything: DynPose's router
    can only pay off if the large net's advantage sits on crops it can pick
    out. With one uniform mix the large fixture was better by about the
    same ratio everywhere and no router beat random. Easy scenes (one or two
    people apart, plain backdrop, upright poses, tight boxes) and medium ones
    (the same layout on photo or cluttered backdrops with limb-like shapes,
    occluders, border cuts, bent poses, figures seen from behind) are where
    the large net's capacity pays; hard ones (a crowd of overlapping people
    on top of all that, loose boxes, seen through motion blur, low light and
    noise) defeat both nets: the paper's "extremely hard" crops that the
    small net may as well take.
    """

    people: tuple[int, int]  # inclusive range of figures
    spread: float  # hip x spread as a share of the width (small: overlapping crowd)
    p_border: float  # a figure straddles the image border
    p_occluder: float
    plain_background: bool
    max_clutter: int
    p_limb_like: float
    p_back: float
    p_lean: float
    box_shift: float  # detector jitter (share of the box)
    box_scale: float
    p_dup: float
    p_bad: float
    fp_rate: float
    degraded: bool = False  # motion blur, low light and noise over the whole image


EASY = Difficulty(
    people=(1, 2),
    spread=0.0,
    p_border=0.0,
    p_occluder=0.0,
    plain_background=True,
    max_clutter=2,
    p_limb_like=0.0,
    p_back=0.15,
    p_lean=0.0,
    box_shift=0.03,
    box_scale=0.05,
    p_dup=0.1,
    p_bad=0.03,
    fp_rate=0.2,
)
MEDIUM = Difficulty(
    people=(1, 2),
    spread=0.0,
    p_border=0.2,
    p_occluder=0.6,
    plain_background=False,
    max_clutter=10,
    p_limb_like=0.6,
    p_back=0.4,
    p_lean=0.3,
    box_shift=0.05,
    box_scale=0.1,
    p_dup=0.25,
    p_bad=0.1,
    fp_rate=0.5,
)
HARD = Difficulty(
    people=(3, 5),
    spread=0.18,
    p_border=0.3,
    p_occluder=0.9,
    plain_background=False,
    max_clutter=12,
    p_limb_like=0.6,
    p_back=0.4,
    p_lean=0.25,
    box_shift=0.05,
    box_scale=0.1,
    p_dup=0.35,
    p_bad=0.2,
    fp_rate=0.8,
    degraded=True,
)
LEVELS = {"easy": EASY, "medium": MEDIUM, "hard": HARD}
# share of scenes per level: a crowd holds ~3.5x the crops of a one-or-two-person scene,
# so about 26 % of crops are easy, 30 % medium and 44 % hard (close to half the crops
# gain little from the large net, DynPose's premise)
MIX = {"easy": 0.4, "medium": 0.4, "hard": 0.2}


def _place(
    rng: np.random.Generator, h: int, w: int, d: Difficulty, slot: tuple[float, float], crowd_x: float
) -> tuple[tuple[float, float], float]:
    """Hip position and height: in its own horizontal ``slot`` or around ``crowd_x`` (a crowd)."""
    if d.spread > 0:
        height = rng.uniform(0.45, 0.95) * h
        x = float(np.clip(crowd_x + rng.normal(0, d.spread), 0.05, 0.95)) * w
        y = rng.uniform(0.45, 0.6) * h
    else:  # whole figure in view: head ~0.5, feet ~0.55 of the height from the hips
        height = rng.uniform(0.5, 0.78) * h
        x = rng.uniform(*slot) * w
        y = rng.uniform(0.42, 0.48) * h
    if rng.random() < d.p_border:
        side = rng.integers(4)
        if side == 0:
            x = rng.uniform(-0.05, 0.1) * w
        elif side == 1:
            x = rng.uniform(0.9, 1.05) * w
        elif side == 2:
            y = h - rng.uniform(0.0, 0.35) * height  # legs cut at the bottom
        else:
            y = rng.uniform(0.25, 0.5) * height  # head cut at the top
    return (x, y), height


def _fit_in_view(
    rng: np.random.Generator,
    fig: Figure,
    centre: tuple[float, float],
    height: float,
    h: int,
    w: int,
    d: Difficulty,
) -> Figure:
    """Slide the figure (smaller if need be) until every keypoint is at least 4% of the height inside."""
    for _ in range(6):
        kp = fig.keypoints
        m = 0.04 * height + 0.3 * fig.torso_len  # the drawn limb ends and head reach past the joints
        lo, hi = kp.min(0) - m, kp.max(0) + m
        if (hi - lo <= np.array([w, h])).all():
            shift = np.maximum(0, -lo) - np.maximum(0, hi - np.array([w, h]))
            fig.keypoints = kp + shift
            fig.head_center = fig.head_center + shift
            return fig
        height *= 0.8
        fig = sample_figure(rng, centre, height, p_back=d.p_back, p_lean=d.p_lean)
    return fig


def make_scene(
    rng: np.random.Generator,
    photos: list[np.ndarray],
    hw: tuple[int, int] | None = None,
    n_people: int | None = None,
    level: str | None = None,
) -> Scene:
    """One scene; ``level`` None draws one of :data:`LEVELS` from ``rng`` with the :data:`MIX` shares."""
    if level is None:
        level = str(rng.choice(list(MIX), p=list(MIX.values())))
    if level not in LEVELS:
        raise ValueError(f"scene level {level!r} unknown; use one of {sorted(LEVELS)}")
    d = LEVELS[level]
    h, w = hw or (int(rng.integers(20, 31)) * 16, int(rng.integers(20, 33)) * 16)
    img = background(
        rng, h, w, photos, plain=d.plain_background, max_clutter=d.max_clutter, p_limb_like=d.p_limb_like
    )
    n = n_people if n_people is not None else int(rng.integers(d.people[0], d.people[1] + 1))
    crowd_x = rng.uniform(0.35, 0.65)
    slots = [(0.15 + 0.7 * k / n + 0.05, 0.15 + 0.7 * (k + 1) / n - 0.05) for k in range(n)]
    placed = sorted(
        (_place(rng, h, w, d, slots[k], crowd_x) for k in range(n)), key=lambda p: p[0][1] + 0.5 * p[1]
    )
    figs, masks = [], []
    for centre, height in placed:  # far (higher up) first
        fig = sample_figure(rng, centre, height, p_back=d.p_back, p_lean=d.p_lean)
        if d.p_border == 0:
            fig = _fit_in_view(rng, fig, centre, height, h, w, d)
        figs.append(fig)
        masks.append(draw_figure(img, fig, rng))
    occ = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(1, 4)) if rng.random() < d.p_occluder else 0):
        fig = figs[rng.integers(len(figs))]
        j = rng.integers(17)
        near = (fig.keypoints[j, 0], fig.keypoints[j, 1], fig.torso_len * rng.uniform(0.3, 0.8))
        clutter(img, rng, limb_like=rng.random() < 0.3, mask=occ, near=near)
    people = []
    above = occ > 0
    for i in range(len(figs) - 1, -1, -1):  # nearest first, accumulating what covers the rest
        people.append(_annotate(figs[i], masks[i], above, h, w))
        above = above | (masks[i] > 0)
    people.reverse()
    if d.degraded:
        img = degrade(img, rng)
    scene = Scene(img, people, level=level)
    detector_boxes(rng, scene, d)
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
    return Person(
        np.concatenate([kp, v[:, None]], axis=1), out, bbox, float(area), fig.front, fig.labelled.copy()
    )


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


def detector_boxes(rng: np.random.Generator, scene: Scene, d: Difficulty, p_miss: float = 0.03) -> None:
    """Fill ``scene.boxes``: jittered boxes per person, duplicates, broken boxes, false positives."""
    h, w = scene.image.shape[:2]
    boxes, scores, src, kinds = [], [], [], []
    for i, p in enumerate(scene.people):
        if p.num_keypoints == 0 or p.area < 300 or rng.random() < p_miss:
            continue
        boxes.append(_jitter(rng, p.bbox, d.box_shift, d.box_scale))
        scores.append(rng.uniform(0.6, 1.0))
        src.append(i)
        kinds.append("jitter")
        if rng.random() < d.p_dup:
            boxes.append(_jitter(rng, p.bbox, 2 * d.box_shift, 2 * d.box_scale))
            scores.append(rng.uniform(0.2, 0.8))
            src.append(i)
            kinds.append("duplicate")
        if rng.random() < d.p_bad:
            boxes.append(_bad_crop(rng, p.bbox))
            scores.append(rng.uniform(0.2, 0.7))
            src.append(i)
            kinds.append("bad_crop")
    for _ in range(rng.poisson(d.fp_rate)):
        bh = rng.uniform(0.15, 0.6) * h
        bw = bh * rng.uniform(0.3, 0.8)
        boxes.append(np.array([rng.uniform(0, w - bw), rng.uniform(0, h - bh), bw, bh]))
        scores.append(rng.uniform(0.05, 0.5))
        src.append(-1)
        kinds.append("false_positive")
    b = np.array(boxes, np.float64).reshape(-1, 4)
    # clip to the image the way a detector would report them
    x1, y1 = np.clip(b[:, 0], 0, w - 1), np.clip(b[:, 1], 0, h - 1)
    x2, y2 = np.clip(b[:, 0] + b[:, 2], 1, w), np.clip(b[:, 1] + b[:, 3], 1, h)
    scene.boxes = np.stack([x1, y1, np.maximum(x2 - x1, 1), np.maximum(y2 - y1, 1)], axis=1)
    scene.scores = np.array(scores, np.float64)
    scene.source = np.array(src, int)
    scene.kinds = kinds
