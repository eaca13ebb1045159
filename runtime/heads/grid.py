"""A head's output grid and the image: where a grid cell of a crop window lies in the frame.

Why here, below the pose core: every decoder and the credible regions map grid coordinates to
the image, and the crop maker (runtime.pose.preprocess) sits above the heads.
"""

from __future__ import annotations

import numpy as np

HEATMAP_HW = (64, 48)  # the grid of a 256x192 input at stride 4


def heatmap_to_image(
    coords: np.ndarray, centers: np.ndarray, scales: np.ndarray, heatmap_hw: tuple[int, int] = HEATMAP_HW
) -> np.ndarray:
    """Inverse of :func:`make_crops` for heatmap-pixel (x, y) coordinates [N,K,2].

    Pixel centres are aligned the MMPose way (coordinate / size * scale), so a
    heatmap x of 0 maps to the left edge of the crop window.
    """
    c = np.asarray(coords, np.float64)
    hh, hw = heatmap_hw
    out = np.empty_like(c)
    out[..., 0] = c[..., 0] / hw * scales[:, None, 0] + centers[:, None, 0] - scales[:, None, 0] * 0.5
    out[..., 1] = c[..., 1] / hh * scales[:, None, 1] + centers[:, None, 1] - scales[:, None, 1] * 0.5
    return out.astype(np.float32)


def image_to_heatmap(
    points: np.ndarray, centers: np.ndarray, scales: np.ndarray, heatmap_hw: tuple[int, int] = HEATMAP_HW
) -> np.ndarray:
    """Forward map of image (x, y) [N,K,2] into heatmap pixels (training targets, tests)."""
    p = np.asarray(points, np.float64)
    hh, hw = heatmap_hw
    out = np.empty_like(p)
    out[..., 0] = (p[..., 0] - centers[:, None, 0] + scales[:, None, 0] * 0.5) / scales[:, None, 0] * hw
    out[..., 1] = (p[..., 1] - centers[:, None, 1] + scales[:, None, 1] * 0.5) / scales[:, None, 1] * hh
    return out.astype(np.float32)
