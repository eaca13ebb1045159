"""``python -m runtime.video``: a video, camera or stream in; keypoints out as an overlay and JSON Lines.

Four stages run at once, joined by small bounded queues, so the slowest one
sets the frame rate: decoding (thread) -> person detection + tracking
(thread) -> the pose pipeline (main thread; itself pipelined, frame t+1 is
cropped and routed while frame t's nets run) -> drawing and writing (thread).
Every finished frame is on disk at once (see runtime.io.sinks); the first
Ctrl-C or SIGTERM stops reading and lets the frames in flight finish, a
second one quits at once. Both leave valid outputs.
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from runtime.backends.base import BackendError
from runtime.cli import expected as expected_errors  # noqa: F401 (registers the runtime's error classes)
from runtime.cli.args import backend_options
from runtime.detectors.factory import JsonDetections
from runtime.detectors.net import attach_det_keypoints
from runtime.errors import EXIT_INCOMPLETE, EXIT_SIGINT, guarded
from runtime.io.draw import draw_hud, draw_persons
from runtime.io.draw_regions import draw_regions
from runtime.io.live import live_options
from runtime.io.records import json_safe
from runtime.io.safe_io import atomic_write_text, drop_earlier_outputs
from runtime.io.sinks import JsonlWriter, frame_record, open_video_writer, set_aside_earlier_outputs
from runtime.io.sources import Frame, FrameSource, open_source
from runtime.pose.account import RunAccount
from runtime.pose.pipeline import PosePipeline
from runtime.pose.results import FrameResult
from runtime.tracking.smoothing import make_smoother
from runtime.tracking.tracker import TRACKERS
from runtime.video.args import build_parser, detector_from, pipeline_options
from runtime.video.stats import POSE_PARTS, STAGES, Stats, print_summary  # noqa: F401 (STAGES re-exported)

END = object()
QUEUE_SIZE = 4


@dataclass
class Item:
    """One frame on its way through the stages."""

    frame: Frame
    ms: dict[str, float]
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    track_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    detected: bool = False
    det_keypoints: np.ndarray | None = None  # a pose detector's own keypoints, box order


class VideoRun:
    """Wires source -> detector/tracker -> pose pipeline -> sinks with one thread per stage."""

    def __init__(
        self, args: argparse.Namespace, source: FrameSource, detector: Any, pipe: PosePipeline
    ) -> None:
        self.args, self.source, self.detector, self.pipe = args, source, detector, pipe
        self.tracker = TRACKERS[args.tracker](iou_thr=args.track_iou)
        self.smoother = make_smoother(args.smooth)
        self.stop = threading.Event()  # graceful: read no more frames, finish those in flight
        self.abort = threading.Event()  # an error or a second Ctrl-C: everyone quits now
        self.errors: list[BaseException] = []
        self.q_frames: queue.Queue = queue.Queue(QUEUE_SIZE)
        self.q_dets: queue.Queue = queue.Queue(QUEUE_SIZE)
        self.q_out: queue.Queue = queue.Queue(2 * QUEUE_SIZE)
        self.stats = Stats()
        self.account = RunAccount()
        out = args.out
        # this run's files only beside each other; the earlier ones aside until this run ends well
        self.previous = set_aside_earlier_outputs(out, source.name)
        self.jsonl = JsonlWriter(out / f"{source.name}.jsonl", fsync=args.fsync)
        self.video_path = None if args.no_video else out / f"{source.name}.overlay.{args.video_format}"
        self.video: Any = None
        manifest_thr = (pipe.manifest.get("presence") or {}).get("threshold", 0.5)
        self.presence_thr = manifest_thr if args.presence_thr is None else args.presence_thr
        self.interrupted: str | None = None
        self.writer: threading.Thread | None = None

    # -- plumbing ----------------------------------------------------------------------
    def _put(self, q: queue.Queue, item: object) -> bool:
        while not self.abort.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue) -> object:
        while not self.abort.is_set():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue
        return END

    def _guard(self, fn: Any, downstream: queue.Queue | None, upstream: queue.Queue | None = None) -> Any:
        """Run a stage; on an error stop reading, let later stages finish what they hold, and
        keep draining ``upstream`` so earlier stages never block on a dead consumer. Only the
        writer (no ``downstream``) aborts everything: nothing after it could use the frames."""

        def run() -> None:
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - re-raised by the main thread
                self.errors.append(e)
                self.stop.set()
                if downstream is None:
                    self.abort.set()
                elif upstream is not None:
                    while self._get(upstream) is not END:
                        pass
            finally:
                if downstream is not None:
                    self._put(downstream, END)

        return run

    # -- stages --------------------------------------------------------------------------
    def _read(self) -> None:
        it = self.source.frames()
        n = 0
        while not (self.stop.is_set() or self.abort.is_set()):
            if self.args.max_frames is not None and n >= self.args.max_frames:
                break
            t = time.perf_counter()
            frame = next(it, None)
            if frame is None:
                break
            item = Item(frame, {"decode": (time.perf_counter() - t) * 1e3})
            if self.source.is_live and self.q_frames.full():
                try:  # live: keep latency low by dropping the oldest waiting frame
                    self.q_frames.get_nowait()
                    self.stats.live_dropped += 1
                except queue.Empty:
                    pass
            if not self._put(self.q_frames, item):
                break
            n += 1
            self.stats.read = n

    def _detect(self) -> None:
        k = max(1, self.args.det_every)
        seen = 0
        while (item := self._get(self.q_frames)) is not END:
            t = time.perf_counter()
            self.track(item, self.detector(item.frame) if seen % k == 0 else None)
            seen += 1
            item.ms["detect"] = (time.perf_counter() - t) * 1e3
            if not self._put(self.q_dets, item):
                return

    def track(self, item: Item, dets: Any) -> None:
        """Boxes of a detection (``dets``) or, between detections (None), the tracker's predictions."""
        f = item.frame
        if dets is None:
            item.boxes, item.scores, item.track_ids = self.tracker.predict(f.index, f.image.shape[:2])
            return
        self.account.add_detections(dets)
        item.boxes, item.scores = dets
        item.det_keypoints = getattr(dets, "keypoints", None)
        # Non-finite boxes (a json detector may hold them) get no track (id 0); hygiene drops them.
        ok = np.isfinite(item.boxes).all(axis=1) & np.isfinite(item.scores)
        item.track_ids = np.zeros(len(item.boxes), np.int64)
        item.track_ids[ok] = self.tracker.update(item.boxes[ok], item.scores[ok], f.index, f.image)
        item.detected = True

    def _pose(self) -> None:
        waiting: deque[Item] = deque()

        def frames() -> Iterator[tuple]:
            while (item := self._get(self.q_dets)) is not END:
                waiting.append(item)
                yield item.frame.image, item.boxes, item.scores

        for res in self.pipe.run_many(frames()):
            item = waiting.popleft()
            # Work and waits on the nets only; "total" would also count waiting for the detector.
            item.ms["pose"] = sum(res.timings_ms.get(k, 0.0) for k in POSE_PARTS)
            if self.smoother is not None:
                self.smoother(res, item.track_ids, item.frame.timestamp)
            if not self._put(self.q_out, (item, res)):
                return

    def _write(self) -> None:
        live = self.source.is_live
        total = None if live else self.source.total
        if total is not None and self.args.max_frames is not None:
            total = min(total, self.args.max_frames)
        bar = tqdm(
            total=total,
            desc=self.source.name,
            unit="frame",
            file=sys.stderr,
            disable=self.args.quiet,
            smoothing=0.1,
        )
        try:
            while (got := self._get(self.q_out)) is not END:
                item, res = got
                t = time.perf_counter()
                img = None
                if self.video_path is not None:
                    if getattr(self.args, "draw_regions", False):
                        draw_regions(item.frame.image, res)
                    img = draw_persons(
                        item.frame.image,
                        res,
                        item.track_ids,
                        self.presence_thr,
                        self.args.kpt_thr,
                        self.args.hide_low,
                    )
                    draw_hud(img, self._hud(item, res))
                t_draw = time.perf_counter()
                self.jsonl.write(
                    attach_det_keypoints(
                        frame_record(item.frame, item.track_ids, item.detected, res), item.det_keypoints
                    )
                )
                self.account.add_result(res)
                if img is not None:
                    if self.video is None:
                        h, w = img.shape[:2]
                        size = self.source.size or (w, h)
                        self.video = open_video_writer(self.video_path, self.source.fps, size)
                    self.video.write(img)
                t_end = time.perf_counter()
                item.ms["draw"] = (t_draw - t) * 1e3
                item.ms["write"] = (t_end - t_draw) * 1e3
                self.stats.add(item.ms, res)
                bar.update(1)
                bar.set_postfix_str(
                    f"{self.stats.fps:.1f} FPS, {self.stats.routed} people, large "
                    f"{self.stats.large / max(1, self.stats.routed):.0%}",
                    refresh=False,
                )
        finally:
            bar.close()
            self.close_sinks()

    def _hud(self, item: Item, res: FrameResult) -> list[str]:
        s = self.stats
        return [
            f"frame {item.frame.index}  " + (f"{s.fps:.1f} FPS" if s.fps else "-- FPS"),
            f"pose {item.ms.get('pose', 0):.0f} ms  det {item.ms.get('detect', 0):.0f} ms"
            + ("" if item.detected else " (tracked)"),
            f"{len(res)} people  large {res.large_fraction:.0%}",
        ]

    def close_sinks(self) -> None:
        self.jsonl.close()
        if self.video is not None:
            self.video.close()

    # -- driver ----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        threads = [
            threading.Thread(target=self._guard(self._read, self.q_frames), name="decode", daemon=True),
            threading.Thread(
                target=self._guard(self._detect, self.q_dets, self.q_frames), name="detect", daemon=True
            ),
        ]
        writer = threading.Thread(target=self._guard(self._write, None), name="write", daemon=True)
        self.writer = writer
        for t in (*threads, writer):
            t.start()
        try:
            self._pose()
        except BaseException as e:
            if not isinstance(e, KeyboardInterrupt):
                self.errors.append(e)
            self.abort.set() if isinstance(e, KeyboardInterrupt) else self.stop.set()
            raise
        finally:
            self.stop.set()
            if not self.abort.is_set():
                self._put(self.q_out, END)
                writer.join()
            else:
                # An error or a second Ctrl-C: unblock everyone, give the writer a moment to close files.
                self.abort.set()
                writer.join(timeout=5)
            self.abort.set()
            for t in threads:
                t.join(timeout=2)
            self.source.close()
        if self.errors:
            raise self.errors[0]
        return self.stats.summary(self.source)


def _install_signals(run: VideoRun) -> dict[int, Any]:
    """First SIGINT/SIGTERM: graceful stop; second: KeyboardInterrupt in the main thread."""

    def handler(signum: int, _frame: object) -> None:
        if run.stop.is_set():
            raise KeyboardInterrupt
        run.stop.set()
        run.interrupted = signal.Signals(signum).name
        print(f"\n{run.interrupted}: finishing frames in flight (again to quit now)", file=sys.stderr)

    old = {}
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            old[s] = signal.signal(s, handler)
    return old


def run_video(argv: list[str] | None = None) -> tuple[int, dict[str, Any] | None]:
    """The CLI body; returns (exit code, summary) so benchmarks can call it in-process."""
    parser = build_parser()
    args = parser.parse_args(argv)
    backend_options(args)  # --backend vs --triton-url, checked before any source is opened
    specs: list[tuple[str | None, str]] = [(None, s) for s in args.source]
    if args.sources is not None:
        from runtime.video.multicam import read_sources_file

        try:
            specs += read_sources_file(args.sources)
        except (OSError, ValueError) as e:
            parser.error(f"--sources {args.sources}: {e}")
    if not specs:
        parser.error("give --source (repeat it for several cameras) or --sources FILE")
    if len(specs) > 1:
        from runtime.video.multicam import run_multi

        return run_multi(args, specs)
    args.source = specs[0][1]
    # Expected errors (bad source, detector, manifest, records) propagate to the boundary: one line, exit 2.
    detector = detector_from(args)
    try:
        source = open_source(args.source, fps=args.fps, live=live_options(args), reader=args.reader)
    except BaseException:
        if hasattr(detector, "close"):
            detector.close()
        raise
    if specs[0][0]:
        source.name = specs[0][0]
    try:
        if isinstance(detector, JsonDetections) and source.kind == "folder":
            detector.bind_folder(args.source)
        pipe = PosePipeline(args.engines, pipeline_options(args))
    except BaseException:
        source.close()
        raise
    run = VideoRun(args, source, detector, pipe)
    old = _install_signals(run)
    try:
        summary = run.run()
    except KeyboardInterrupt:
        run.abort.set()
        if run.writer is not None:
            run.writer.join(timeout=5)  # the writer closes the files itself
        print("interrupted: outputs closed; every frame written so far is valid", file=sys.stderr)
        print(f"account: {run.account.line()} (frames written: {run.jsonl.lines})", file=sys.stderr)
        return EXIT_SIGINT, None
    except BackendError as e:  # e.g. the Triton server went away mid-run: one line, frames kept
        print(
            f"partial run: {run.account.line()}; {run.jsonl.lines} frames written to {run.jsonl.path}",
            file=sys.stderr,
        )
        print(f"error: {e}; every frame written so far is valid", file=sys.stderr)
        return EXIT_INCOMPLETE, None
    except BaseException:
        print(
            f"partial run: {run.account.line()}; {run.jsonl.lines} frames written to {run.jsonl.path}",
            file=sys.stderr,
        )
        raise
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        pipe.close()
        if hasattr(detector, "close"):
            detector.close()
    summary["interrupted"] = run.interrupted
    summary["account"] = run.account.as_dict()
    summary["outputs"] = {
        "jsonl": str(run.jsonl.path),
        "video": [str(p) for p in run.video.paths] if run.video is not None else [],
    }
    atomic_write_text(
        args.out / f"{source.name}.summary.json", json.dumps(json_safe(summary), indent=2, allow_nan=False)
    )
    print_summary(summary, args.out)
    print(f"account: {run.account.line()}")
    if summary["ended_early"]:
        print(
            f"error: {summary['ended_early']}; the {summary['frames']} frames decoded were written",
            file=sys.stderr,
        )
        return EXIT_INCOMPLETE, summary
    drop_earlier_outputs(run.previous)  # ended well (a Ctrl-C / SIGTERM stop is how live runs end)
    return {None: 0, "SIGINT": 130, "SIGTERM": 143}[run.interrupted], summary


def main(argv: list[str] | None = None) -> int:
    return guarded(lambda a: run_video(a)[0], argv, prog="runtime.video")

