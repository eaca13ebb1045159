"""Boxes -> crops, and heatmap coordinates -> image coordinates.

Both directions live here so the forward and inverse affine can never drift
apart. Pure numpy + OpenCV: the device, the calibrator and the trainer all
make crops through this one module.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from runtime.artifacts.schema import input_hw as entry_input_hw
from runtime.errors import EXIT_INPUT, register_expected

INPUT_HW = (256, 192)  # the default crop only where no net says its size (the manifest's inputs do)
PADDING = 1.25
MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255.0
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255.0
_SCALE_RGB = (1.0 / STD).astype(np.float32)  # x * scale + shift == (x - mean) / std, per RGB channel
_SHIFT_RGB = (-MEAN / STD).astype(np.float32)
DEFAULT_MAX_BOXES = 256
HW = tuple[int, int]
CROP_ROLES = ("router", "small", "large")  # the nets that read crops, in the order they run


class BoxError(ValueError):
    """Boxes that cannot be read at all (wrong shape or type)."""


register_expected(BoxError, EXIT_INPUT)  # an expected error: one line, exit 2, at any CLI boundary


@dataclass
class BoxReport:
    """What box hygiene did, so callers can log it instead of losing crops silently."""

    n_in: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    reasons: dict[int, str] = field(default_factory=dict)  # input index -> why it was dropped

    def drop(self, reason: str, n: int, indices: np.ndarray | None = None) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + int(n)
        if indices is not None:
            for i in np.asarray(indices).reshape(-1):
                self.reasons[int(i)] = reason


def as_boxes(boxes: object) -> np.ndarray:
    """Any list/array of xywh boxes as float64 [N,4]; a clear error otherwise."""
    try:
        arr = np.asarray(boxes if boxes is not None else [], dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise BoxError(
            f"boxes must be numbers [N,4] as x,y,w,h (COCO xywh), got {e}; pass one 4-number row per box"
        ) from None
    if arr.size == 0:
        return np.zeros((0, 4))
    if arr.ndim != 2 or arr.shape[1] < 4:
        raise BoxError(
            f"boxes must be [N,4] as x,y,w,h (COCO xywh), got shape {arr.shape}; "
            "convert x1,y1,x2,y2 boxes with w=x2-x1, h=y2-y1"
        )
    return arr[:, :4]


def sanitize_boxes(
    boxes_xywh: object,
    image_hw: tuple[int, int],
    scores: object = None,
    score_thr: float | None = None,
    max_boxes: int | None = DEFAULT_MAX_BOXES,
) -> tuple[np.ndarray, np.ndarray, BoxReport]:
    """Clip to the image, drop NaN / empty / off-image / low-score boxes, cap the count.

    Returns the kept boxes, their indices into the input (so results map back
    to the caller's order) and a report of what was dropped and why. The cap
    keeps the highest-scoring boxes.
    """
    b = as_boxes(boxes_xywh)
    rep = BoxReport(n_in=len(b))
    idx = np.arange(len(b))
    h, w = image_hw
    finite = np.isfinite(b).all(axis=1)
    sc = None
    if scores is not None:
        try:
            sc = np.asarray(scores, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise BoxError("scores must be numbers, one per box") from None
        if len(sc) != rep.n_in:
            raise BoxError(f"got {rep.n_in} boxes but {len(sc)} scores; pass one score per box")
        finite &= np.isfinite(sc)
    rep.drop("nan_or_inf", (~finite).sum(), idx[~finite])
    b, idx = b[finite], idx[finite]
    if sc is not None:
        sc = sc[finite]
        if score_thr is not None:
            ok = sc >= score_thr
            rep.drop("below_score_threshold", (~ok).sum(), idx[~ok])
            b, idx, sc = b[ok], idx[ok], sc[ok]
    x1 = np.clip(b[:, 0], 0, w)
    y1 = np.clip(b[:, 1], 0, h)
    x2 = np.clip(b[:, 0] + b[:, 2], 0, w)
    y2 = np.clip(b[:, 1] + b[:, 3], 0, h)
    nonpos = (b[:, 2] <= 0) | (b[:, 3] <= 0)
    rep.drop("zero_or_negative_size", nonpos.sum(), idx[nonpos])
    off = ~nonpos & ((x2 - x1 < 1) | (y2 - y1 < 1))
    rep.drop("outside_image", off.sum(), idx[off])
    ok = ~nonpos & ~off
    b = np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)[ok]
    idx = idx[ok]
    if sc is not None:
        sc = sc[ok]
    if max_boxes is not None and len(b) > max_boxes:
        order = np.argsort(-sc, kind="stable")[:max_boxes] if sc is not None else np.arange(max_boxes)
        order = np.sort(order)
        rep.drop("over_max_boxes", len(b) - max_boxes, np.setdiff1d(idx, idx[order]))
        warnings.warn(
            f"{len(b)} boxes in one image; keeping {max_boxes} (raise max_boxes, or --max-boxes, to keep more)",
            stacklevel=2,
        )
        b, idx = b[order], idx[order]
    rep.kept = len(b)
    return b.astype(np.float32), idx, rep


def boxes_to_center_scale(
    boxes_xywh: np.ndarray, padding: float = PADDING, input_hw: tuple[int, int] = INPUT_HW
) -> tuple[np.ndarray, np.ndarray]:
    """Box -> centre and (w, h) of the crop window at the net's aspect (W/H of ``input_hw``), padded."""
    b = np.asarray(boxes_xywh, np.float32).reshape(-1, 4)
    centers = b[:, :2] + b[:, 2:] * 0.5
    w, h = b[:, 2].copy(), b[:, 3].copy()
    aspect = input_hw[1] / input_hw[0]
    wide = w > aspect * h
    h[wide] = w[wide] / aspect
    w[~wide] = h[~wide] * aspect
    return centers, np.stack([w, h], axis=1) * padding


def crop_affines(centers: np.ndarray, scales: np.ndarray, out_hw: tuple[int, int] = INPUT_HW) -> np.ndarray:
    """[N,2,3] image -> crop transforms (no rotation), vectorised."""
    n = len(centers)
    sx = out_hw[1] / scales[:, 0]
    sy = out_hw[0] / scales[:, 1]
    m = np.zeros((n, 2, 3), np.float64)
    m[:, 0, 0] = sx
    m[:, 1, 1] = sy
    m[:, 0, 2] = out_hw[1] * 0.5 - sx * centers[:, 0]
    m[:, 1, 2] = out_hw[0] * 0.5 - sy * centers[:, 1]
    return m


class CropMaker:
    """Crops at one net input size, written for throughput; keeps its uint8 scratch between calls.

    Why this shape: the per-crop float copy, normalise and transpose cost ~6x the warp itself.
    Here each crop is only warped (uint8, OpenCV) into an [N,H,W,3] scratch; then one
    ``cv2.split`` makes three contiguous [N,H,W] planes and one multiply + one add per channel
    write the normalised RGB planes straight into the caller's [N,3,H,W] float32 buffer (the
    preallocated, possibly pinned, input of a net). Same float32 ops as before (x * 1/std -
    mean/std), so the result is bit-identical to the per-crop version
    (``bench/preprocess_frozen.py``; ``tests/test_preprocess.py`` checks it).
    One maker per input size; not thread-safe (one scratch).
    """

    def __init__(self, input_hw: tuple[int, int] = INPUT_HW) -> None:
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        if min(self.input_hw) < 1:
            raise ValueError(f"crop size must be positive (H, W), got {input_hw}")
        h, w = self.input_hw
        self._warped = np.empty((0, h, w, 3), np.uint8)
        self._planes = np.empty((3, 0, h, w), np.uint8)

    def _scratch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self._warped) < n:
            h, w = self.input_hw
            cap = max(n, 2 * len(self._warped))
            self._warped = np.empty((cap, h, w, 3), np.uint8)
            self._planes = np.empty((3, cap, h, w), np.uint8)
        return self._warped[:n], self._planes[:, :n]

    def __call__(
        self, image_bgr: np.ndarray, centers: np.ndarray, scales: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Affine crops, BGR->RGB and ImageNet normalisation into one [N,3,H,W] float32 buffer.

        ``out`` may be a preallocated (pinned) buffer with at least N rows; the crops are written
        into it and a view of the first N rows is returned."""
        if image_bgr is None or image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
            got = None if image_bgr is None else f"{image_bgr.shape} {image_bgr.dtype}"
            raise ValueError(f"image must be HxWx3 BGR uint8, got {got}")
        n = len(centers)
        h, w = self.input_hw
        if out is None:
            out = np.empty((n, 3, h, w), np.float32)
        elif out.shape[0] < n or out.shape[1:] != (3, h, w) or out.dtype != np.float32:
            raise ValueError(
                f"crop buffer {out.shape} {out.dtype} cannot hold {n} crops of 3x{h}x{w} float32"
            )
        if n == 0:
            return out[:0]
        warped, planes = self._scratch(n)
        mats = crop_affines(centers, scales, self.input_hw)
        for i in range(n):
            cv2.warpAffine(
                image_bgr,
                mats[i],
                (w, h),
                dst=warped[i],
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0,
            )
        cv2.split(warped.reshape(n * h, w, 3), [planes[c].reshape(n * h, w) for c in range(3)])
        for c in range(3):  # RGB channel c is BGR plane 2 - c
            dst = out[:n, c]
            np.multiply(planes[2 - c], _SCALE_RGB[c], out=dst)
            np.add(dst, _SHIFT_RGB[c], out=dst)
        return out[:n]


def net_input_hw(manifest: Mapping[str, Any], role: str) -> HW:
    """The crop (H, W) of ``role``'s net, read from its manifest entry (``models.<role>.inputs``),
    :data:`INPUT_HW` only where the entry lists none. Every module that crops for a net asks
    here (pipeline, calibration, costs, workload, Triton), so a pair of nets of different sizes
    (RTMPose-t 256x192 with RTMPose-m 384x288) is cut at each net's size everywhere."""
    return entry_input_hw(manifest["models"][role], role) or INPUT_HW


def net_sizes(manifest: Mapping[str, Any], roles: Iterable[str] = CROP_ROLES) -> tuple[HW, ...]:
    """The distinct crop sizes of ``roles``' nets, in role order (the router's first)."""
    return tuple(dict.fromkeys(net_input_hw(manifest, r) for r in roles if r in manifest["models"]))


class CropWindows:
    """The kept boxes of a submission and their crop windows (centre, scale) per net input size:
    the window's aspect is the net's, so a 3:4 and a 1:1 net see different windows of one box.

    The one way to crop a set of boxes for several nets: the pipeline, calibration, the
    benchmark workload and router training all ask it for crops at each net's size."""

    def __init__(self, boxes: np.ndarray) -> None:
        self.boxes = boxes
        self._at: dict[HW, tuple[np.ndarray, np.ndarray]] = {}

    def at(self, hw: HW) -> tuple[np.ndarray, np.ndarray]:
        if hw not in self._at:
            self._at[hw] = boxes_to_center_scale(self.boxes, input_hw=hw)
        return self._at[hw]

    def affines(self, hw: HW) -> np.ndarray:
        """[N,2,3] image->crop transforms at ``hw``: all a device crop needs from the host."""
        return crop_affines(*self.at(hw), hw)

    def crops(
        self, image_bgr: np.ndarray, hw: HW, out: np.ndarray | None = None, maker: CropMaker | None = None
    ) -> np.ndarray:
        """Every box's crop at ``hw`` from one image (``maker``: a caller's reused scratch)."""
        return (maker or CropMaker(hw))(image_bgr, *self.at(hw), out)

    def crops_by_size(self, image_bgr: np.ndarray, sizes: Iterable[HW]) -> dict[HW, np.ndarray]:
        """Every box's crop at each of ``sizes``: row i is box i at every size."""
        return {hw: self.crops(image_bgr, hw) for hw in dict.fromkeys(sizes)}


def make_crops(
    image_bgr: np.ndarray,
    centers: np.ndarray,
    scales: np.ndarray,
    out: np.ndarray | None = None,
    input_hw: tuple[int, int] = INPUT_HW,
) -> np.ndarray:
    """One-off crops at ``input_hw`` (a net's (H, W)); see :class:`CropMaker`, which callers that
    crop every frame keep to reuse its scratch."""
    return CropMaker(input_hw)(image_bgr, centers, scales, out)
