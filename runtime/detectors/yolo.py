"""YOLO detector outputs: which layout a model has, and batched decode + NMS.

Layouts (the first output of a model exported without NMS):

* ``yolov5`` - ``[N, A, 5+C]``: cx, cy, w, h, objectness, C class scores.
* ``yolov8`` - ``[N, 4+C+K*D, A]`` (YOLOv8 / YOLO11 detect and pose): cx, cy,
  w, h, C class scores, then for pose models K keypoints x (x, y[, conf]).

Boxes and keypoints are in detector-input pixels, scores already in 0..1.
Ultralytics writes ``task``, ``names``, ``kpt_shape`` and ``imgsz`` into the
ONNX metadata (YOLOv5 writes ``names`` and ``stride``), so the layout is read
from there; a model without that metadata needs an explicit layout, and a
graph whose output fits no YOLO layout is refused with a message that says so.

Decode is vectorised over anchors (numpy masks and one ``cv2.dnn.NMSBoxes``
call per image, OpenCV's C++ NMS): no Python loop per box.
"""

from __future__ import annotations

import ast
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from runtime.detectors.base import Detections, DetectorError, nms_xywh
from runtime.detectors.letterbox import Geometry

FAMILIES = ("yolov5", "yolov8")
# Values per candidate of the usual exports (80 COCO classes or one): the layout of a model
# without exporter metadata and without ``--det-layout`` is read from its output shape by these.
SHAPE_FAMILIES = {85: "yolov5", 6: "yolov5", 84: "yolov8", 5: "yolov8"}
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


class LayoutError(DetectorError):
    """The model's output does not fit the YOLO layout it was given (or any)."""


@dataclass(frozen=True)
class YoloLayout:
    family: str  # yolov5 | yolov8
    num_classes: int
    kpt_shape: tuple[int, int] | None = None  # (K, D) for pose models
    source: str = "metadata"  # metadata | flag | shape

    @property
    def features(self) -> int:
        k = self.kpt_shape[0] * self.kpt_shape[1] if self.kpt_shape else 0
        return (5 if self.family == "yolov5" else 4) + self.num_classes + k

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kpt_shape"] = list(self.kpt_shape) if self.kpt_shape else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> YoloLayout:
        kpt = d.get("kpt_shape")
        return cls(
            d["family"], int(d["num_classes"]), tuple(kpt) if kpt else None, d.get("source", "manifest")
        )


def _parse(value: str) -> Any:
    """Ultralytics metadata values are Python literals (``{0: 'person'}``, ``[17, 3]``)."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        try:
            return json.loads(value)
        except ValueError:
            return value


def read_metadata(model: Any) -> dict[str, Any]:
    """ONNX ``metadata_props`` as parsed Python values."""
    return parse_metadata({p.key: p.value for p in model.metadata_props})


def parse_metadata(props: Mapping[str, str]) -> dict[str, Any]:
    """Key -> text metadata (ONNX Runtime's ``custom_metadata_map``) as parsed Python values."""
    return {k: _parse(v) for k, v in props.items()}


def layout_from_metadata(meta: Mapping[str, Any]) -> YoloLayout | None:
    """The layout the exporter recorded, or None when the metadata names none."""
    names = meta.get("names")
    nc = len(names) if isinstance(names, (dict, list)) else None
    task = meta.get("task")
    if task in ("detect", "pose") and nc:
        kpt = meta.get("kpt_shape") if task == "pose" else None
        return YoloLayout("yolov8", nc, (int(kpt[0]), int(kpt[1])) if kpt else None, "metadata")
    if task is None and nc and "stride" in meta:
        return YoloLayout("yolov5", nc, None, "metadata")
    return None


def check_output_shape(layout: YoloLayout, shape: tuple[Any, ...]) -> None:
    """Refuse an output whose feature axis does not match the layout (dims may be symbolic)."""
    if len(shape) != 3:
        raise LayoutError(
            f"output has rank {len(shape)} ({list(shape)}); a YOLO detector without NMS has "
            "[N, A, 5+C] (yolov5) or [N, 4+C+K*D, A] (yolov8/11)"
        )
    axis = 2 if layout.family == "yolov5" else 1
    dim = shape[axis]
    if isinstance(dim, int) and dim > 0 and dim != layout.features:
        raise LayoutError(
            f"output {list(shape)} has {dim} values per candidate on axis {axis}, but a "
            f"{layout.family} layout with {layout.num_classes} classes"
            + (f" and keypoints {list(layout.kpt_shape)}" if layout.kpt_shape else "")
            + f" needs {layout.features}"
        )


def guess_layout(shape: tuple[Any, ...], family: str) -> YoloLayout:
    """Layout from an explicit family and the output shape (no metadata): the feature axis gives C."""
    if family not in FAMILIES:
        raise LayoutError(f"unknown detector layout {family!r}; choose one of {', '.join(FAMILIES)}")
    if len(shape) != 3:
        check_output_shape(YoloLayout(family, 1), shape)
    dim = shape[2 if family == "yolov5" else 1]
    if not isinstance(dim, int) or dim <= 0:
        raise LayoutError(f"the feature axis of output {list(shape)} is dynamic; cannot tell the class count")
    nc = dim - (5 if family == "yolov5" else 4)
    if nc < 1:
        raise LayoutError(f"output {list(shape)} is too narrow for {family} ({dim} values per candidate)")
    return YoloLayout(family, nc, None, "flag")


def _static(d: Any) -> int | None:
    return d if isinstance(d, int) and d > 0 else None


def _features_swapped(layout: YoloLayout, shape: Sequence[Any]) -> bool:
    """Whether the output holds the family's two last axes the other way round ([N,A,F] for yolov8)."""
    usual, other = (2, 1) if layout.family == "yolov5" else (1, 2)
    if _static(shape[usual]) != layout.features and _static(shape[other]) == layout.features:
        return True
    check_output_shape(layout, tuple(shape))
    return False


def model_layout(flag: str, meta: Mapping[str, Any], shape: Sequence[Any]) -> tuple[YoloLayout, bool]:
    """The layout of a bare YOLO ONNX (``onnx:PATH``) and whether its output's two last axes are
    swapped relative to the family's (see :func:`_features_swapped`).

    ``auto``: the exporter's metadata, else the axis whose length is one of :data:`SHAPE_FAMILIES`.
    ``yolov5``/``yolov8`` (``--det-layout``): that family, the shorter axis being the values per
    candidate (candidates outnumber them in any real detector), so any class count works."""
    if len(shape) != 3:
        check_output_shape(YoloLayout("yolov8", 1), tuple(shape))  # raises: names the ranks it takes
    d1, d2 = _static(shape[1]), _static(shape[2])
    if flag == "auto":
        known = layout_from_metadata(meta)
        if known is not None:
            return known, _features_swapped(known, shape)
        axis = 2 if d2 in SHAPE_FAMILIES else 1 if d1 in SHAPE_FAMILIES else 0
        if not axis:
            raise LayoutError(
                f"cannot tell the YOLO layout of a {list(shape)} output (no exporter metadata); pass "
                "--det-layout yolov5 (cx,cy,w,h,obj,classes) or yolov8 (cx,cy,w,h,classes)"
            )
        family = SHAPE_FAMILIES[int(shape[axis])]
    elif flag in FAMILIES:
        if d1 is None or d2 is None:
            raise LayoutError(f"output {list(shape)} has a dynamic axis; cannot tell the class count")
        family, axis = flag, 1 if d1 < d2 else 2
    else:
        raise LayoutError(f"unknown detector layout {flag!r}; choose one of auto, {', '.join(FAMILIES)}")
    nc = int(shape[axis]) - (5 if family == "yolov5" else 4)
    if nc < 1:
        raise LayoutError(
            f"output {list(shape)} is too narrow for {family} ({shape[axis]} values per candidate)"
        )
    layout = YoloLayout(family, nc, None, "shape" if flag == "auto" else "flag")
    return layout, axis != (2 if family == "yolov5" else 1)


def candidates(out: npt.ArrayLike, layout: YoloLayout, cls: int = 0) -> tuple[F32, F32, F32 | None]:
    """Raw [N, ...] output -> per-anchor (cxcywh [N,A,4], score [N,A], keypoints [N,A,K,D] or None)."""
    a = np.asarray(out, np.float32)
    if a.ndim != 3 or a.shape[2 if layout.family == "yolov5" else 1] != layout.features:
        raise LayoutError(f"detector output {list(a.shape)} does not fit {layout.to_dict()}")
    if layout.family == "yolov8":
        a = a.transpose(0, 2, 1)  # [N, A, F] view
    first = 5 if layout.family == "yolov5" else 4
    if not 0 <= cls < layout.num_classes:
        raise LayoutError(f"class {cls} is out of range for a detector with {layout.num_classes} classes")
    score = a[..., first + cls] * (a[..., 4] if layout.family == "yolov5" else 1.0)
    kpts = None
    if layout.kpt_shape:
        k, d = layout.kpt_shape
        kpts = a[..., first + layout.num_classes :].reshape(*a.shape[:2], k, d)
    return a[..., :4], score, kpts


PROB_SLACK = 1e-3  # rounding room: a quantize-dequantized or fp16 sigmoid may land a hair above 1


def invalid_candidates(
    boxes: npt.NDArray[np.floating], score: npt.ArrayLike, kpts: npt.NDArray[np.floating] | None = None
) -> npt.NDArray[np.bool_]:
    """[..., A] mask of candidates a detector emitted unusable: a NaN/inf box, score or keypoint, or
    a score that is not a probability (outside [0, 1]: logits, a broken engine).

    Why: ``score >= thr`` is False for NaN, so a detector emitting NaN silently gives "0 people";
    the detectors drop such candidates, count them (``Detections.invalid``) and say so once
    (:class:`OutputCheck`)."""
    s = np.asarray(score, np.float64)
    bad: npt.NDArray[np.bool_] = ~np.isfinite(s) | (s < -PROB_SLACK) | (s > 1 + PROB_SLACK)
    bad |= ~np.isfinite(boxes).all(axis=-1)
    if kpts is not None:
        bad |= ~np.isfinite(kpts).all(axis=(-1, -2))
    return bad


class OutputCheck:
    """One warning line naming the detector when its outputs are unusable (the frames are counted
    by the run's account from ``Detections.invalid``); used by every network detector. Said once
    per detector and process (a run): cameras with one detector file each share the line."""

    warned: set[str] = set()

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, dets: list[Detections]) -> list[Detections]:
        bad = [d.invalid for d in dets if d.invalid]
        if bad and self.name not in OutputCheck.warned:
            OutputCheck.warned.add(self.name)
            from tqdm import tqdm  # type: ignore[import-untyped]  # a line of its own, not glued to a progress bar

            tqdm.write(
                f"warning: detector {self.name} emits NaN/inf or scores outside [0, 1] ({bad[0]} "
                "candidates in one frame); those boxes are dropped and the run's account counts the "
                "frames (det_invalid_frames): check or rebuild the detector",
                file=sys.stderr,
            )
        return dets


def cxcywh_to_xyxy(cxcywh: npt.ArrayLike) -> F64:
    """Box centres and sizes [..., 4] -> corners [..., 4] (float64)."""
    c = np.asarray(cxcywh, np.float64)
    return np.concatenate([c[..., :2] - c[..., 2:] / 2, c[..., :2] + c[..., 2:] / 2], axis=-1)


def decode(
    out: npt.ArrayLike,
    layout: YoloLayout,
    geos: list[Geometry],
    score_thr: float,
    iou_thr: float,
    cls: int = 0,
    max_det: int = 300,
) -> list[Detections]:
    """Batched output -> per-frame detections in frame pixels (NMS on frame-pixel boxes)."""
    boxes, score, kpts = candidates(out, layout, cls)
    bad = invalid_candidates(boxes, score, kpts)
    res = []
    for i, g in enumerate(geos):
        sel = np.flatnonzero((score[i] >= score_thr) & ~bad[i])
        b = boxes[i, sel].astype(np.float64)
        xywh = np.empty_like(b)
        xywh[:, 0] = (b[:, 0] - b[:, 2] / 2 - g.pad_x) / g.scale
        xywh[:, 1] = (b[:, 1] - b[:, 3] / 2 - g.pad_y) / g.scale
        xywh[:, 2:] = b[:, 2:] / g.scale
        s = score[i, sel].astype(np.float64)
        keep = nms_xywh(xywh, s, score_thr, iou_thr, max_det)
        kp = None
        if kpts is not None:
            kp = kpts[i, sel[keep]].astype(np.float64)
            kp[..., :2] = g.to_image_xy(kp[..., :2])
            if kp.shape[-1] == 2:  # (x, y) only: visibility unknown, score 1
                kp = np.concatenate([kp, np.ones((*kp.shape[:-1], 1))], axis=-1)
        res.append(Detections(xywh[keep], s[keep], kp, int(bad[i].sum())))
    return res
