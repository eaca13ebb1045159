"""Frame sources read to their end: video files, cameras, OpenCV GStreamer pipelines, image folders.

:class:`FrameSource` is what every stage reads from; the live (newest-frame) sources in
runtime.io.live build on it, and runtime.io.source_spec turns a ``--source`` value into one
of them (so this module imports neither). Anything that cannot be opened fails once, with a
:class:`SourceError` that names the input and says what to do; damaged frames later on are
skipped and counted instead of ending the run.
"""

from __future__ import annotations

import re
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
# After this many failed reads in a row a file is at its end (or broken beyond repair).
MAX_CONSECUTIVE_FAILURES = 8
STREAM_RECONNECTS = 3
# The one frame rate for a source that reports none (a live stream's 0, a file without it):
# overlay writers, file timestamps and the summary all use FrameSource.fps, never the raw value.
DEFAULT_FPS = 30.0


class SourceError(RuntimeError):
    """The source cannot be opened or read; the message names it and the fix."""


@dataclass
class Frame:
    index: int  # position in the source (damaged frames use up an index too)
    timestamp: float  # seconds: media time for files/folders, time since start for live sources
    wall_time: float  # unix time when the frame was decoded
    image: np.ndarray  # HxWx3 BGR uint8, the frame's own writable copy (the overlay draws on it)
    name: str | None = None  # file name for image folders


def gstreamer_available() -> bool:
    """OpenCV's build table says whether its VideoCapture can run GStreamer pipelines."""
    m = re.search(r"GStreamer:\s*(\w+)", cv2.getBuildInformation())
    return bool(m and m.group(1).upper() == "YES")


def _mp4_diagnosis(path: Path) -> str:
    """Why FFmpeg refused an MP4/MOV: the usual cause is a missing 'moov' index (an
    interrupted recording or copy). Walks the top-level boxes only, so it is cheap."""
    boxes: list[str] = []
    try:
        with open(path, "rb") as f:
            size_total = path.stat().st_size
            pos = 0
            while pos + 8 <= size_total and len(boxes) < 64:
                f.seek(pos)
                size, kind = struct.unpack(">I4s", f.read(8))
                if size == 1:
                    size = struct.unpack(">Q", f.read(8))[0]
                boxes.append(kind.decode("latin-1"))
                if size < 8 or pos + size > size_total:
                    return (
                        f"the file stops inside its '{boxes[-1]}' box ({size_total} of {pos + size} bytes): "
                        "it is truncated" + ("" if "moov" in boxes else " and has no 'moov' index")
                    )
                pos += size
    except (OSError, struct.error):
        return "it could not be parsed as MP4"
    if "moov" not in boxes:
        return "it has no 'moov' index (a recording or copy that was cut off)"
    return "its MP4 structure looks complete, so the codec may be unsupported by this OpenCV build"


def _natural_key(p: Path) -> list[int | str]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def usable_fps(fps: float | None) -> float | None:
    """A reported frame rate, or None when it says nothing (0, negative, NaN, absurd)."""
    return float(fps) if fps is not None and 0 < fps < 1000 else None


class FrameSource:
    """Iterate :class:`Frame` objects; ``corrupt`` counts frames skipped as unreadable and
    ``ended_early`` says (once iteration ends) if a file stopped before its declared length.
    ``fps`` is always usable (DEFAULT_FPS when the source reports none; ``fps_reported`` is
    then None), so no consumer needs its own fallback."""

    def __init__(
        self,
        spec: str,
        kind: str,
        name: str,
        fps: float | None,
        total: int | None,
        size: tuple[int, int] | None,
    ) -> None:
        self.spec, self.kind, self.name = spec, kind, name
        self.fps_reported = usable_fps(fps)
        self.fps = self.fps_reported or DEFAULT_FPS
        self.total, self.size = total, size
        self.corrupt = 0
        self.ended_early: str | None = None

    @property
    def is_live(self) -> bool:
        return self.kind in ("camera", "url", "gstreamer")

    def frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class CaptureSource(FrameSource):
    """Anything cv2.VideoCapture opens."""

    def __init__(self, spec: str, kind: str, name: str, target: str | int, api: int = cv2.CAP_ANY) -> None:
        self._target, self._api = target, api
        self.cap = self._open()
        if not self.cap.isOpened():
            raise SourceError(self._open_failure(spec, kind))
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        n = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT))
        total = n if kind == "file" and n > 0 else None
        size = (int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        super().__init__(spec, kind, name, fps, total, size if min(size) > 0 else None)

    def _open(self) -> cv2.VideoCapture:
        return cv2.VideoCapture(self._target, self._api)

    def _open_failure(self, spec: str, kind: str) -> str:
        if kind == "file":
            p = Path(spec)
            why = (
                _mp4_diagnosis(p)
                if p.suffix.lower() in (".mp4", ".mov", ".m4v")
                else "it is truncated, damaged or in a format this OpenCV build cannot decode"
            )
            return f"cannot open video file {spec!r}: {why}. Re-copy or re-encode the file and try again"
        if kind == "camera":
            return (
                f"cannot open camera {spec!r}: no such device or it is busy (check `ls /dev/video*`, "
                "that no other program holds it, and that you may access it: group 'video')"
            )
        if kind == "gstreamer":
            return (
                f"GStreamer could not start the pipeline {spec!r}: test it with "
                "`gst-launch-1.0 <pipeline with fakesink>` (on a Jetson CSI camera: is nvargus-daemon running?)"
            )
        return (
            f"cannot open stream {spec!r}: unreachable, wrong URL or credentials, or a protocol "
            "this OpenCV build lacks (try it with `ffplay URL`)"
        )

    def frames(self) -> Iterator[Frame]:
        index, fails, reconnects = 0, 0, 0
        t_start = time.monotonic()
        while True:
            if not self.cap.grab():
                if self.is_live:
                    if fails < MAX_CONSECUTIVE_FAILURES:
                        fails += 1
                        time.sleep(0.05)
                        continue
                    if reconnects < STREAM_RECONNECTS:
                        reconnects += 1
                        print(
                            f"warning: {self.name}: no frames, reconnecting ({reconnects}/{STREAM_RECONNECTS})",
                            file=sys.stderr,
                        )
                        self.cap.release()
                        time.sleep(1.0)
                        self.cap, fails = self._open(), 0
                        continue
                    return
                if self.total is not None and index < self.total and fails < MAX_CONSECUTIVE_FAILURES:
                    fails += 1  # a damaged packet inside the file: skip it and count it
                    self.corrupt += 1
                    index += 1
                    continue
                break
            ok, img = self.cap.retrieve()
            if not ok or img is None or img.ndim != 3 or (self.size and img.shape[1::-1] != self.size):
                self.corrupt += 1
                index += 1
                continue
            fails = 0
            ts = index / self.fps if not self.is_live else time.monotonic() - t_start
            yield Frame(index, ts, time.time(), img)
            index += 1
        if self.total is not None:
            # Trailing failures were the end of a short file, not damaged frames.
            self.corrupt -= fails
            good = index - fails
            if good < self.total - max(1, self.total // 100):
                self.ended_early = (
                    f"video file {self.spec!r} ended after {good} of its {self.total} frames: "
                    "the file is truncated or damaged"
                )

    def close(self) -> None:
        self.cap.release()


class FolderSource(FrameSource):
    """A folder of images in natural name order, played as a video at ``fps``."""

    def __init__(self, spec: str, fps: float) -> None:
        folder = Path(spec)
        self.files = sorted((f for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTS), key=_natural_key)
        if not self.files:
            raise SourceError(f"folder {spec!r} holds no images ({', '.join(sorted(IMAGE_EXTS))})")
        first = cv2.imread(str(self.files[0]))
        size = None if first is None else (first.shape[1], first.shape[0])
        super().__init__(spec, "folder", folder.name or "images", fps, len(self.files), size)

    def frames(self) -> Iterator[Frame]:
        for i, f in enumerate(self.files):
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                self.corrupt += 1
                print(f"warning: {f} is not a readable image, skipped", file=sys.stderr)
                continue
            yield Frame(i, i / self.fps, time.time(), img, f.name)
