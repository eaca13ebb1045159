"""What a detector ONNX must look like, and the inputs the build feeds it.

The ``--det-*`` flags and their limits, the one image input, the YOLO layout
(exporter metadata, else ``--det-layout`` and the output shape), the fixed
input size, and letterboxed calibration frames. Both the pre-export checks
(``build.detector_check``) and the role build (``build.detector``) use these,
so they live below both: the checks never import the build.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx

from runtime.cli.args import existing_path, number
from runtime.detectors.letterbox import Letterboxer
from runtime.detectors.yolo import (
    FAMILIES,
    LayoutError,
    YoloLayout,
    check_output_shape,
    guess_layout,
    layout_from_metadata,
    read_metadata,
)
from runtime.errors import InputError

ROLE = "detector"
DEFAULT_SIZE = 640
DEFAULT_SCORE = 0.3  # video default: keeps the players lying on the ground in people.mp4
DEFAULT_IOU = 0.7  # Ultralytics' default NMS IoU (the issue's AP reference)
DEFAULT_MAX_BATCH = 4  # engine profile: up to four cameras per call
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp"}
DET_PRECISIONS = ("all", "fp32")
DEFAULT_DRIFT_PX = 1.0  # the detector issue's INT8 target (mean drift <= 1 px)
MAX_SIZE = 4096  # 4096^2 input is ~200 MB per frame in float32; no YOLO is trained anywhere near it


def image_input(model: onnx.ModelProto, where: str) -> onnx.ValueInfoProto:
    """The one image input (older exporters also list the initializers as inputs)."""
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise InputError(
            f"{where} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)})",
            "--detector",
            "a YOLO ONNX has one image input [N,3,H,W]",
        )
    return inputs[0]


def input_dims(vi: onnx.ValueInfoProto) -> list[int | str | None] | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


def det_size(text: str) -> int:
    """``--det-size``: a multiple of 32 (the largest YOLO stride of v8/v11) in [32, MAX_SIZE]."""
    v = number(int, lo=32, hi=MAX_SIZE)(text)
    if v % 32:
        raise argparse.ArgumentTypeError(
            f"{v} is not a multiple of 32 (YOLO strides are up to 32): "
            f"use e.g. {max(32, v // 32 * 32)} or {v // 32 * 32 + 32}"
        )
    return v


def add_detector_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("person detector (role 'detector')")
    g.add_argument(
        "--detector",
        type=Path,
        default=None,
        help="the 'detector' role: a YOLO ONNX (v5/v8/v11 detect or pose, exported without NMS), "
        "a released RTMDet by name (rtmdet-nano-person, rtmdet-m-person: downloaded, exported, "
        "calibrated), an MMDet RTMDet .pth, or none (default: the config's detector, if any)",
    )
    g.add_argument(
        "--det-size",
        type=det_size,
        default=DEFAULT_SIZE,
        help=f"detector input height = width (a multiple of 32, at most {MAX_SIZE})",
    )
    g.add_argument(
        "--det-layout",
        choices=FAMILIES,
        default=None,
        help="output layout when the ONNX metadata names none (yolov5 | yolov8)",
    )
    g.add_argument("--det-class", type=int, default=0, help="person class index")
    g.add_argument(
        "--det-score", type=number(float, lo=0, hi=1), default=DEFAULT_SCORE, help="default score threshold"
    )
    g.add_argument(
        "--det-track-thr",
        type=number(float, lo=0, hi=1, lo_open=True),
        default=None,
        help="score from which a box starts a track (manifest thresholds.track); default: the one "
        "an RTMDet checkpoint's meta records, else the tracker's 0.5",
    )
    g.add_argument(
        "--det-iou",
        type=number(float, lo=0, hi=1, lo_open=True),
        default=DEFAULT_IOU,
        help="default NMS IoU threshold",
    )
    g.add_argument(
        "--det-max-batch",
        type=number(int, lo=1, hi=256),
        default=DEFAULT_MAX_BATCH,
        help="max batch of the detector engine profile (frames of several cameras)",
    )
    g.add_argument(
        "--det-calib-data",
        type=existing_path,
        default=None,
        help="images folder or video for the detector's INT8 ranges (default: --calib-data)",
    )
    g.add_argument(
        "--det-calib-frames",
        type=number(int, lo=1, hi=10_000),
        default=32,
        help="at most this many calibration frames",
    )
    g.add_argument(
        "--det-calib-method",
        choices=("entropy", "percentile", "minmax"),
        default="percentile",
        help="INT8 range calibration of the detector (percentile: best keypoint AP and drift "
        "of the three on coco-mini, docs/results/2026-12-detector.md)",
    )
    g.add_argument(
        "--det-int8-heads",
        action="store_true",
        help="quantize the detector's output convs and keypoint branch too (default: float; "
        "their error reaches the decoded coordinates times the stride)",
    )
    g.add_argument(
        "--det-drift-px",
        type=number(float, lo=0),
        default=DEFAULT_DRIFT_PX,
        help="INT8 variants: keep the fewest blocks float (greedy, measured) until the mean "
        "keypoint/box error vs fp32 on the calibration frames is at most this many "
        "input pixels (0: no fallback; calib.fallback)",
    )
    g.add_argument(
        "--det-precision",
        choices=DET_PRECISIONS,
        default="all",
        help="all = fp16 + int8_cpu + int8_trt variants; fp32 = the copied model only",
    )


def detect_layout(model: onnx.ModelProto, flag: str | None, where: str) -> YoloLayout:
    """Layout from the metadata, else from ``--det-layout`` and the output shape; refuse non-YOLO graphs."""
    out = model.graph.output[0]
    shape = tuple(
        d.dim_value if d.dim_value else (d.dim_param or None) for d in out.type.tensor_type.shape.dim
    )
    meta = read_metadata(model)
    try:
        layout = layout_from_metadata(meta) if flag is None else None
        if layout is None:
            if flag is None:
                raise InputError(
                    f"{where} has no YOLO metadata (task/names/kpt_shape) and its output "
                    f"{out.name} {list(shape)} cannot be read without it",
                    "--detector",
                    "export it with Ultralytics (which writes the metadata) or pass "
                    "--det-layout yolov5|yolov8 if it is a YOLO model without NMS",
                )
            layout = guess_layout(shape, flag)
        check_output_shape(layout, shape)
    except LayoutError as e:
        raise InputError(
            f"{where} is not a YOLO detector this pipeline can decode: {e}",
            "--detector",
            "pass a YOLOv5/v8/v11 ONNX exported without NMS (or fix --det-layout)",
        ) from None
    return layout


def fix_input_size(model: onnx.ModelProto, size: int) -> onnx.ModelProto:
    """Static H x W = size (TensorRT tunes for one size), batch left dynamic."""
    dims = image_input(model, "detector").type.tensor_type.shape.dim
    if len(dims) != 4:
        raise InputError(f"detector input has rank {len(dims)}", "--detector", "expected [N,3,H,W]")
    for k in (2, 3):
        if dims[k].dim_value and dims[k].dim_value != size:
            raise InputError(
                f"detector input is fixed at {dims[2].dim_value}x{dims[3].dim_value}",
                "--det-size",
                f"pass --det-size {dims[k].dim_value} or re-export with dynamic size",
            )
        dims[k].ClearField("dim_param")
        dims[k].dim_value = size
    if not dims[0].dim_value and not dims[0].dim_param:
        dims[0].dim_param = "N"
    return model


def calib_source(args: argparse.Namespace, default: Path) -> tuple[Path, str]:
    """Where the detector's INT8 frames come from and the flag that named them (for its errors):
    ``--det-calib-data``, else ``--calib-data`` (the pose nets'), else ``default``."""
    for dest in ("det_calib_data", "calib_data"):
        value = getattr(args, dest, None)
        if value:
            return Path(value), "--" + dest.replace("_", "-")
    return Path(default), "--det-calib-data"


def calib_frames(src: Path, size: int, n: int, flag: str = "--det-calib-data") -> np.ndarray:
    """Up to ``n`` letterboxed frames [n,3,size,size] from an image folder or a video, evenly spaced.
    A COCO folder whose images sit in ``images/`` (what ``--calib-data`` takes) reads those."""
    import cv2

    images: list[np.ndarray] = []
    if src.is_dir():
        files = sorted(f for f in src.iterdir() if f.suffix.lower() in IMAGE_EXT)
        if not files and (src / "images").is_dir():
            files = sorted(f for f in (src / "images").iterdir() if f.suffix.lower() in IMAGE_EXT)
        pick = (
            np.unique(np.linspace(0, len(files) - 1, min(n, len(files))).round().astype(int)) if files else []
        )
        images = [img for img in (cv2.imread(str(files[i])) for i in pick) if img is not None]
    elif src.is_file():
        cap = cv2.VideoCapture(str(src))
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        want = set(np.linspace(0, max(total - 1, 0), min(n, max(total, 1))).round().astype(int).tolist())
        i = 0
        while len(images) < len(want):
            ok, frame = cap.read()
            if not ok:
                break
            if i in want:
                images.append(frame)
            i += 1
        cap.release()
    if not images:
        raise InputError(
            f"no readable images or video frames in {src}",
            flag,
            "pass a folder of .jpg/.png images or a video file",
        )
    box = Letterboxer((size, size), len(images))
    batch, _ = box.fill(images)
    return batch.copy()
