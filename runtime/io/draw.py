"""Overlay drawing: skeletons, boxes, track ids, which net ran, and a stats corner.

Colours say which network produced a person (the point of DynPose is to see
the router at work): small net green, large net orange, dropped boxes grey.
Keypoints whose presence (probability of lying inside the crop window) is
below the threshold are drawn hollow, or hidden with ``hide_low``, so a
reader sees at a glance which joints the model itself doubts.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from runtime.pose.results import FrameResult
from runtime.tracking.ids import TrackIds

# COCO-17 limbs (0-based keypoint indices).
SKELETON = (
    (15, 13),
    (13, 11),
    (16, 14),
    (14, 12),
    (11, 12),
    (5, 11),
    (6, 12),
    (5, 6),
    (5, 7),
    (6, 8),
    (7, 9),
    (8, 10),
    (1, 2),
    (0, 1),
    (0, 2),
    (1, 3),
    (2, 4),
    (3, 5),
    (4, 6),
)
ROUTE_COLOURS = {0: (80, 200, 60), 1: (0, 140, 255), -1: (150, 150, 150)}  # BGR: small, large, dropped
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _label(
    img: np.ndarray, text: str, org: tuple[int, int], colour: tuple[int, int, int], scale: float
) -> None:
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    x, y = org
    y = max(y, th + base + 2)
    cv2.rectangle(img, (x, y - th - base - 2), (x + tw + 4, y), colour, -1)
    cv2.putText(img, text, (x + 2, y - base), FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)


def draw_persons(
    img: np.ndarray,
    res: FrameResult,
    track_ids: TrackIds | None = None,
    presence_thr: float = 0.5,
    kpt_thr: float = 0.0,
    hide_low: bool = False,
) -> np.ndarray:
    """Draw in place (and return) every person of ``res`` on ``img``."""
    h, w = img.shape[:2]
    scale = max(0.4, min(1.0, h / 900))
    thick = max(1, round(h / 360))
    radius = max(2, round(h / 240))
    for i in range(len(res)):
        route = int(res.route[i])
        colour = ROUTE_COLOURS.get(route, ROUTE_COLOURS[-1])
        if not np.isfinite(res.boxes[i]).all():
            continue  # a NaN/inf box (dropped) has nowhere to be drawn
        x, y, bw, bh = (int(round(v)) for v in np.clip(res.boxes[i], -1e5, 1e5))
        cv2.rectangle(img, (x, y), (x + bw, y + bh), colour, thick)
        tid = None if track_ids is None else int(track_ids[i])
        net = {0: "S", 1: "L"}.get(route, "drop")
        _label(img, f"#{tid} {net}" if tid is not None else net, (x, y), colour, scale)
        if route < 0:
            continue
        kp = res.keypoints[i]
        shown = np.isfinite(kp[:, :2]).all(axis=1) & (kp[:, 2] >= kpt_thr)
        low = res.presence[i] < presence_thr
        if hide_low:
            shown &= ~low
        pts = np.round(np.nan_to_num(kp[:, :2])).astype(np.int32)
        for a, b in SKELETON:
            if shown[a] and shown[b]:
                line_col = colour if not (low[a] or low[b]) else tuple(int(c * 0.5) for c in colour)
                cv2.line(img, tuple(pts[a]), tuple(pts[b]), line_col, thick, cv2.LINE_AA)
        for k in np.flatnonzero(shown):
            c = (int(pts[k][0]), int(pts[k][1]))
            if low[k]:
                cv2.circle(img, c, radius + 1, colour, max(1, thick // 2), cv2.LINE_AA)  # hollow: doubtful
            else:
                cv2.circle(img, c, radius, colour, -1, cv2.LINE_AA)
                cv2.circle(img, c, radius, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def draw_hud(img: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """Stats in the top-left corner on a dimmed panel, readable on any background."""
    h = img.shape[0]
    scale = max(0.45, min(0.8, h / 1000))
    (_, th), base = cv2.getTextSize("Ag", FONT, scale, 1)
    step = th + base + 4
    width = max(cv2.getTextSize(t, FONT, scale, 1)[0][0] for t in lines) + 12 if lines else 0
    y1 = step * len(lines) + 8
    roi = img[0 : min(y1, h), 0 : min(width, img.shape[1])]
    roi[:] = (roi * 0.35).astype(np.uint8)
    for j, t in enumerate(lines):
        cv2.putText(img, t, (6, 4 + step * (j + 1) - base), FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
    x = 6
    for route, name in ((0, "small net"), (1, "large net")):
        _label(img, name, (x, y1 + step), ROUTE_COLOURS[route], scale)
        x += cv2.getTextSize(name, FONT, scale, 1)[0][0] + 12
    return img
