"""Live sources (cameras, RTSP, GStreamer): timeouts, newest frame only, reconnect, clean end.

A live source must never hang the job, never hand out stale frames and never
end silently. One reader thread per source pulls frames as fast as the camera
sends them and keeps only the newest; the pipeline takes that one and the
frames it skipped are counted as drops. A read that fails or times out closes
the connection and reconnects with exponential backoff (one log line each);
after ``reconnect_tries`` failed reconnects in a row the stream is gone for
good: iteration ends and ``ended_early`` says why, which the video CLI turns
into exit code 3 after writing every frame it received.

Readers are the small ``Reader`` protocol (``read() -> frame | None``,
``reason``, ``close()``): OpenCV/FFmpeg here, PyGObject in runtime.io.gst_reader.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from runtime.io.sources import Frame, FrameSource

# Low-latency FFmpeg input options for RTSP (TCP, no buffering, tiny probe): measured here to
# open in ~0.4 s with ~2 frames of latency instead of ~5 s and stale frames with the defaults.
FFMPEG_LIVE_OPTIONS = "rtsp_transport;tcp|fflags;nobuffer|flags;low_delay|probesize;32|analyzeduration;0"
_FFMPEG_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_ENV_LOCK = threading.Lock()


@dataclass
class LiveOptions:
    open_timeout_s: float = 5.0  # a connection that shows no frame by then failed
    read_timeout_s: float = 3.0  # no frame for this long: the stream stalled, reconnect
    reconnect_tries: int = 5  # failed reconnects in a row before the stream counts as gone
    backoff_s: float = 0.5  # first wait before reconnecting; doubles up to backoff_max_s
    backoff_max_s: float = 8.0


def add_live_arguments(p: argparse.ArgumentParser) -> None:
    """The live-source flags of a CLI (defaults: LiveOptions)."""
    from runtime.cli.args import nonneg_int, positive_float

    d = LiveOptions()
    g = p.add_argument_group("live sources (cameras, rtsp://, GStreamer)")
    g.add_argument(
        "--reader",
        default="auto",
        choices=("auto", "gst", "ffmpeg"),
        help="how URLs and pipelines are read: GStreamer (PyGObject) or OpenCV/FFmpeg; auto = GStreamer "
        "where installed, FFmpeg otherwise",
    )
    g.add_argument(
        "--open-timeout",
        type=positive_float,
        default=d.open_timeout_s,
        metavar="S",
        help=f"seconds to wait for a connection's first frame (default {d.open_timeout_s:g})",
    )
    g.add_argument(
        "--read-timeout",
        type=positive_float,
        default=d.read_timeout_s,
        metavar="S",
        help=f"seconds without a frame before reconnecting (default {d.read_timeout_s:g})",
    )
    g.add_argument(
        "--reconnect-tries",
        type=nonneg_int,
        default=d.reconnect_tries,
        metavar="N",
        help=f"failed reconnects in a row before the stream is gone: exit 3 (default {d.reconnect_tries})",
    )
    g.add_argument(
        "--reconnect-backoff",
        type=positive_float,
        default=d.backoff_s,
        metavar="S",
        help=f"first wait before a reconnect, doubling up to {d.backoff_max_s:g} s (default {d.backoff_s:g})",
    )


def live_options(args: argparse.Namespace) -> LiveOptions:
    return LiveOptions(
        open_timeout_s=args.open_timeout,
        read_timeout_s=args.read_timeout,
        reconnect_tries=args.reconnect_tries,
        backoff_s=args.reconnect_backoff,
    )


class Reader(Protocol):
    """``read()`` returns a frame the caller owns: a writable, contiguous HxWx3 BGR uint8 array
    that no one else touches later (the overlay draws on it in place), or None. ``fps`` is the
    stream's own frame rate once the first frame was read (0 or None: it does not say)."""

    reason: str | None
    fps: float | None

    def read(self) -> np.ndarray | None: ...

    def close(self) -> None: ...


class FfmpegReader:
    """OpenCV's FFmpeg capture with open/read timeouts (no 30 s hangs on a frozen server)."""

    def __init__(self, url: str, open_timeout_s: float, read_timeout_s: float) -> None:
        self.reason: str | None = None
        # OpenCV reads its FFmpeg options from the environment at open time: set them for this
        # open only (a file opened later with probesize 32 would fail), unless the user set them.
        with _ENV_LOCK:
            user = os.environ.get(_FFMPEG_ENV)
            os.environ[_FFMPEG_ENV] = user if user is not None else FFMPEG_LIVE_OPTIONS
            try:
                self.cap = cv2.VideoCapture(
                    url,
                    cv2.CAP_FFMPEG,
                    [
                        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                        int(open_timeout_s * 1000),
                        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                        int(read_timeout_s * 1000),
                    ],
                )
            finally:
                if user is None:
                    os.environ.pop(_FFMPEG_ENV, None)
        if not self.cap.isOpened():
            self.cap.release()
            raise ConnectionError(f"no connection within {open_timeout_s:g} s")
        self.read_timeout_s = read_timeout_s
        self.fps: float | None = self.cap.get(cv2.CAP_PROP_FPS)  # 0 when the stream does not say

    def read(self) -> np.ndarray | None:
        ok, img = self.cap.read()
        if not ok or img is None:
            self.reason = f"no frame for {self.read_timeout_s:g} s, or the server closed the stream"
            return None
        return img

    def close(self) -> None:
        self.cap.release()


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class LatestFrameSource(FrameSource):
    """Newest-frame live source over any ``Reader`` factory; counts drops and reconnects."""

    def __init__(
        self,
        spec: str,
        kind: str,
        name: str,
        open_reader: Callable[[], Reader],
        options: LiveOptions | None = None,
    ) -> None:
        self.options = options or LiveOptions()
        self._open_reader = open_reader
        self.dropped = 0
        self.reconnects = 0
        self._cond = threading.Condition()
        self._latest: tuple[np.ndarray, float] | None = None
        self._done = False
        self._stop = threading.Event()
        self._reader: Reader | None = open_reader()  # a source that never opens fails here, once
        first = self._reader.read()
        if first is None:
            reason = self._reader.reason
            self._reader.close()
            raise ConnectionError(reason or "no first frame")
        self._latest = (first, time.time())
        super().__init__(
            spec, kind, name, getattr(self._reader, "fps", None), None, (first.shape[1], first.shape[0])
        )
        self._thread = threading.Thread(target=self._pump, name=f"live-{name}", daemon=True)
        self._thread.start()

    @property
    def is_live(self) -> bool:
        return True

    def _put(self, img: np.ndarray) -> None:
        with self._cond:
            if self._latest is not None:
                self.dropped += 1  # the consumer never saw the previous one
            self._latest = (img, time.time())
            self._cond.notify()

    def _reconnect(self, why: str | None) -> bool:
        """Close, then try to reopen with backoff; False once the stream is gone for good."""
        o = self.options
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        wait = o.backoff_s
        for attempt in range(1, o.reconnect_tries + 1):
            _log(
                f"warning: {self.name}: stream lost ({why}); reconnecting in {wait:.1f} s "
                f"({attempt}/{o.reconnect_tries})"
            )
            if self._stop.wait(wait):
                return False
            try:
                self._reader = self._open_reader()
                self.reconnects += 1
                _log(f"info: {self.name}: reconnected")
                return True
            except (ConnectionError, OSError, ValueError) as e:
                why = str(e)
            wait = min(o.backoff_max_s, wait * 2)
        self.ended_early = (
            f"stream {self.spec!r} is gone: {o.reconnect_tries} reconnects failed "
            f"(last: {why}); check the camera or server and run again"
        )
        return False

    def _pump(self) -> None:
        try:
            while not self._stop.is_set():
                img = self._reader.read() if self._reader is not None else None
                if img is None:
                    why = self._reader.reason if self._reader is not None else "not connected"
                    if self._stop.is_set() or not self._reconnect(why):
                        return
                    continue
                if img.ndim != 3 or img.dtype != np.uint8:
                    self.corrupt += 1
                    continue
                self._put(img)
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def frames(self) -> Iterator[Frame]:
        index, t0 = 0, time.monotonic()
        while True:
            with self._cond:
                while self._latest is None and not self._done:
                    self._cond.wait(0.5)
                if self._latest is None:
                    return
                img, wall = self._latest
                self._latest = None
            yield Frame(index, time.monotonic() - t0, wall, img)
            index += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.options.read_timeout_s + self.options.open_timeout_s + 1)
        if self._reader is not None:
            self._reader.close()
            self._reader = None
