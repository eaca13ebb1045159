"""Articulated COCO-17 stick figures: plausible proportions and joint angles.

Why a hand-made 2-D body model: the fixtures need keypoints whose position
is decided by what is drawn (limb ends, face parts) and whose left/right is
decided by context (the face says front or back), so a net has something
real to learn and capacity has something to buy. Units are the torso length
L (mid-shoulder to mid-hip); the caller scales and places the figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KEYPOINT_NAMES = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
SKELETON = [
    [16, 14],
    [14, 12],
    [17, 15],
    [15, 13],
    [12, 13],
    [6, 12],
    [7, 13],
    [6, 7],
    [6, 8],
    [7, 9],
    [8, 10],
    [9, 11],
    [2, 3],
    [1, 2],
    [1, 3],
    [2, 4],
    [3, 5],
    [4, 6],
    [5, 7],
]
FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))

# limb name -> (joint a, joint b, width at a, width at b) in torso lengths
LIMBS = {
    "l_upper_arm": (5, 7, 0.17, 0.14),
    "r_upper_arm": (6, 8, 0.17, 0.14),
    "l_forearm": (7, 9, 0.14, 0.11),
    "r_forearm": (8, 10, 0.14, 0.11),
    "l_thigh": (11, 13, 0.26, 0.19),
    "r_thigh": (12, 14, 0.26, 0.19),
    "l_shin": (13, 15, 0.19, 0.14),
    "r_shin": (14, 16, 0.19, 0.14),
}


@dataclass
class Figure:
    """One posed figure in image pixels.

    ``front`` says the face is drawn (nose and eyes are annotated only then);
    ``head`` is the head ellipse (centre, half axes, angle in degrees).
    """

    keypoints: np.ndarray  # [17,2] float64 image px
    labelled: np.ndarray  # [17] bool: part of the annotation (False: eyes/nose from behind)
    front: bool
    torso_len: float  # L in px
    head_center: np.ndarray
    head_axes: tuple[float, float]
    head_angle: float
    lateral: np.ndarray  # unit vector toward image right in the body frame
    up: np.ndarray  # unit vector from hips to shoulders
    yaw_cos: float


def _rot(v: np.ndarray, deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def _limb_angle(rng: np.random.Generator, arm: bool) -> tuple[float, float]:
    """(angle of the upper segment away from 'down' toward the outside, bend of the lower one)."""
    if arm:
        mode = rng.random()
        if mode < 0.55:
            upper = rng.normal(12, 12)  # hanging
        elif mode < 0.85:
            upper = rng.uniform(20, 110)  # out / forward
        else:
            upper = rng.uniform(110, 175)  # raised
        bend = rng.uniform(0, 150) * rng.choice([-1, 1])
    else:
        mode = rng.random()
        upper = rng.normal(4, 8) if mode < 0.7 else rng.uniform(-25, 80)
        bend = rng.uniform(0, 110) * rng.choice([-1, 1]) if rng.random() < 0.6 else rng.normal(0, 5)
    return float(upper), float(bend)


@dataclass
class Pose:
    """The pose knobs of one figure, apart from where it stands and how tall it is.

    Why split from :func:`sample_figure`: a video interpolates poses between
    key poses over time, so the geometry must be a pure function of these
    numbers. Angles in degrees; limbs in the order left arm, right arm, left
    leg, right leg; ``upper`` is measured from "down" toward the person's
    outside, ``bend`` turns the lower segment, ``fs1``/``fs2`` foreshorten the
    upper/lower segment; ``hip_offset`` is in torso lengths.
    """

    front: bool
    yaw_cos: float
    yaw_sin: float
    lean: float
    hip_offset: np.ndarray  # [2]
    tilt: float
    upper: np.ndarray  # [4]
    bend: np.ndarray  # [4]
    fs1: np.ndarray  # [4]
    fs2: np.ndarray  # [4]


def sample_pose(rng: np.random.Generator, p_back: float = 0.3, p_lean: float = 0.07) -> Pose:
    """A random :class:`Pose` (the draws :func:`sample_figure` has always made, in the same order)."""
    front = bool(rng.random() >= p_back)
    yaw_cos = float(rng.uniform(0.35, 1.0))
    yaw_sin = float(np.sqrt(1 - yaw_cos**2) * rng.choice([-1, 1]))
    lean = rng.normal(0, 10) if rng.random() >= p_lean else rng.uniform(-70, 70)
    hip_offset = rng.normal(0, 0.1, 2)
    tilt = rng.normal(0, 12)
    upper, bend, fs1, fs2 = (np.zeros(4) for _ in range(4))
    for k, arm in enumerate((True, True, False, False)):
        upper[k], bend[k] = _limb_angle(rng, arm)
        fs1[k] = rng.uniform(0.55, 1.0) if rng.random() < 0.35 else 1.0
        fs2[k] = rng.uniform(0.55, 1.0) if rng.random() < 0.35 else 1.0
    return Pose(front, yaw_cos, yaw_sin, float(lean), hip_offset, float(tilt), upper, bend, fs1, fs2)


def sample_figure(
    rng: np.random.Generator,
    center: tuple[float, float],
    height_px: float,
    p_back: float = 0.3,
    p_lean: float = 0.07,
) -> Figure:
    """A random pose whose standing height is about ``height_px``, hips near ``center``.

    ``p_back`` (seen from behind: left/right only from the missing face) and
    ``p_lean`` (bent far over) are the two pose knobs a scene's difficulty turns.
    """
    return pose_figure(sample_pose(rng, p_back, p_lean), center, height_px)


def pose_figure(pose: Pose, center: tuple[float, float], height_px: float) -> Figure:
    """The :class:`Figure` of ``pose`` standing about ``height_px`` tall with its hips near ``center``."""
    L = height_px / 3.4
    front, yaw_cos, yaw_sin = pose.front, pose.yaw_cos, pose.yaw_sin
    f = 1.0 if front else -1.0  # person's left is image right when facing us
    up = _rot(np.array([0.0, -1.0]), pose.lean)
    lat = _rot(np.array([1.0, 0.0]), pose.lean)
    hip_mid = np.array(center, np.float64) + np.asarray(pose.hip_offset, np.float64) * L
    sh_mid = hip_mid + up * L
    kp = np.zeros((17, 2))
    for side, (sh, hp) in ((+1, (5, 11)), (-1, (6, 12))):  # +1 = person's left
        s = side * f
        kp[sh] = sh_mid + lat * s * 0.40 * L * yaw_cos
        kp[hp] = hip_mid + lat * s * 0.27 * L * yaw_cos
    # head: tilted a little, face parts shifted by the yaw
    hu = _rot(up, pose.tilt)
    hl = _rot(lat, pose.tilt)
    neck = 0.25 * L
    head_r = 0.21 * L
    hc = sh_mid + hu * (neck + head_r)
    shift = yaw_sin * 0.45 * head_r
    kp[0] = hc - hu * 0.15 * head_r + hl * shift * 1.3
    for side, (eye, ear) in ((+1, (1, 3)), (-1, (2, 4))):
        s = side * f
        kp[eye] = hc + hu * 0.22 * head_r + hl * (s * 0.38 * head_r * yaw_cos + shift)
        kp[ear] = hc + hu * 0.1 * head_r + hl * s * 0.98 * head_r * yaw_cos + hl * shift * 0.3
    # limbs: angles are measured from "down" (-up), positive toward the person's outside
    for k, (side, chain, arm) in enumerate(
        ((+1, (5, 7, 9), True), (-1, (6, 8, 10), True), (+1, (11, 13, 15), False), (-1, (12, 14, 16), False))
    ):
        outward = side * f
        d1 = _rot(-up, -pose.upper[k] * outward)
        d2 = _rot(d1, pose.bend[k])
        l1, l2 = (0.62, 0.56) if arm else (0.92, 0.88)
        a, b, c = chain
        kp[b] = kp[a] + d1 * l1 * L * pose.fs1[k]
        kp[c] = kp[b] + d2 * l2 * L * pose.fs2[k]
    labelled = np.ones(17, bool)
    if not front:
        labelled[[0, 1, 2]] = False
    return Figure(
        kp,
        labelled,
        front,
        L,
        hc,
        (head_r * max(yaw_cos, 0.8), head_r * 1.15),
        float(np.degrees(np.arctan2(hu[0], -hu[1]))),
        lat,
        up,
        yaw_cos,
    )
