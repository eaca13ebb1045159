"""Drawing: figures as filled, textured shapes; backgrounds; occluders.

Why filled shapes and not sticks: a top-down net must find the ends of limbs
and the parts of a face; sticks would make the task a line detector. Clothes
share one colour on both sides of the body, so left/right comes from the
face (front) or its absence (back), as on real people.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .skeleton import LIMBS, Figure

SKIN = np.array([[224, 192, 160], [180, 140, 110], [130, 95, 70], [90, 60, 45], [200, 170, 150]], np.float64)


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(30, 256), rng.integers(40, 256)]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def _skin(rng: np.random.Generator) -> tuple[int, int, int]:
    c = SKIN[rng.integers(len(SKIN))] + rng.normal(0, 12, 3)
    return tuple(int(v) for v in np.clip(c, 0, 255))


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(p[0] * 16)), int(round(p[1] * 16))


def _limb(
    img: np.ndarray,
    mask: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    wa: float,
    wb: float,
    colour: tuple[int, int, int],
) -> None:
    """Tapered quad from a to b with round ends (sub-pixel coordinates, shift 4)."""
    d = b - a
    n = np.hypot(*d)
    perp = np.array([-d[1], d[0]]) / n if n > 1e-6 else np.array([1.0, 0.0])
    quad = np.array(
        [_pt(a + perp * wa / 2), _pt(b + perp * wb / 2), _pt(b - perp * wb / 2), _pt(a - perp * wa / 2)],
        np.int32,
    )
    for tgt, col in ((img, colour), (mask, 255)):
        cv2.fillConvexPoly(tgt, quad, col, cv2.LINE_AA if tgt is img else cv2.LINE_8, shift=4)
        cv2.circle(tgt, _pt(a), int(wa * 8), col, -1, cv2.LINE_8, shift=4)
        cv2.circle(tgt, _pt(b), int(wb * 8), col, -1, cv2.LINE_8, shift=4)


def _texture(
    img: np.ndarray, mask: np.ndarray, rng: np.random.Generator, box: tuple[int, int, int, int]
) -> None:
    """Stripes, checks or noise blended into the masked clothing, inside ``box`` only."""
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return
    m = mask[y0:y1, x0:x1] > 0
    if not m.any():
        return
    kind = rng.integers(4)
    if kind == 0:
        return
    ys = np.arange(y0, y1, dtype=np.float32)[:, None]
    xs = np.arange(x0, x1, dtype=np.float32)[None, :]
    period = float(rng.uniform(4, 14))
    if kind == 1:  # stripes at any angle (an outer sum, never a full meshgrid)
        ang = rng.uniform(0, np.pi)
        pat = np.sin((xs * np.cos(ang) + ys * np.sin(ang)) * (2 * np.pi / period)) > 0
    elif kind == 2:  # checks
        pat = ((xs // period) + (ys // period)) % 2 > 0
    else:  # speckle
        pat = rng.random((y1 - y0, x1 - x0)) < 0.5
    sel = m & pat
    a = float(rng.uniform(0.3, 0.8))
    roi = img[y0:y1, x0:x1]
    roi[sel] = (roi[sel] * (1 - a) + np.array(_colour(rng), np.float32) * a).astype(np.uint8)


@dataclass(frozen=True)
class _Outfit:
    """One figure's colours and clothing choices, drawn once so both sides of the body match."""

    skin: tuple[int, int, int]
    shirt: tuple[int, int, int]
    pants: tuple[int, int, int]
    hair: tuple[int, int, int]
    shoes: tuple[int, ...]
    short_sleeves: bool
    shorts: bool
    arm_behind: int  # 0: none, 1/2: the left/right arm is drawn behind the torso

    @classmethod
    def sample(cls, rng: np.random.Generator) -> _Outfit:
        skin, shirt, pants, hair = _skin(rng), _colour(rng), _colour(rng), _colour(rng)
        shoes = tuple(int(c * 0.4) for c in _colour(rng))
        short_sleeves = bool(rng.random() < 0.4)
        shorts = bool(rng.random() < 0.25)
        return cls(skin, shirt, pants, hair, shoes, short_sleeves, shorts, int(rng.integers(3)))

    @property
    def back_arm(self) -> str | None:
        return {1: "l", 2: "r"}.get(self.arm_behind)


class _Painter:
    """Paints one figure's parts, back to front, into the image, its mask and its clothing mask
    (the clothing mask is where _texture may put a pattern)."""

    def __init__(self, img: np.ndarray, fig: Figure, outfit: _Outfit) -> None:
        h, w = img.shape[:2]
        self.img, self.fig, self.o = img, fig, outfit
        self.mask = np.zeros((h, w), np.uint8)
        self.cloth = np.zeros((h, w), np.uint8)
        self.kp, self.L = fig.keypoints, fig.torso_len

    def limb(self, name: str, colour: tuple[int, ...], widen: float = 1.0, to_cloth: bool = True) -> None:
        a, b, wa, wb = LIMBS[name]
        kp, L = self.kp, self.L
        _limb(self.img, self.mask, kp[a], kp[b], wa * L * widen, wb * L * widen, colour)
        if to_cloth:
            _limb(self.cloth, self.cloth, kp[a], kp[b], wa * L * widen, wb * L * widen, 255)

    def disc(self, p: np.ndarray, radius: float, colour: tuple[int, ...]) -> None:
        """A filled circle of ``radius`` (in torso lengths) on the image and the mask."""
        r = int(radius * self.L * 16)
        cv2.circle(self.img, _pt(p), r, colour, -1, cv2.LINE_AA, shift=4)
        cv2.circle(self.mask, _pt(p), r, 255, -1, shift=4)

    def arm(self, side: str) -> None:
        o = self.o
        self.limb(f"{side}_upper_arm", o.skin if o.short_sleeves else o.shirt, to_cloth=not o.short_sleeves)
        self.limb(f"{side}_forearm", o.skin, to_cloth=False)
        self.disc(self.kp[9 if side == "l" else 10], 0.09, o.skin)

    def legs(self, rng: np.random.Generator) -> None:
        o, kp, L = self.o, self.kp, self.L
        for side in ("l", "r"):
            self.limb(f"{side}_thigh", o.pants)
            self.limb(f"{side}_shin", o.skin if o.shorts else o.pants, to_cloth=not o.shorts)
            j = 15 if side == "l" else 16
            foot = kp[j] + self.fig.lateral * 0.1 * L * (1 if rng.random() < 0.5 else -1)
            _limb(self.img, self.mask, kp[j], foot, 0.12 * L, 0.1 * L, o.shoes)

    def torso(self, rng: np.random.Generator) -> None:
        """Shoulders to hips, slightly wider than the joints; sometimes an emblem on the front."""
        fig, kp, L = self.fig, self.kp, self.L
        quad = np.array([kp[5], kp[6], kp[12], kp[11]], np.float64)
        quad = quad + np.sign((quad - quad.mean(axis=0)) @ fig.lateral)[:, None] * (fig.lateral * 0.05 * L)
        poly = np.array([_pt(p) for p in quad], np.int32)
        cv2.fillConvexPoly(self.img, poly, self.o.shirt, cv2.LINE_AA, shift=4)
        cv2.fillConvexPoly(self.mask, poly, 255, shift=4)
        cv2.fillConvexPoly(self.cloth, poly, 255, shift=4)
        for j in (5, 6):
            self.disc(kp[j], 0.1, self.o.shirt)
        if fig.front and rng.random() < 0.5:  # a chest emblem: one more "this is the front" cue
            c = 0.5 * (kp[5] + kp[6]) * 0.6 + 0.5 * (kp[11] + kp[12]) * 0.4
            cv2.circle(self.img, _pt(c), int(0.08 * L * 16), _colour(rng), -1, cv2.LINE_AA, shift=4)

    def figure_box(self) -> tuple[int, int, int, int]:
        """The keypoints' box padded by the limbs' width, clipped to the image."""
        h, w = self.img.shape[:2]
        xs, ys = self.kp[:, 0], self.kp[:, 1]
        pad = int(0.4 * self.L) + 2
        return (
            max(0, int(xs.min()) - pad),
            max(0, int(ys.min()) - pad),
            min(w, int(xs.max()) + pad),
            min(h, int(ys.max()) + pad),
        )

    def head(self) -> None:
        """Neck, ears and head; from the front also the face (hairline, eyes, nose)."""
        fig, kp, L, o = self.fig, self.kp, self.L, self.o
        _limb(self.img, self.mask, 0.5 * (kp[5] + kp[6]), fig.head_center, 0.14 * L, 0.13 * L, o.skin)
        ax = (int(fig.head_axes[0] * 16), int(fig.head_axes[1] * 16))
        centre = _pt(fig.head_center)
        for k in (3, 4):  # ears sit on the head's outline
            self.disc(kp[k], 0.055, o.skin)
        cv2.ellipse(
            self.img,
            centre,
            ax,
            fig.head_angle,
            0,
            360,
            o.hair if not fig.front else o.skin,
            -1,
            cv2.LINE_AA,
            shift=4,
        )
        cv2.ellipse(self.mask, centre, ax, fig.head_angle, 0, 360, 255, -1, shift=4)
        if fig.front:
            self.face(centre, ax)

    def face(self, centre: tuple[int, int], ax: tuple[int, int]) -> None:
        fig, kp, o = self.fig, self.kp, self.o
        cv2.ellipse(self.img, centre, ax, fig.head_angle, 180, 360, o.hair, -1, cv2.LINE_AA, shift=4)
        hc = fig.head_center
        face_ax = (int(ax[0] * 0.85), int(ax[1] * 0.55))
        cv2.ellipse(
            self.img,
            _pt(hc + (kp[0] - hc) * 0.2),
            face_ax,
            fig.head_angle,
            0,
            360,
            o.skin,
            -1,
            cv2.LINE_AA,
            shift=4,
        )
        eye_r = max(1, int(0.035 * self.L * 16))
        for k in (1, 2):
            cv2.circle(self.img, _pt(kp[k]), eye_r, (30, 20, 20), -1, cv2.LINE_AA, shift=4)
        nose = tuple(int(c * 0.7) for c in o.skin)
        cv2.circle(self.img, _pt(kp[0]), int(0.04 * self.L * 16), nose, -1, cv2.LINE_AA, shift=4)


def draw_figure(img: np.ndarray, fig: Figure, rng: np.random.Generator) -> np.ndarray:
    """Draw ``fig`` into ``img`` (in place); returns the figure's uint8 mask.

    The random draws happen in one fixed order (outfit, feet, emblem, texture), so a seed gives
    the same picture.
    """
    p = _Painter(img, fig, _Outfit.sample(rng))
    p.legs(rng)
    back = p.o.back_arm
    if back:
        p.arm(back)
    p.torso(rng)
    for side in ("l", "r"):
        if side != back:
            p.arm(side)
    _texture(img, p.cloth, rng, p.figure_box())
    p.head()
    return p.mask


def background(
    rng: np.random.Generator,
    h: int,
    w: int,
    photos: list[np.ndarray],
    plain: bool = False,
    max_clutter: int = 9,
    p_limb_like: float = 0.5,
) -> np.ndarray:
    """Noise, a gradient or a crop of a real photo, plus clutter (some of it limb-like).

    ``plain``: a flat or gradient backdrop only (an easy scene: nothing on it
    looks like a body part).
    """
    kind = rng.integers(2) if plain else rng.integers(4) if photos else rng.integers(3)
    if kind == 0:
        img = np.empty((h, w, 3), np.uint8)
        img[:] = _colour(rng)
        img = cv2.add(img, rng.integers(0, 40, (h, w, 3), dtype=np.uint8))
    elif kind == 1:
        t = np.linspace(0, 1, w if rng.random() < 0.5 else h, dtype=np.float32)
        a, b = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
        ramp = a[None] * (1 - t[:, None]) + b[None] * t[:, None]
        img = np.broadcast_to(ramp[None] if len(t) == w else ramp[:, None], (h, w, 3)).astype(np.uint8).copy()
    elif kind == 2:
        small = rng.integers(0, 256, (max(2, h // 32), max(2, w // 32), 3), dtype=np.uint8)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    else:
        ph = photos[rng.integers(len(photos))]
        s = rng.uniform(0.5, 1.0)
        ch, cw = int(ph.shape[0] * s), int(ph.shape[1] * s)
        y0 = rng.integers(0, ph.shape[0] - ch + 1)
        x0 = rng.integers(0, ph.shape[1] - cw + 1)
        img = cv2.resize(ph[y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=cv2.INTER_AREA)
    for _ in range(rng.integers(0, max_clutter + 1)):
        clutter(img, rng, limb_like=rng.random() < p_limb_like)
    return img


def clutter(
    img: np.ndarray,
    rng: np.random.Generator,
    limb_like: bool = False,
    mask: np.ndarray | None = None,
    near: tuple[float, float, float] | None = None,
) -> None:
    """One random shape; ``near`` = (x, y, radius) places it over a person (an occluder)."""
    h, w = img.shape[:2]
    if near is None:
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.03, 0.25) * min(h, w)
    else:
        cx, cy = near[0] + rng.normal(0, near[2]), near[1] + rng.normal(0, near[2])
        r = near[2] * rng.uniform(0.3, 1.0)
    col = _colour(rng)
    targets = [(img, col)] + ([(mask, 255)] if mask is not None else [])
    if limb_like:
        ang = rng.uniform(0, np.pi)
        d = np.array([np.cos(ang), np.sin(ang)]) * r
        a, b = np.array([cx, cy]) - d, np.array([cx, cy]) + d
        wd = r * rng.uniform(0.15, 0.4)
        tmp = mask if mask is not None else np.zeros(img.shape[:2], np.uint8)
        _limb(img, tmp, a, b, wd, wd * rng.uniform(0.6, 1.0), col)
        return
    kind = rng.integers(3)
    aspect, angle = rng.uniform(0.3, 1.5), float(rng.uniform(0, 180))
    pts = cv2.convexHull((np.array([cx, cy]) + rng.normal(0, r, (5, 2))).astype(np.int32))
    for tgt, c in targets:
        if kind == 0:
            cv2.rectangle(tgt, (int(cx - r), int(cy - r * aspect)), (int(cx + r), int(cy + r)), c, -1)
        elif kind == 1:
            cv2.ellipse(tgt, (int(cx), int(cy)), (int(r), int(r * 0.6)), angle, 0, 360, c, -1)
        else:
            cv2.fillConvexPoly(tgt, pts, c)


def degrade(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Motion blur, low light and sensor noise strong enough that limbs merge into smears.

    Why: DynPose's *extremely hard* crops are ones no net can fix; a crowd
    seen through a shaking, dark, noisy camera is that (the keypoints keep
    their true positions, so they are still scored).
    """
    length = int(rng.integers(20, 41))
    k = np.zeros((length, length), np.float32)
    k[length // 2, :] = 1.0 / length
    rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
    k = cv2.warpAffine(k, rot, (length, length))
    out = cv2.filter2D(img.astype(np.float32), -1, k / max(float(k.sum()), 1e-6))
    out = out * rng.uniform(0.25, 0.45) + rng.normal(0, rng.uniform(25, 40), out.shape).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)
