"""The video engine's stages: read, detect + track, pose (+ smooth), write, and the shared flow.

Why apart from runtime.video.engine: each stage is one thread's job over small bounded
queues (the module docstring of runtime.video.engine draws the chain); the engine wires them
for N cameras, installs the signals, and turns the run into its summary and exit code.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from runtime.detectors.net import attach_det_keypoints
from runtime.io.draw import draw_hud, draw_persons
from runtime.io.draw_regions import draw_regions
from runtime.io.sinks import JsonlWriter, frame_record, open_video_writer, set_aside_earlier_outputs
from runtime.io.sources import Frame, FrameSource
from runtime.pose.account import RunAccount
from runtime.pose.pipeline import PosePipeline
from runtime.pose.results import FrameResult
from runtime.tracking.smoothing import OneEuroSmoother, make_smoother
from runtime.tracking.tracker import TRACKERS, BufferedTracker, IoUTracker
from runtime.video.args import DetectOptions, VideoOptions
from runtime.video.stats import POSE_PARTS, Stats

END = object()
QUEUE_SIZE = 4
IDLE_WAIT_S = 0.002


@dataclass
class Item:
    """One frame on its way through the stages."""

    frame: Frame
    ms: dict[str, float]
    boxes: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 4)))
    scores: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    track_ids: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    detected: bool = False
    det_keypoints: npt.NDArray[np.float32] | None = None  # a pose detector's own keypoints, box order


class Flow:
    """The run's shared state: graceful stop, abort, the errors the stage threads hit, and the
    bounded-queue helpers every stage uses (they give up once the run aborts)."""

    def __init__(self) -> None:
        self.stop = threading.Event()  # graceful: read no more frames, finish those in flight
        self.abort = threading.Event()  # an error or a second Ctrl-C: everyone quits now
        self.errors: list[BaseException] = []
        self.interrupted: str | None = None

    def put(self, q: queue.Queue[Any], item: object) -> bool:
        while not self.abort.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(self, q: queue.Queue[Any]) -> Any:
        while not self.abort.is_set():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue
        return END

    def thread(
        self, name: str, body: Callable[[], None], finish: Callable[[], None], last: bool
    ) -> threading.Thread:
        """A stage thread. On an error: record it and stop reading; ``finish`` (pass END on,
        drain what is upstream) always runs so neighbours never block on a dead stage. Only a
        ``last`` stage (the writer) aborts everything: nothing after it could use the frames."""

        def run() -> None:
            try:
                body()
            except BaseException as e:  # noqa: BLE001 - re-raised by the main thread
                self.errors.append(e)
                self.stop.set()
                if last:
                    self.abort.set()
            finally:
                finish()

        return threading.Thread(target=run, name=name, daemon=True)


def make_tracker(d: DetectOptions, det_track_thr: float | None) -> IoUTracker | BufferedTracker:
    """The camera's tracker. The buffered one starts tracks from boxes scoring at least
    ``--track-thr``, else the detector's own threshold (``det_track_thr``, from its manifest
    entry), else its default; the IoU tracker starts one from every box."""
    if d.tracker != "buffered":
        other: IoUTracker = TRACKERS[d.tracker](iou_thr=d.track_iou)
        return other
    thr = d.track_thr if d.track_thr is not None else det_track_thr
    return BufferedTracker(iou_thr=d.track_iou) if thr is None else BufferedTracker(d.track_iou, high_thr=thr)


class Camera:
    """One source and everything kept per camera: its queues, tracker, smoother, sinks,
    stats and account. Stages move :class:`Item` s between its queues."""

    def __init__(
        self, opts: VideoOptions, source: FrameSource, presence_thr: float, det_track_thr: float | None = None
    ) -> None:
        self.source, self.name = source, source.name
        self.q_frames: queue.Queue[Any] = queue.Queue(QUEUE_SIZE)
        self.q_dets: queue.Queue[Any] = queue.Queue(QUEUE_SIZE)
        self.q_out: queue.Queue[Any] = queue.Queue(2 * QUEUE_SIZE)
        self.tracker = make_tracker(opts.detect, det_track_thr)
        self.smoother: OneEuroSmoother | None = make_smoother(opts.smooth)
        self.stats = Stats()
        self.account = RunAccount()
        self.presence_thr = presence_thr
        # this run's files only beside each other; the earlier ones aside until this run ends well
        self.previous = set_aside_earlier_outputs(opts.out, self.name)
        self.jsonl = JsonlWriter(opts.out / f"{self.name}.jsonl", fsync=opts.fsync)
        self.video_path = (
            opts.out / f"{self.name}.overlay.{opts.draw.video_format}" if opts.draw.video else None
        )
        self.video: Any = None

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

    def outputs(self) -> dict[str, Any]:
        return {
            "jsonl": str(self.jsonl.path),
            "video": [str(p) for p in self.video.paths] if self.video is not None else [],
        }

    def close_sinks(self) -> None:
        self.jsonl.close()
        if self.video is not None:
            self.video.close()


def take_oldest(
    flow: Flow, active: list[Camera], attr: str, on_end: Callable[[Camera], None] | None = None
) -> list[tuple[Camera, Item]]:
    """The oldest waiting item of every camera in ``active`` that has one; a camera whose queue
    yields END leaves ``active`` (``on_end(cam)`` passes the end on). One camera: blocks until it
    has an item; several: never waits (a stalled camera cannot hold the others back)."""
    batch: list[tuple[Camera, Item]] = []
    for cam in list(active):
        q: queue.Queue[Any] = getattr(cam, attr)
        try:
            item = flow.get(q) if len(active) == 1 else q.get_nowait()
        except queue.Empty:
            continue
        if item is END:
            active.remove(cam)
            if on_end is not None:
                on_end(cam)
            continue
        batch.append((cam, item))
    return batch


class ReadStage:
    """Decodes one camera's frames; a live camera drops its oldest waiting frame rather than lag."""

    def __init__(self, flow: Flow, cam: Camera, max_frames: int | None) -> None:
        self.flow, self.cam, self.max_frames = flow, cam, max_frames

    def __call__(self) -> None:
        cam, it = self.cam, self.cam.source.frames()
        while not (self.flow.stop.is_set() or self.flow.abort.is_set()) and cam.stats.read != self.max_frames:
            t = time.perf_counter()
            frame = next(it, None)
            if frame is None:
                break
            item = Item(frame, {"decode": (time.perf_counter() - t) * 1e3})
            if cam.source.is_live and cam.q_frames.full():
                self._drop_oldest()
            if not self.flow.put(cam.q_frames, item):
                break
            cam.stats.read += 1

    def _drop_oldest(self) -> None:
        try:  # live: keep latency low by dropping the oldest waiting frame
            self.cam.q_frames.get_nowait()
            self.cam.stats.live_dropped += 1
        except queue.Empty:
            pass

    def finish(self) -> None:
        self.flow.put(self.cam.q_frames, END)


class DetectStage:
    """Detection + tracking for the cameras sharing one detector. Each round takes the oldest
    waiting frame of each of them; those due (every ``--det-every``-th frame of a camera) go to the
    detector together, the others get the camera's tracker predictions."""

    def __init__(self, flow: Flow, cams: list[Camera], detector: Any, every: int) -> None:
        self.flow, self.cams, self.detector, self.every = flow, cams, detector, max(1, every)
        self.active = list(cams)
        self.seen = {id(c): 0 for c in cams}
        self.batches: list[int] = []  # frames per detector call

    def detect(self, frames: list[Frame]) -> list[Any]:
        """The one call site of the detector: a batching one gets every due frame at once."""
        if hasattr(self.detector, "detect_many"):
            return list(self.detector.detect_many([f.image for f in frames]))
        return [self.detector(f) for f in frames]

    def __call__(self) -> None:
        while self.active and not self.flow.abort.is_set():
            batch = take_oldest(self.flow, self.active, "q_frames", on_end=self._end)
            if not batch:
                time.sleep(IDLE_WAIT_S)
                continue
            t = time.perf_counter()
            due = [(cam, item) for cam, item in batch if self.seen[id(cam)] % self.every == 0]
            found = dict(zip((id(item) for _, item in due), self.detect([item.frame for _, item in due])))
            if due:
                self.batches.append(len(due))
            for cam, item in batch:
                cam.track(item, found.get(id(item)))
                self.seen[id(cam)] += 1
            ms = (time.perf_counter() - t) * 1e3 / len(batch)
            for cam, item in batch:
                item.ms["detect"] = ms
                if not self.flow.put(cam.q_dets, item):
                    return

    def _end(self, cam: Camera) -> None:
        self.flow.put(cam.q_dets, END)

    def finish(self) -> None:
        """Pass the end on and keep draining the readers so they never block on a dead stage."""
        for cam in self.active:
            self.flow.put(cam.q_dets, END)
        for cam in self.active:
            while self.flow.get(cam.q_frames) is not END:
                pass
        self.active = []


class SmoothStage:
    """``--smooth``: each camera's One-Euro filter over its tracks, in frame order."""

    def __call__(self, cam: Camera, item: Item, res: FrameResult) -> None:
        if cam.smoother is not None:
            cam.smoother(res, item.track_ids, item.frame.timestamp)


class PoseStage:
    """Every camera's crops in one pose batch per tick, then smoothing, then to each camera's writer."""

    def __init__(self, flow: Flow, cams: list[Camera], pipe: PosePipeline) -> None:
        self.flow, self.cams, self.pipe = flow, cams, pipe
        self.smooth = SmoothStage()
        self.ticks = self.crops = 0

    def _views(self, waiting: deque[list[tuple[Camera, Item]]]) -> Iterator[list[tuple[Any, Any, Any]]]:
        active = list(self.cams)
        while active and not self.flow.abort.is_set():
            batch = take_oldest(self.flow, active, "q_dets")
            if not batch:
                time.sleep(IDLE_WAIT_S)
                continue
            waiting.append(batch)
            self.ticks += 1
            self.crops += sum(len(item.boxes) for _, item in batch)
            yield [(item.frame.image, item.boxes, item.scores) for _, item in batch]

    def __call__(self) -> None:
        waiting: deque[list[tuple[Camera, Item]]] = deque()
        for results in self.pipe.run_ticks(self._views(waiting)):
            for (cam, item), res in zip(waiting.popleft(), results):
                # Work and waits on the nets only; "total" would also count waiting for the detector.
                item.ms["pose"] = sum(res.timings_ms.get(k, 0.0) for k in POSE_PARTS)
                self.smooth(cam, item, res)
                if not self.flow.put(cam.q_out, (item, res)):
                    return


class WriteStage:
    """One camera's outputs: the overlay (when asked for), the JSON Lines record, stats, progress."""

    def __init__(self, flow: Flow, cam: Camera, opts: VideoOptions) -> None:
        self.flow, self.cam, self.draw, self.opts = flow, cam, opts.draw, opts

    def _bar(self) -> Any:
        src = self.cam.source
        total = None if src.is_live else src.total
        if total is not None and self.opts.max_frames is not None:
            total = min(total, self.opts.max_frames)
        return tqdm(
            total=total,
            desc=self.cam.name,
            unit="frame",
            file=sys.stderr,
            disable=self.opts.quiet,
            smoothing=0.1,
        )

    def __call__(self) -> None:
        bar = self._bar()
        try:
            while (got := self.flow.get(self.cam.q_out)) is not END:
                self.write(*got)
                s = self.cam.stats
                bar.update(1)
                bar.set_postfix_str(
                    f"{s.fps:.1f} FPS, {s.routed} people, large {s.large / max(1, s.routed):.0%}",
                    refresh=False,
                )
        finally:
            bar.close()
            self.cam.close_sinks()

    def overlay(self, item: Item, res: FrameResult) -> Any:
        d = self.draw
        if d.regions:
            draw_regions(item.frame.image, res)
        img = draw_persons(
            item.frame.image, res, item.track_ids, self.cam.presence_thr, d.kpt_thr, d.hide_low
        )
        draw_hud(img, self._hud(item, res))
        return img

    def write(self, item: Item, res: FrameResult) -> None:
        cam = self.cam
        t = time.perf_counter()
        img = self.overlay(item, res) if cam.video_path is not None else None
        t_draw = time.perf_counter()
        record = frame_record(item.frame, item.track_ids, item.detected, res)
        cam.jsonl.write(attach_det_keypoints(record, item.det_keypoints))
        cam.account.add_result(res)
        if img is not None:
            if cam.video is None:
                h, w = img.shape[:2]
                assert cam.video_path is not None  # img is drawn only when there is an overlay
                cam.video = open_video_writer(cam.video_path, cam.source.fps, cam.source.size or (w, h))
            cam.video.write(img)
        item.ms["draw"] = (t_draw - t) * 1e3
        item.ms["write"] = (time.perf_counter() - t_draw) * 1e3
        cam.stats.add(item.ms, res)

    def _hud(self, item: Item, res: FrameResult) -> list[str]:
        s = self.cam.stats
        return [
            f"frame {item.frame.index}  " + (f"{s.fps:.1f} FPS" if s.fps else "-- FPS"),
            f"pose {item.ms.get('pose', 0):.0f} ms  det {item.ms.get('detect', 0):.0f} ms"
            + ("" if item.detected else " (tracked)"),
            f"{len(res)} people  large {res.large_fraction:.0%}",
        ]

    def finish(self) -> None:
        pass
