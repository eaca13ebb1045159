"""Decode of the double probability map (build/models/double_head.py, ProbPose-s-DH).

The expert map localises keypoints inside the crop window; the outer map, over
a window ``OUTER_FACTOR`` times larger with the same centre, localises those
outside it. A keypoint uses the expert map when its calibrated presence says it
is inside (presence >= the manifest's Ex-OKS threshold), else the outer map,
mapped back to inner heatmap pixels: x_in = (x_out - c) * f + c, c = (W-1)/2.
Both maps decode with the same expected-OKS decode (runtime.heads.decode); the outer
map's OKS scale is its own pixels, so its sigmas need no change (an OKS kernel
in outer pixels is f times wider in the image, as the keypoint is less sure).
"""

from __future__ import annotations

import numpy as np

from runtime.heads.credible import Regions
from runtime.heads.decode import decode_probmaps

OUTER_FACTOR = 2.0  # build.models.double_head.OUTER_FACTOR (a test keeps them equal)


def outer_to_inner(xy: np.ndarray, hm_hw: tuple[int, int], factor: float = OUTER_FACTOR) -> np.ndarray:
    h, w = hm_hw
    c = np.array([(w - 1) / 2, (h - 1) / 2], np.float32)
    inner: np.ndarray = ((np.asarray(xy, np.float32) - c) * np.float32(factor) + c).astype(np.float32)
    return inner


def merge_double(
    coords: np.ndarray,
    scores: np.ndarray,
    outer: np.ndarray,
    presence: np.ndarray,
    threshold: float,
    factor: float = OUTER_FACTOR,
) -> tuple[np.ndarray, np.ndarray]:
    """Expert (coords, scores) where presence >= threshold, else the outer map's decode."""
    oc, os_ = decode_probmaps(outer)
    oc = outer_to_inner(oc, outer.shape[-2:], factor)
    out = np.asarray(presence) < threshold
    return np.where(out[..., None], oc, coords), np.where(out, os_, scores)


def outer_regions_to_inner(reg: Regions, hm_hw: tuple[int, int], factor: float = OUTER_FACTOR) -> Regions:
    """Credible regions found on the outer map, in inner heatmap pixels (the same map as the
    keypoints): an outer pixel is ``factor`` inner pixels on a side, so areas scale by factor^2,
    ellipse centres go through :func:`outer_to_inner`, semi-axes scale by factor, angles stay."""
    e = np.array(reg.ellipse, np.float64, copy=True)
    e[..., :2] = outer_to_inner(e[..., :2], hm_hw, factor)
    e[..., 2:4] *= factor
    return Regions(reg.masses, reg.n_pixels * factor * factor, e, reg.threshold)


def pick_regions(inner: Regions, outer: Regions, use_outer: np.ndarray) -> Regions:
    """Per keypoint the regions of the map its position came from (``use_outer`` [N,K])."""
    m = np.asarray(use_outer, bool)[None]
    return Regions(
        inner.masses,
        np.where(m, outer.n_pixels, inner.n_pixels),
        np.where(m[..., None], outer.ellipse, inner.ellipse),
        np.where(m, outer.threshold, inner.threshold),
    )
