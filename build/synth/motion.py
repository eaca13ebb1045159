"""Motion for synthetic clips: where each figure is, which way it faces and how it stands, per frame.

Why precomputed arrays per person: every frame of a clip must be a pure
function of (seed, frame index), so a clip can be cut, replayed or checked
frame by frame; so the whole trajectory (position, facing, gait phase, key
poses) is drawn once from the person's own generator and frames only look
it up. Smooth by construction: positions integrate a speed that ramps,
facing follows its target through a first-order lag, poses blend between key
poses with a smoothstep, and the walking gait is a sine of the distance
walked (legs and arms in counter-phase, knees bending on the swing).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .skeleton import Pose, sample_pose

LEFT_SIDE = np.array([+1, -1, +1, -1])  # limb order of Pose: l arm, r arm, l leg, r leg
LEG_SWING, ARM_SWING, KNEE_SWING = 24.0, 16.0, 30.0  # degrees at full walking speed


@dataclass
class Motion:
    """One person's whole clip: per-frame hip position, height, facing angle, speed and gait phase."""

    track_id: int
    x: np.ndarray  # [T] hip x (px)
    y: np.ndarray  # [T] hip y (px)
    height: float  # standing height (px): the person's depth, fixed
    yaw: np.ndarray  # [T] facing angle (rad): 0 faces the camera, +-pi shows the back
    speed: np.ndarray  # [T] px per frame, signed (+ walks toward image right)
    phase: np.ndarray  # [T] gait phase (rad)
    key_frames: np.ndarray  # [K] frames of the key poses
    key_poses: list[Pose]

    def pose_at(self, t: int) -> Pose:
        """The pose at frame ``t``: blended key poses + gait + facing."""
        k = int(np.searchsorted(self.key_frames, t, side="right")) - 1
        k = min(max(k, 0), len(self.key_poses) - 2)
        f0, f1 = self.key_frames[k], self.key_frames[k + 1]
        a = float(np.clip((t - f0) / max(1, f1 - f0), 0, 1))
        a = a * a * (3 - 2 * a)  # smoothstep: no velocity jumps at keys
        p0, p1 = self.key_poses[k], self.key_poses[k + 1]
        mix = lambda u, v: (1 - a) * np.asarray(u, np.float64) + a * np.asarray(v, np.float64)  # noqa: E731
        yaw = float(self.yaw[t])
        c = max(0.25, abs(np.cos(yaw)))  # side-on for a moment while turning
        front = bool(np.cos(yaw) >= 0)
        f = 1.0 if front else -1.0
        upper, bend = mix(p0.upper, p1.upper), mix(p0.bend, p1.bend)
        # Gait, in image rotation r (degrees); Pose.upper turns by -r * outward, bend by r directly.
        walk = min(1.0, abs(float(self.speed[t])) / max(1e-6, 0.004 * self.height))
        d = np.sign(self.speed[t]) or 1.0
        ph = float(self.phase[t])
        leg_ph = np.array([0.0, 0.0, 0.0, np.pi]) + ph
        arm_ph = np.array([np.pi, 0.0, 0.0, 0.0]) + ph
        r = np.zeros(4)
        r[2:] = d * LEG_SWING * walk * np.sin(leg_ph[2:])
        r[:2] = d * ARM_SWING * walk * np.sin(arm_ph[:2])
        upper = upper - r * LEFT_SIDE * f
        knee = -d * KNEE_SWING * walk * np.maximum(0.0, np.sin(leg_ph[2:] + np.pi / 2))
        bend = bend.copy()
        bend[2:] = bend[2:] + knee
        # Side-on (turning between front and back) the limbs hang straight: left and right swap image
        # sides at that instant, and straight limbs make the swap a small step instead of a mirror jump.
        n = float(np.clip((0.7 - abs(np.cos(yaw))) / 0.5, 0, 1))
        n = n * n * (3 - 2 * n)
        upper, bend = (1 - n) * upper, (1 - n) * bend
        return Pose(
            front=front,
            yaw_cos=c,
            yaw_sin=float(np.sign(np.sin(yaw)) * np.sqrt(1 - c * c)),
            lean=float(mix(p0.lean, p1.lean)),
            hip_offset=mix(p0.hip_offset, p1.hip_offset),
            tilt=float(mix(p0.tilt, p1.tilt)),
            upper=upper,
            bend=bend,
            fs1=mix(p0.fs1, p1.fs1),
            fs2=mix(p0.fs2, p1.fs2),
        )


def _calm(p: Pose, walker: bool) -> Pose:
    """A key pose someone can hold while walking or standing: upright, legs near straight."""
    legs = 0.25 if walker else 0.45
    upper, bend = p.upper.copy(), p.bend.copy()
    upper[2:] *= legs
    bend[2:] *= legs
    if walker:
        upper[:2] = np.minimum(upper[:2], 100.0)  # arms may rise, not stay overhead while walking
    return replace(
        p,
        lean=float(np.clip(p.lean, -8, 8)),
        tilt=float(np.clip(p.tilt, -15, 15)),
        upper=upper,
        bend=bend,
        hip_offset=np.clip(p.hip_offset, -0.05, 0.05),
        fs1=np.where(np.arange(4) >= 2, 1.0, p.fs1),
        fs2=np.where(np.arange(4) >= 2, 1.0, p.fs2),
    )


def _turn(target: np.ndarray, max_step: float, frames: float) -> np.ndarray:
    """Follow ``target`` at most ``max_step`` per frame, then low-pass (time constant ``frames``):
    a facing target that jumps becomes a turn of steady speed with rounded ends."""
    out = np.empty_like(target)
    a = 1.0 / max(1.0, frames)
    v = u = float(target[0])
    for i, x in enumerate(target):
        u += float(np.clip(x - u, -max_step, max_step))
        v += a * (u - v)
        out[i] = v
    return out


def plan_motion(
    rng: np.random.Generator, track_id: int, n_frames: int, fps: float, w: int, h: int, walker: bool
) -> Motion:
    """One person's trajectory over ``n_frames``.

    A walker crosses the frame (entering and leaving past the border), may stop
    half way, turn round and walk back; an idler stands in view, shifts about,
    turns to show its back and changes pose. Depth sets the height and how low
    the hips sit, so nearer people are larger and are drawn over farther ones.
    """
    depth = float(rng.uniform(0, 1))
    height = (0.5 + 0.25 * depth) * h
    hip_y = (0.42 + 0.06 * depth) * h + rng.normal(0, 0.01 * h)
    t = np.arange(n_frames, dtype=np.float64)
    margin = 0.35 * height
    if walker:
        d = float(rng.choice([-1, 1]))
        cross_s = rng.uniform(4.0, 8.0)
        v = (w + 2 * margin) / (cross_s * fps)
        t0 = rng.uniform(-0.5, 0.55) * n_frames  # < 0: already walking when the clip starts
        speed = np.full(n_frames, d * v)
        if rng.random() < 0.35:  # stop, turn round, walk back
            ts = rng.uniform(0.3, 0.7) * n_frames
            ramp = np.clip((t - ts) / (0.8 * fps), 0, 1)
            s = ramp * ramp * (3 - 2 * ramp)
            speed = d * v * np.cos(np.pi * s)
        start_x = -margin if d > 0 else w + margin
        speed = np.where(t >= t0, speed, 0.0)
        # A walker that starts before the clip is already part way across.
        x = start_x + d * v * max(0.0, -t0) + np.cumsum(speed)
        base = np.deg2rad(rng.uniform(25, 60))
        yaw_target = np.sign(speed + 1e-9 * d) * base
        if rng.random() < 0.3:  # walks seen from behind
            yaw_target = np.sign(yaw_target) * (np.pi - base)
    else:
        x0 = rng.uniform(0.15, 0.85) * w
        amp, period = rng.uniform(0.0, 0.08) * w, rng.uniform(4.0, 9.0) * fps
        x = x0 + amp * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
        speed = np.gradient(x) if n_frames > 1 else np.zeros(n_frames)
        base = np.deg2rad(rng.uniform(-40, 40))
        back = (np.pi if rng.random() < 0.5 else -np.pi) - base  # one way round for this person: no spins
        yaw_target = np.full(n_frames, base)
        for _ in range(int(rng.integers(0, 3))):  # turn to show the back for a while
            a = int(rng.uniform(0, 0.8) * n_frames)
            yaw_target[a : a + int(rng.uniform(1.0, 3.0) * fps)] = back
    yaw = _turn(yaw_target, 2.5 / fps, 0.15 * fps)  # about a second per half turn
    phase = np.cumsum(np.abs(speed)) / (0.45 * height) * np.pi
    step = rng.uniform(1.0, 2.2, size=n_frames // max(1, int(fps)) + 4) * fps
    key_frames = np.concatenate([[-fps], -fps + np.cumsum(step)]).astype(np.int64)
    key_frames = key_frames[: int(np.searchsorted(key_frames, n_frames)) + 2]
    key_poses = [_calm(sample_pose(rng, p_back=0.0, p_lean=0.0), walker) for _ in key_frames]
    y = hip_y + 0.01 * h * np.sin(phase * 2)  # a little bob with each step
    return Motion(track_id, x, y, height, yaw, speed, phase, key_frames, key_poses)
