"""Overlay option ``--draw-regions``: each keypoint's credible region as its ellipse.

Drawn from the result fields (runtime.heads.probfields), so the overlay shows exactly
what the JSON says: the region for the largest requested mass (0.9 by default),
in the colour of the net that produced the person, thin, under the skeleton.
Persons from heatmap nets have no regions and are left alone.
"""

from __future__ import annotations

import cv2
import numpy as np

from runtime.io.draw import ROUTE_COLOURS
from runtime.pose.results import FrameResult


def draw_regions(img: np.ndarray, res: FrameResult, mass: float | None = None) -> np.ndarray:
    """Draw in place (and return) the ``mass`` region (default: the largest requested) of every keypoint."""
    ex = res.prob
    if ex is None or not ex.masses or not ex.has_regions.any():
        return img
    qi = int(np.argmax(ex.masses)) if mass is None else ex.masses.index(mass)
    thick = max(1, round(img.shape[0] / 720))
    for i in np.flatnonzero(ex.has_regions):
        colour = tuple(int(c * 0.8) for c in ROUTE_COLOURS.get(int(res.route[i]), ROUTE_COLOURS[-1]))
        for cx, cy, a, b, ang in ex.ellipse[i, qi]:
            if not np.isfinite([cx, cy, a, b, ang]).all():
                continue
            cv2.ellipse(
                img,
                (int(round(cx)), int(round(cy))),
                (max(1, int(round(a))), max(1, int(round(b)))),
                float(np.degrees(ang)),
                0.0,
                360.0,
                colour,
                thick,
                cv2.LINE_AA,
            )
    return img
