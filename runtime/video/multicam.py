"""Many cameras, one process, one set of networks: every camera's crops in one batch per tick.

A top-down pipeline does not care which camera a crop came from, so each tick
takes the oldest waiting frame of every camera that has one (live cameras
already keep only their newest frame, runtime.io.live), sends all their crops
through router, small and large net as ONE submission
(``PosePipeline.run_ticks``, pipelined like ``run_many``), and splits the
results back per camera in input order. Each camera keeps its own reader,
detector + tracker and writer threads (the stages of runtime.video.engine), its own
outputs (``<name>.jsonl``, overlay, ``<name>.summary.json``) and its own FPS
and drop counts; ``multicam.summary.json`` adds the totals.

Fairness: a tick never waits for a camera that has no frame (a stalled camera
cannot hold the others back), every ready camera is in every tick (a crowded
camera cannot take another's turn), ``--max-boxes`` caps each camera's people,
and in budget mode the tick's large-net slots are shared max-min fairly
between cameras (``runtime.pose.pipeline.fair_shares``).
"""

from __future__ import annotations

import argparse
import json
import queue
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runtime.io.safe_io import drop_earlier_outputs
from runtime.io.sources import FrameSource
from runtime.pose.pipeline import PosePipeline
from runtime.video.engine import END, VideoRun
from runtime.video.stats import POSE_PARTS, print_summary

IDLE_WAIT_S = 0.002


def read_sources_file(path: Path) -> list[tuple[str | None, str]]:
    """``name  spec`` per line (``#`` comments, blank lines ignored); a line with one field is a
    spec without a name."""
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        out.append((parts[0], parts[1].strip()) if len(parts) == 2 else (None, parts[0]))
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


def _take_oldest(active: list[VideoRun], queue_name: str, on_end: Any = None) -> list[tuple[VideoRun, Any]]:
    """The oldest waiting item of every camera in ``active`` that has one (never waits); a camera
    whose queue yields END leaves ``active`` (``on_end(cam)`` passes the end downstream)."""
    batch = []
    for cam in list(active):
        try:
            item = getattr(cam, queue_name).get_nowait()
        except queue.Empty:
            continue
        if item is END:
            active.remove(cam)
            if on_end is not None:
                on_end(cam)
            continue
        batch.append((cam, item))
    return batch


class MultiRun:
    """Per-camera stage threads (read, detect+track, write) around one shared pose stage."""

    def __init__(
        self,
        args: argparse.Namespace,
        sources: list[FrameSource],
        detectors: list[Any],
        pipe: PosePipeline,
        shared_detector: Any = None,
    ) -> None:
        self.args, self.pipe = args, pipe
        self.shared_detector = shared_detector  # a network detector: one batch of every camera's frames
        self.stop, self.abort = threading.Event(), threading.Event()
        self.interrupted: str | None = None
        self.cams = [VideoRun(args, src, det, pipe) for src, det in zip(sources, detectors)]
        for cam in self.cams:  # one Ctrl-C / error stops every camera
            cam.stop, cam.abort = self.stop, self.abort
        self.ticks = 0
        self.crops = 0
        self.det_batches: list[int] = []  # frames per detector call (batched detection only)
        self.writer = None  # the signal handler in runtime.video.engine joins this if set

    @property
    def errors(self) -> list[BaseException]:
        return [e for cam in self.cams for e in cam.errors]

    def _views(self, waiting: deque) -> Iterator[list[tuple]]:
        active = list(self.cams)
        while active and not self.abort.is_set():
            batch = _take_oldest(active, "q_dets")
            if not batch:
                time.sleep(IDLE_WAIT_S)
                continue
            waiting.append(batch)
            self.ticks += 1
            self.crops += sum(len(item.boxes) for _, item in batch)
            yield [(item.frame.image, item.boxes, item.scores) for _, item in batch]

    def _detect_batched(self) -> None:
        """One detection stage for all cameras: each round takes the oldest waiting frame of every
        camera that has one and runs the detector on them as one batch (``detect_many``, chunked by
        the detector's batch profile); each camera's own tracker then names the boxes."""
        det, k = self.shared_detector, max(1, self.args.det_every)
        active, seen = list(self.cams), {id(c): 0 for c in self.cams}
        try:
            while active and not self.abort.is_set():
                batch = _take_oldest(active, "q_frames", on_end=lambda cam: cam._put(cam.q_dets, END))
                if not batch:
                    time.sleep(IDLE_WAIT_S)
                    continue
                t = time.perf_counter()
                due = [(cam, item) for cam, item in batch if seen[id(cam)] % k == 0]
                if due:
                    self.det_batches.append(len(due))
                found = iter(det.detect_many([item.frame.image for _, item in due]) if due else [])
                for cam, item in batch:
                    cam.track(item, next(found) if seen[id(cam)] % k == 0 else None)
                    seen[id(cam)] += 1
                ms = (time.perf_counter() - t) * 1e3 / len(batch)
                for cam, item in batch:
                    item.ms["detect"] = ms
                    if not cam._put(cam.q_dets, item):
                        return
        except BaseException as e:  # noqa: BLE001 - re-raised by the main thread
            self.cams[0].errors.append(e)
            self.stop.set()
        finally:
            for cam in active:
                cam._put(cam.q_dets, END)

    def _pose(self) -> None:
        waiting: deque = deque()
        for results in self.pipe.run_ticks(self._views(waiting)):
            batch = waiting.popleft()
            for (cam, item), res in zip(batch, results):
                item.ms["pose"] = sum(res.timings_ms.get(k, 0.0) for k in POSE_PARTS)
                if not cam._put(cam.q_out, (item, res)):
                    return

    def run(self) -> dict[str, Any]:
        threads, writers = [], []
        for cam in self.cams:
            threads.append(
                threading.Thread(
                    target=cam._guard(cam._read, cam.q_frames), daemon=True, name=f"decode-{cam.source.name}"
                )
            )
            if self.shared_detector is None:
                threads.append(
                    threading.Thread(
                        target=cam._guard(cam._detect, cam.q_dets, cam.q_frames),
                        daemon=True,
                        name=f"detect-{cam.source.name}",
                    )
                )
            writers.append(
                threading.Thread(
                    target=cam._guard(cam._write, None), daemon=True, name=f"write-{cam.source.name}"
                )
            )
        if self.shared_detector is not None:
            threads.append(threading.Thread(target=self._detect_batched, daemon=True, name="detect-all"))
        for t in (*threads, *writers):
            t.start()
        t0 = time.perf_counter()
        try:
            self._pose()
        except BaseException as e:
            if not isinstance(e, KeyboardInterrupt):
                self.cams[0].errors.append(e)
            (self.abort if isinstance(e, KeyboardInterrupt) else self.stop).set()
            raise
        finally:
            self.stop.set()
            if not self.abort.is_set():
                for cam in self.cams:
                    cam._put(cam.q_out, END)
                for w in writers:
                    w.join()
            else:
                for w in writers:
                    w.join(timeout=5)
            self.abort.set()
            for t in threads:
                t.join(timeout=2)
            for cam in self.cams:
                cam.source.close()
        if self.errors:
            raise self.errors[0]
        wall = time.perf_counter() - t0
        per = {cam.source.name: cam.stats.summary(cam.source) for cam in self.cams}
        return {
            "cameras": per,
            "ticks": self.ticks,
            "crops": self.crops,
            "wall_s": wall,
            "detector_batches": {
                "calls": len(self.det_batches),
                "frames": sum(self.det_batches),
                "max": max(self.det_batches, default=0),
            },
            "crops_per_s": self.crops / wall if wall > 0 else 0.0,
            "frames": sum(s["frames"] for s in per.values()),
            "ended_early": "; ".join(f"{n}: {s['ended_early']}" for n, s in per.items() if s["ended_early"])
            or None,
        }


def write_summaries(run: MultiRun, summary: dict[str, Any], out: Path) -> None:
    from runtime.io.records import json_safe
    from runtime.io.safe_io import atomic_write_text

    for cam in run.cams:
        s = dict(
            summary["cameras"][cam.source.name],
            interrupted=run.interrupted,
            account=cam.account.as_dict(),
            outputs={
                "jsonl": str(cam.jsonl.path),
                "video": [str(p) for p in cam.video.paths] if cam.video is not None else [],
            },
        )
        atomic_write_text(
            out / f"{cam.source.name}.summary.json", json.dumps(json_safe(s), indent=2, allow_nan=False)
        )
        print(f"[{cam.source.name}]", file=sys.stderr, end=" ")
        print_summary(s, out)
        print(f"[{cam.source.name}] account: {cam.account.line()}")
    atomic_write_text(
        out / "multicam.summary.json",
        json.dumps(json_safe({**summary, "interrupted": run.interrupted}), indent=2, allow_nan=False),
    )
    print(
        f"{len(run.cams)} cameras: {summary['frames']} frames, {summary['crops']} crops in {summary['ticks']} "
        f"ticks, {summary['crops_per_s']:.1f} crops/s overall",
        file=sys.stderr,
    )


def run_multi(
    args: argparse.Namespace, specs: list[tuple[str | None, str]]
) -> tuple[int, dict[str, Any] | None]:
    """The video CLI with several sources (``--source`` repeated or ``--sources FILE``)."""
    from runtime.artifacts.manifest import load_manifest
    from runtime.cli.args import backend_options
    from runtime.detectors.net import NetDetector
    from runtime.errors import EXIT_INCOMPLETE, EXIT_SIGINT
    from runtime.io.live import live_options
    from runtime.io.sources import open_source
    from runtime.video.args import detector_from, pipeline_options
    from runtime.video.engine import _install_signals

    sources: list[FrameSource] = []
    try:  # expected errors (a source, the detector, the manifest) reach the CLI boundary: one line, exit 2
        for _, spec in specs:
            sources.append(open_source(spec, fps=args.fps, live=live_options(args), reader=args.reader))
        for src, name in zip(sources, unique_names([n or s.name for (n, _), s in zip(specs, sources)])):
            src.name = name
        first = detector_from(args)
        if isinstance(first, NetDetector) and first.shares_cameras:  # one runner, every camera in one batch
            first.close()
            entry = load_manifest(args.engines)["models"]["detector"]
            shared = NetDetector(
                args.engines,
                backend=args.backend,
                precision=args.precision,
                score_thr=args.det_thr,
                iou_thr=args.det_nms,
                max_batch=max(1, int(entry.get("max_batch", len(sources)))),
                backend_options=backend_options(args),
            )
            detectors = [None] * len(sources)
        else:  # HOG / json / onnx: one per camera (own state), each on its camera's thread
            shared = None
            detectors = [first] + [detector_from(args) for _ in sources[1:]]
        pipe = PosePipeline(args.engines, pipeline_options(args))
    except BaseException:
        for s in sources:
            s.close()
        for d in [*(locals().get("detectors") or []), locals().get("shared")]:
            if d is not None and hasattr(d, "close"):
                d.close()
        raise
    args.out.mkdir(parents=True, exist_ok=True)
    run = MultiRun(args, sources, detectors, pipe, shared)
    old = _install_signals(run)
    try:
        summary = run.run()
    except KeyboardInterrupt:
        run.abort.set()
        print("interrupted: outputs closed; every frame written so far is valid", file=sys.stderr)
        for cam in run.cams:
            print(
                f"[{cam.source.name}] account: {cam.account.line()} (frames written: {cam.jsonl.lines})",
                file=sys.stderr,
            )
        return EXIT_SIGINT, None
    except BaseException:
        for cam in run.cams:
            print(
                f"[{cam.source.name}] partial run: {cam.account.line()}; {cam.jsonl.lines} frames written to "
                f"{cam.jsonl.path}",
                file=sys.stderr,
            )
        raise
    finally:
        import signal

        for s, h in old.items():
            signal.signal(s, h)
        pipe.close()
        for d in [*detectors, shared]:
            if d is not None and hasattr(d, "close"):
                d.close()
    write_summaries(run, summary, args.out)
    if summary["ended_early"]:
        print(f"error: {summary['ended_early']}; every frame decoded was written", file=sys.stderr)
        return EXIT_INCOMPLETE, summary
    for cam in run.cams:  # ended well: the earlier runs' outputs set aside at the start go
        drop_earlier_outputs(cam.previous)
    return {None: 0, "SIGINT": 130, "SIGTERM": 143}[run.interrupted], summary
