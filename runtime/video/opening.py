"""Everything a video run needs, opened before any work: sources, detectors, the pose pipeline.

Why apart from runtime.video.engine: opening is where bad input is found (a source that
does not open, a detector or artifacts folder that is wrong, a backend that cannot be
reached), so it happens once, up front, for any number of cameras, and closes whatever it
had opened when something fails; the engine then only runs. Expected errors propagate to
the CLI boundary as one line, exit 2.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from runtime.artifacts.manifest import load_manifest
from runtime.detectors.factory import HogDetector, JsonDetections, hog_fallback_note, open_detector
from runtime.detectors.net import NetDetector
from runtime.io.source_spec import open_source
from runtime.io.sources import FrameSource
from runtime.pose.pipeline import PosePipeline
from runtime.video.args import VideoOptions, unique_names


@dataclass
class Opened:
    """The run's open resources; ``detectors`` pairs each detector with the sources it serves."""

    sources: list[FrameSource] = field(default_factory=list)
    detectors: list[tuple[Any, list[FrameSource]]] = field(default_factory=list)
    pipe: PosePipeline | None = None

    def close(self) -> None:
        if self.pipe is not None:
            self.pipe.close()
        for det, _ in self.detectors:
            if hasattr(det, "close"):
                det.close()
        for s in self.sources:
            s.close()


def open_detector_for(opts: VideoOptions, max_batch: int | None = None) -> Any:
    """The ``--detector`` the options name (runtime.detectors.factory.open_detector); ``max_batch``
    re-opens the artifacts' detector with a batch profile for several cameras."""
    d, p = opts.detect.detector, opts.pipeline
    if max_batch is not None:
        return NetDetector(
            opts.engines,
            backend=p.backend,
            precision=p.precision,
            score_thr=d.score_thr,
            iou_thr=d.iou_thr,
            max_batch=max_batch,
            backend_options=p.backend_options,
        )
    return open_detector(
        d, opts.engines, backend=p.backend, precision=p.precision, backend_options=p.backend_options
    )


def _open_sources(opts: VideoOptions, opened: Opened) -> None:
    for s in opts.sources:
        opened.sources.append(open_source(s.spec, fps=opts.fps, live=opts.live, reader=opts.reader))
    names = [s.name or src.name for s, src in zip(opts.sources, opened.sources)]
    for src, name in zip(opened.sources, unique_names(names) if len(names) > 1 else names):
        src.name = name


def _open_detectors(opts: VideoOptions, opened: Opened) -> None:
    """The artifacts' detector is one runner for every camera (one batch per round); HOG / json /
    onnx detectors keep per-stream state, so each camera gets its own."""
    first = open_detector_for(opts)
    srcs = opened.sources
    if isinstance(first, NetDetector) and first.shares_cameras and len(srcs) > 1:
        first.close()
        entry = load_manifest(opts.engines)["models"]["detector"]
        first = open_detector_for(opts, max_batch=max(1, int(entry.get("max_batch", len(srcs)))))
    if isinstance(first, NetDetector) and first.shares_cameras:  # onnx: keeps one per camera
        opened.detectors.append((first, list(srcs)))
        return
    opened.detectors.append((first, [srcs[0]]))
    for src in srcs[1:]:
        opened.detectors.append((open_detector_for(opts), [src]))
    for det, (src,) in opened.detectors:
        if isinstance(det, JsonDetections) and src.kind == "folder":
            det.bind_folder(src.spec)


def open_all(opts: VideoOptions) -> Opened:
    """Open every source, detector and the pose pipeline; on a failure close what was opened."""
    opened = Opened()
    try:
        _open_sources(opts, opened)
        _open_detectors(opts, opened)
        opened.pipe = PosePipeline(opts.engines, opts.pipeline)
    except BaseException:
        opened.close()
        raise
    if opts.detect.detector.spec == "auto" and any(isinstance(d, HogDetector) for d, _ in opened.detectors):
        # said once everything opened (a failing run prints its one error line only)
        print(hog_fallback_note(opts.engines), file=sys.stderr)
    return opened
