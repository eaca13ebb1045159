"""``python -m runtime.video``: N cameras (one is N = 1) in; keypoints out as overlays and JSON Lines.

One engine for any number of sources. Each stage is an object and runs on its own
thread, joined by small bounded queues, so the slowest one sets the frame rate:

    ReadStage (per camera) -> DetectStage (detect + track; one per detector) ->
    PoseStage (main thread, every camera's crops in ONE batch per tick, then SmoothStage) ->
    WriteStage (per camera: overlay, JSON Lines, stats)

A top-down pipeline does not care which camera a crop came from, so each tick takes the
oldest waiting frame of every camera that has one (live cameras already keep only their
newest frame, runtime.io.live) and sends all their crops through router, small and large
net as one submission (``PosePipeline.run_ticks``: tick t+1 is cropped and routed while tick
t's nets run), then splits the results back per camera. A tick never waits for a camera that
has no frame, every ready camera is in every tick, ``--max-boxes`` caps each camera's people
and in budget mode the large-net slots are shared max-min fairly
(``runtime.pose.pipeline.fair_shares``). The artifacts' detector is shared the same way (one
``detect_many`` batch per round); HOG / json / onnx detectors keep state, so each camera has
its own.

Every finished frame is on disk at once (runtime.io.sinks). The first Ctrl-C or SIGTERM stops
reading and lets the frames in flight finish, a second one quits at once; how the run ends
(exit codes) is runtime.outcome's policy, shared with runtime.images.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from runtime.errors import EXIT_SIGINT, guarded
from runtime.io.records import json_safe
from runtime.outcome import end_code, started_run
from runtime.safe_io import atomic_write_text, drop_earlier_outputs
from runtime.video.args import VideoOptions, video_options
from runtime.video.opening import Opened, open_all
from runtime.video.stages import (
    END,
    Camera,
    DetectStage,
    Flow,
    PoseStage,
    ReadStage,
    WriteStage,
)
from runtime.video.stats import POSE_PARTS, STAGES, print_summary

__all__ = ["POSE_PARTS", "STAGES", "Engine", "main", "run", "run_video"]

Summary = dict[str, Any]


class Engine:
    """Wires N cameras through the stages; one camera is N = 1."""

    def __init__(self, opts: VideoOptions, opened: Opened) -> None:
        assert opened.pipe is not None, "open_all opens the pipeline"
        self.opts, self.flow = opts, Flow()
        manifest_thr = float((opened.pipe.manifest.get("presence") or {}).get("threshold", 0.5))
        thr = manifest_thr if opts.draw.presence_thr is None else opts.draw.presence_thr
        track_thr = {id(s): getattr(det, "track_thr", None) for det, srcs in opened.detectors for s in srcs}
        self.cams = [Camera(opts, src, thr, track_thr.get(id(src))) for src in opened.sources]
        by_source = {id(c.source): c for c in self.cams}
        self.detect = [
            DetectStage(self.flow, [by_source[id(s)] for s in srcs], det, opts.detect.every)
            for det, srcs in opened.detectors
        ]
        self.pose = PoseStage(self.flow, self.cams, opened.pipe)
        self.writers: list[threading.Thread] = []

    def _threads(self) -> list[threading.Thread]:
        f = self.flow
        threads = []
        for cam in self.cams:
            read = ReadStage(f, cam, self.opts.max_frames)
            threads.append(f.thread(f"decode-{cam.name}", read, read.finish, last=False))
        for i, det in enumerate(self.detect):
            threads.append(f.thread(f"detect-{i}", det, det.finish, last=False))
        for cam in self.cams:
            w = WriteStage(f, cam, self.opts)
            self.writers.append(f.thread(f"write-{cam.name}", w, w.finish, last=True))
        return threads

    def run(self) -> Summary:
        """Run to the end of every source (or a stop); re-raises the first stage error."""
        threads = self._threads()
        for t in (*threads, *self.writers):
            t.start()
        t0 = time.perf_counter()
        try:
            self.pose()
        except BaseException as e:
            if not isinstance(e, KeyboardInterrupt):
                self.flow.errors.append(e)
            (self.flow.abort if isinstance(e, KeyboardInterrupt) else self.flow.stop).set()
            raise
        finally:
            self._shut_down(threads)
        if self.flow.errors:
            raise self.flow.errors[0]
        return self.summary(time.perf_counter() - t0)

    def _shut_down(self, threads: list[threading.Thread]) -> None:
        """Let the writers finish what they hold (or, after an abort, give them a moment to close
        their files), then stop everything and close the sources."""
        self.flow.stop.set()
        aborted = self.flow.abort.is_set()
        if not aborted:
            for cam in self.cams:
                self.flow.put(cam.q_out, END)
        for w in self.writers:
            w.join(timeout=5 if aborted else None)
        self.flow.abort.set()
        for t in threads:
            t.join(timeout=2)
        for cam in self.cams:
            cam.source.close()

    def summary(self, wall: float) -> Summary:
        """One camera: its summary. Several: per camera plus the totals of the shared stages."""
        per = {cam.name: cam.stats.summary(cam.source) for cam in self.cams}
        if len(self.cams) == 1:
            return per[self.cams[0].name]
        batches = [n for d in self.detect for n in d.batches if len(d.cams) > 1]
        return {
            "cameras": per,
            "ticks": self.pose.ticks,
            "crops": self.pose.crops,
            "wall_s": wall,
            "detector_batches": {
                "calls": len(batches),
                "frames": sum(batches),
                "max": max(batches, default=0),
            },
            "crops_per_s": self.pose.crops / wall if wall > 0 else 0.0,
            "frames": sum(s["frames"] for s in per.values()),
            "ended_early": "; ".join(f"{n}: {s['ended_early']}" for n, s in per.items() if s["ended_early"])
            or None,
        }

    def partial(self) -> str:
        """What was written, for the ``partial run:`` line of a run that failed."""
        many = len(self.cams) > 1
        return "; ".join(
            f"{f'[{c.name}] ' if many else ''}{c.account.line()}, {c.jsonl.lines} frames written to {c.jsonl.path}"
            for c in self.cams
        )


def install_signals(flow: Flow) -> dict[int, Any]:
    """First SIGINT/SIGTERM: graceful stop; second: KeyboardInterrupt in the main thread."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        if flow.stop.is_set():
            raise KeyboardInterrupt
        flow.stop.set()
        flow.interrupted = signal.Signals(signum).name
        print(f"\n{flow.interrupted}: finishing frames in flight (again to quit now)", file=sys.stderr)

    old: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            old[s] = signal.signal(s, handler)
    return old


def write_summaries(engine: Engine, summary: Summary, out: Path) -> None:
    """``<camera>.summary.json`` per camera (and ``multicam.summary.json`` with the totals)."""
    many = len(engine.cams) > 1
    for cam in engine.cams:
        s = dict(
            summary["cameras"][cam.name] if many else summary,
            interrupted=engine.flow.interrupted,
            account=cam.account.as_dict(),
            outputs=cam.outputs(),
        )
        if not many:
            summary.update(s)
        atomic_write_text(
            out / f"{cam.name}.summary.json", json.dumps(json_safe(s), indent=2, allow_nan=False)
        )
        tag = f"[{cam.name}] " if many else ""
        print(tag, file=sys.stderr, end="")
        print_summary(s, out)
        print(f"{tag}account: {cam.account.line()}")
    if many:
        total = {**summary, "interrupted": engine.flow.interrupted}
        atomic_write_text(
            out / "multicam.summary.json", json.dumps(json_safe(total), indent=2, allow_nan=False)
        )
        print(
            f"{len(engine.cams)} cameras: {summary['frames']} frames, {summary['crops']} crops in "
            f"{summary['ticks']} ticks, {summary['crops_per_s']:.1f} crops/s overall",
            file=sys.stderr,
        )


def _interrupted(engine: Engine) -> int:
    """A second Ctrl-C: the writers close their files themselves; every frame written is valid."""
    engine.flow.abort.set()
    for w in engine.writers:
        w.join(timeout=5)
    print("interrupted: outputs closed; every frame written so far is valid", file=sys.stderr)
    for cam in engine.cams:
        print(
            f"[{cam.name}] account: {cam.account.line()} (frames written: {cam.jsonl.lines})", file=sys.stderr
        )
    return EXIT_SIGINT


def run(opts: VideoOptions) -> tuple[int, Summary | None]:
    """Run the video job the options describe; returns (exit code, summary)."""
    opened = open_all(opts)  # expected errors (a source, the detector, the artifacts, the backend): exit 2
    try:
        opts.out.mkdir(parents=True, exist_ok=True)
        engine = Engine(opts, opened)
        old = install_signals(engine.flow)
        try:
            with started_run(engine.partial, str(opts.out)):
                summary = engine.run()
        except KeyboardInterrupt:
            return _interrupted(engine), None
        finally:
            for s, h in old.items():
                signal.signal(s, h)
    finally:
        opened.close()
    write_summaries(engine, summary, opts.out)
    if summary["ended_early"]:
        print(
            f"error: {summary['ended_early']}; the {summary['frames']} frames decoded were written",
            file=sys.stderr,
        )
    else:  # ended well (a Ctrl-C / SIGTERM stop is how live runs end): earlier runs' outputs go
        for cam in engine.cams:
            drop_earlier_outputs(cam.previous)
    return end_code(engine.flow.interrupted, summary["ended_early"]), summary


def run_video(argv: list[str] | None = None) -> tuple[int, Summary | None]:
    """The CLI body; returns (exit code, summary) so benchmarks can call it in-process."""
    return run(video_options(argv))


def main(argv: list[str] | None = None) -> int:
    return guarded(lambda a: run_video(a)[0], argv, prog="runtime.video")
