"""Appearance of a person box: a hue-saturation histogram of its middle, for re-finding tracks.

Why a colour histogram and not a re-id network: it costs well under a
millisecond per box on a CPU, needs no weights, and clothes colour is what
tells two people apart when their boxes overlap (a crossing) or when one
comes back from behind another. OpenCV does the work (calcHist,
compareHist); only the choice of region and bins is ours.
"""

from __future__ import annotations

import cv2
import numpy as np

BINS = (16, 8)  # hue x saturation


def box_histogram(image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """Normalised H-S histogram of the box's middle (inner half of the width, 10-90 % of the height:
    mostly torso and legs, little background); None when the box has no pixels in the image."""
    h, w = image.shape[:2]
    x, y, bw, bh = (float(v) for v in box)
    x0, x1 = int(max(0, x + 0.25 * bw)), int(min(w, x + 0.75 * bw))
    y0, y1 = int(max(0, y + 0.1 * bh)), int(min(h, y + 0.9 * bh))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    hsv = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, list(BINS), [0, 180, 0, 256]).astype(np.float32)
    s = float(hist.sum())
    return hist / s if s > 0 else None


def similarity(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """1 - Bhattacharyya distance: 1 for the same colours, 0 for disjoint ones (0 when either is unknown)."""
    if a is None or b is None:
        return 0.0
    return float(1.0 - cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))
