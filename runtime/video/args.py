"""The command line of ``python -m runtime.video``: every flag, its range and its default, and the
typed :class:`VideoOptions` built from them.

Why here: the namespace stops at this edge. Flags are validated once (numeric ranges by
runtime.cli.args types, the backend pair, the sources list) and turned into frozen
dataclasses; runtime.video.engine reads only those, the same for one camera or many.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
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
from runtime.detectors.factory import LAYOUTS, DetectorOptions, detector_options_from
from runtime.heads.probfields import add_prob_arguments
from runtime.io.live import LiveOptions, add_live_arguments, live_options
from runtime.pose.pipeline import PipelineOptions
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
        "--track-thr",
        type=unit_float,
        default=None,
        help="detector score that starts a track (ByteTrack's high threshold; weaker boxes only "
        "continue tracks); default: the artifacts' detector's (manifest thresholds.track), 0.5 otherwise",
    )
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


@dataclass(frozen=True)
class DetectOptions:
    """How boxes are found (the detector's own options) and carried between detections."""

    detector: DetectorOptions = DetectorOptions()
    every: int = 1  # detect every k-th frame, the tracker predicts in between
    tracker: str = "buffered"
    track_iou: float = 0.3
    track_thr: float | None = None  # score that starts a track; None: the detector's (manifest), else 0.5


@dataclass(frozen=True)
class DrawOptions:
    """The overlay video: whether there is one, its container and what is drawn on it."""

    video: bool = True
    video_format: str = "avi"
    presence_thr: float | None = None  # None: the manifest's
    kpt_thr: float = 0.0
    hide_low: bool = False
    regions: bool = False


@dataclass(frozen=True)
class SourceSpec:
    """One camera: what ``--source`` / a ``--sources`` line said, and the name its outputs take."""

    spec: str
    name: str | None = None


@dataclass(frozen=True)
class VideoOptions:
    """Everything a video run needs, validated; one camera is a one-element ``sources``."""

    engines: Path
    sources: tuple[SourceSpec, ...]
    out: Path
    pipeline: PipelineOptions
    detect: DetectOptions = DetectOptions()
    draw: DrawOptions = DrawOptions()
    smooth: tuple[float, float] | None = None  # One-Euro (min_cutoff, beta); None = off
    max_frames: int | None = None
    fps: float = 30.0
    live: LiveOptions = field(default_factory=LiveOptions)
    reader: str = "auto"
    fsync: bool = False
    quiet: bool = False


def read_sources_file(path: Path) -> list[SourceSpec]:
    """``name  spec`` per line (``#`` comments, blank lines ignored); a line with one field is a
    spec without a name."""
    out = []
    for line in (raw.strip() for raw in path.read_text().splitlines()):
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        out.append(SourceSpec(parts[1].strip(), parts[0]) if len(parts) == 2 else SourceSpec(parts[0]))
    if not out:
        raise ValueError(f"{path} lists no sources (one 'name spec' per line)")
    return out


def unique_names(names: list[str]) -> list[str]:
    """File-name-safe, distinct output names: street, street_1, street_2 ..."""
    seen: dict[str, int] = {}
    out = []
    for raw in names:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", raw).strip("._") or "camera"
        k = seen.get(name, 0)
        seen[name] = k + 1
        out.append(name if k == 0 else f"{name}_{k}")
    return out


def _sources(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[SourceSpec, ...]:
    specs = [SourceSpec(s) for s in args.source]
    if args.sources is not None:
        try:
            specs += read_sources_file(args.sources)
        except (OSError, ValueError) as e:
            parser.error(f"--sources {args.sources}: {e}")
    if not specs:
        parser.error("give --source (repeat it for several cameras) or --sources FILE")
    return tuple(specs)


def video_options(argv: list[str] | None = None) -> VideoOptions:
    """Parse and validate the video CLI's flags (exit 2 on a bad one, before any source is opened)."""
    parser = build_parser()
    a = parser.parse_args(argv)
    bopts = backend_options(a)  # --backend vs --triton-url; sets --backend triton for a bare URL
    if a.track_thr is not None and a.tracker != "buffered":
        parser.error(f"argument --track-thr: --tracker {a.tracker} starts a track from every box; drop one")
    return VideoOptions(
        engines=a.engines,
        sources=_sources(parser, a),
        out=a.out,
        pipeline=PipelineOptions(
            policy=a.policy,
            backend=a.backend,
            precision=a.precision,
            budget_ms=a.budget_ms,
            score_thr=a.score_thr,
            max_boxes=a.max_boxes,
            backend_options=bopts,
            credible=a.credible,
        ),
        detect=DetectOptions(detector_options_from(a), a.det_every, a.tracker, a.track_iou, a.track_thr),
        draw=DrawOptions(
            not a.no_video, a.video_format, a.presence_thr, a.kpt_thr, a.hide_low, a.draw_regions
        ),
        smooth=a.smooth,
        max_frames=a.max_frames,
        fps=a.fps,
        live=live_options(a),
        reader=a.reader,
        fsync=a.fsync,
        quiet=a.quiet,
    )
