"""The command line of ``python -m runtime.video``: every flag, its range and its default.

Kept apart from runtime.video.engine (the stages and the run) so both stay small; the
numeric flags are validated here, at the edge, by runtime.cli.args types.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from runtime.cli.args import (
    OneLineParser,
    backend_options,
    host_port,
    nonneg_float,
    nonneg_int,
    number,
    output_dir,
    positive_float,
    positive_int,
    run_precision,
    unit_float,
)
from runtime.detectors.factory import LAYOUTS
from runtime.heads.probfields import add_prob_arguments
from runtime.io.live import add_live_arguments
from runtime.pose.preprocess import DEFAULT_MAX_BOXES
from runtime.pose.routing import POLICIES
from runtime.tracking.smoothing import parse_smooth
from runtime.tracking.tracker import TRACKERS

# HOG needs a frame of at least its 64x128 window (+ padding); narrower --hog-width is refused
# (taller-than-wide frames are upscaled to fit in runtime.detectors.factory either way).
MIN_HOG_WIDTH = 80


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m runtime.video",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--engines", required=True, type=Path, help="artifacts folder with manifest.json")
    p.add_argument(
        "--source",
        action="append",
        default=[],
        help="video file, image folder, camera index, "
        "/dev/videoN, rtsp:// or http:// URL, csi://N (Jetson CSI) or a GStreamer pipeline; repeat it for "
        "several cameras (one batch per tick across all of them)",
    )
    p.add_argument(
        "--sources",
        type=Path,
        default=None,
        metavar="FILE",
        help="several cameras, one 'name spec' per line (outputs are named after them)",
    )
    p.add_argument("--out", type=output_dir, default=Path("video_out"), help="output folder")
    p.add_argument(
        "--detector",
        default="auto",
        help="auto (the artifacts' detector if built, else hog) | engine | hog | onnx:PATH | json:PATH",
    )
    p.add_argument(
        "--det-every", type=positive_int, default=1, help="detect every k-th frame, track in between"
    )
    p.add_argument("--det-layout", default="auto", choices=LAYOUTS, help="ONNX detector output layout")
    p.add_argument("--det-class", type=nonneg_int, default=0, help="person class index of the ONNX detector")
    p.add_argument("--det-thr", type=unit_float, default=None, help="detector score threshold")
    p.add_argument(
        "--det-nms",
        type=unit_float,
        default=None,
        help="detector NMS IoU threshold (default: the artifacts' detector's, 0.5 otherwise)",
    )
    p.add_argument(
        "--hog-width",
        type=number(int, lo=MIN_HOG_WIDTH, hi=16384),
        default=640,
        help="frames are shrunk to this width for HOG",
    )
    p.add_argument("--track-iou", type=unit_float, default=0.3, help="IoU to continue a track")
    p.add_argument(
        "--tracker",
        default="buffered",
        choices=tuple(TRACKERS),
        help="buffered (IoU + appearance + 30-frame buffer; id 0 = untracked) or iou (the old one)",
    )
    p.add_argument(
        "--smooth",
        nargs="?",
        const=(8.0, 0.5),
        default=None,
        type=parse_smooth,
        metavar="MIN_CUTOFF,BETA",
        help="One-Euro keypoint smoothing per track (default off; bare --smooth = 8,0.5)",
    )
    p.add_argument("--policy", default="dyn", choices=POLICIES)
    p.add_argument("--backend", default="auto", choices=("auto", "ort", "trt", "triton"))
    p.add_argument(
        "--triton-url",
        type=host_port,
        default=None,
        help="gRPC HOST:PORT of the Triton server (implies --backend triton; refused with ort/trt)",
    )
    p.add_argument(
        "--precision",
        default="fp32",
        type=run_precision,
        help="fp32, fp16 or int8 as at build time (int8 = int8_cpu), or a variant name; ORT backend",
    )
    p.add_argument("--threads", type=positive_int, default=None, help="ONNX Runtime threads per net")
    p.add_argument(
        "--budget-ms",
        type=positive_float,
        default=None,
        help="per-frame latency budget (caps large-net crops)",
    )
    p.add_argument("--score-thr", type=nonneg_float, default=None, help="drop boxes scoring below this")
    p.add_argument(
        "--max-boxes",
        type=positive_int,
        default=DEFAULT_MAX_BOXES,
        help="most people posed per frame and camera (highest scores kept; the rest say "
        "dropped: over_max_boxes); lower it to bound the per-frame cost",
    )
    p.add_argument(
        "--presence-thr",
        type=unit_float,
        default=None,
        help="keypoints below this presence are drawn hollow (default: the manifest's)",
    )
    p.add_argument("--hide-low", action="store_true", help="hide low-presence keypoints instead")
    p.add_argument("--kpt-thr", type=unit_float, default=0.0, help="do not draw keypoints scoring below this")
    add_prob_arguments(p, overlay=True)
    p.add_argument("--max-frames", type=positive_int, default=None, help="stop after this many frames")
    p.add_argument(
        "--fps",
        type=number(float, lo=0, hi=1000, lo_open=True),
        default=30.0,
        help="frame rate for image folders",
    )
    add_live_arguments(p)
    p.add_argument("--no-video", action="store_true", help="write only the JSON Lines results")
    p.add_argument(
        "--video-format",
        default="avi",
        choices=("avi", "mp4"),
        help="avi (MJPEG, stays playable after a hard kill) or mp4 (mp4v; not kill-safe)",
    )
    p.add_argument("--fsync", action="store_true", help="fsync every JSONL line (survives power loss)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def pipeline_options(args: argparse.Namespace) -> PipelineOptions:  # noqa: F821
    """The pose pipeline's options from the video CLI's flags (one camera or many)."""
    from runtime.pose.pipeline import PipelineOptions

    return PipelineOptions(
        policy=args.policy,
        backend=args.backend,
        precision=args.precision,
        budget_ms=args.budget_ms,
        score_thr=args.score_thr,
        max_boxes=args.max_boxes,
        backend_options=backend_options(args),
        credible=args.credible,
    )


def detector_from(args: argparse.Namespace) -> object:
    """The ``--detector`` the flags name (runtime.detectors.factory.open_detector)."""
    from runtime.detectors.factory import detector_options_from, open_detector

    return open_detector(
        detector_options_from(args),
        args.engines,
        backend=args.backend,
        precision=args.precision,
        backend_options=backend_options(args),
    )
