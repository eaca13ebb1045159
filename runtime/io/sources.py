"""Frame sources: video files, cameras, network streams, GStreamer pipelines, image folders.

One function, :func:`open_source`, turns whatever the user typed after
``--source`` into a :class:`FrameSource`, so the video CLI never branches on
the kind of input. Anything that cannot be opened fails here, once, with a
:class:`SourceError` that names the input and says what to do; damaged frames
later on are skipped and counted instead of ending the run.
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
URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
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


def csi_pipeline(
    sensor_id: int = 0, width: int = 1920, height: int = 1080, fps: int = 30, flip: int = 0
) -> str:
    """The usual Jetson CSI camera pipeline: Argus ISP -> NVMM -> BGR frames for OpenCV."""
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM),width={width},height={height},framerate={fps}/1,format=NV12 ! "
        f"nvvidconv flip-method={flip} ! video/x-raw,format=BGRx ! videoconvert ! "
        "video/x-raw,format=BGR ! appsink drop=true max-buffers=2"
    )


def _no_gstreamer_error(spec: str) -> SourceError:
    return SourceError(
        f"source {spec!r} is a GStreamer pipeline, but this OpenCV ({cv2.__version__}) was built without "
        "GStreamer (cv2.getBuildInformation() says 'GStreamer: NO'; the pip opencv-python wheels never have it). "
        "Install GStreamer for Python (`pip install -e .[gst]` plus the system GStreamer packages), or use "
        "JetPack's OpenCV, or build OpenCV with -DWITH_GSTREAMER=ON; elsewhere give a file, camera index or URL."
    )


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


def _natural_key(p: Path) -> list:
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

    def __init__(self, spec: str, kind: str, name: str, target: object, api: int = cv2.CAP_ANY) -> None:
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


def _live(spec: str, kind: str, name: str, open_reader, live) -> FrameSource:
    """A newest-frame live source; a connection that never opens is one SourceError."""
    from runtime.io.live import LatestFrameSource

    try:
        return LatestFrameSource(spec, kind, name, open_reader, live)
    except (ConnectionError, OSError) as e:
        raise SourceError(
            f"cannot open stream {spec!r}: {e}. Check that the camera/server is up, the URL and "
            "credentials, and the network (try it with `ffplay URL` or gst-launch-1.0)"
        ) from None
    except ValueError as e:
        raise SourceError(f"source {spec!r}: {e}") from None


def _gst_source(spec: str, desc: str, live) -> FrameSource:
    from runtime.io import gst_reader
    from runtime.io.live import LiveOptions

    o = live or LiveOptions()
    return _live(
        spec,
        "gstreamer",
        "gstreamer",
        lambda: gst_reader.GstReader(desc, o.open_timeout_s, o.read_timeout_s),
        o,
    )


def open_source(
    spec: str,
    fps: float = DEFAULT_FPS,
    live: LiveOptions | None = None,  # noqa: F821
    reader: str = "auto",
) -> FrameSource:
    """Turn a ``--source`` value into a frame source (see docs/video.md for the forms).

    ``live`` sets timeouts and reconnects of live sources; ``reader`` picks how a URL or
    pipeline is read: ``gst`` (PyGObject appsink), ``ffmpeg`` (OpenCV/FFmpeg) or ``auto``
    (GStreamer for pipelines, csi:// and rtsp:// where PyGObject is installed, FFmpeg otherwise).
    """
    from runtime.io import gst_reader
    from runtime.io.live import FfmpegReader, LiveOptions

    if reader not in ("auto", "gst", "ffmpeg"):
        raise SourceError(f"unknown reader {reader!r}: use auto, gst or ffmpeg")
    spec = str(spec).strip()
    if not spec:
        raise SourceError(
            "empty --source: give a video file, image folder, camera index, URL or GStreamer pipeline"
        )
    use_gst = reader == "gst" or (reader == "auto" and gst_reader.available())
    if reader == "gst" and not gst_reader.available():
        try:
            gst_reader._gst()
        except gst_reader.GstUnavailable as e:
            raise SourceError(f"--reader gst: {e}") from None
    if spec.startswith("gst:"):
        if not gst_reader.available():
            raise SourceError(f"source {spec!r}: " + str(_safe_gst_error()))
        return _gst_source(spec, spec[4:], live)
    m = re.fullmatch(r"csi(?::/*|://)(\d+)", spec)
    if m:
        if use_gst and not gst_reader.has_element("nvarguscamerasrc"):
            raise SourceError(
                f"source {spec!r}: this GStreamer has no nvarguscamerasrc (csi:// needs a Jetson with "
                "JetPack's GStreamer and nvargus-daemon); give a camera index, URL or gst:PIPELINE"
            )
        spec = csi_pipeline(int(m.group(1)))
    if "!" in spec:
        if use_gst:
            return _gst_source(spec, spec, live)
        if not gstreamer_available():
            raise _no_gstreamer_error(spec)
        pipeline = spec if "appsink" in spec else spec + " ! videoconvert ! video/x-raw,format=BGR ! appsink"
        return CaptureSource(spec, "gstreamer", "gstreamer", pipeline, cv2.CAP_GSTREAMER)
    if spec.isdigit():
        return CaptureSource(spec, "camera", f"camera{spec}", int(spec))
    if spec.startswith("/dev/video"):
        return CaptureSource(spec, "camera", Path(spec).name, spec, cv2.CAP_V4L2)
    if spec.lower().startswith(URL_SCHEMES):
        o = live or LiveOptions()
        name = _stream_name(spec)
        if use_gst and spec.lower().startswith(("rtsp://", "rtsps://")):
            desc = gst_reader.rtsp_pipeline(spec)
            return _live(
                spec, "url", name, lambda: gst_reader.GstReader(desc, o.open_timeout_s, o.read_timeout_s), o
            )
        return _live(spec, "url", name, lambda: FfmpegReader(spec, o.open_timeout_s, o.read_timeout_s), o)
    p = Path(spec)
    if p.is_dir():
        return FolderSource(spec, fps)
    if not p.exists():
        raise SourceError(
            f"source {spec!r} not found: give an existing video file or image folder, a camera index "
            "(0), /dev/videoN, an rtsp:// or http:// URL, csi://0 or a GStreamer pipeline"
        )
    if not p.is_file():
        raise SourceError(f"source {spec!r} is neither a file nor a folder")
    if p.stat().st_size == 0:
        raise SourceError(f"cannot open video file {spec!r}: it is empty (0 bytes)")
    return CaptureSource(spec, "file", p.stem, spec)


def _stream_name(url: str) -> str:
    """A file-name-safe name for a stream's outputs: the URL path's last part (cam0), else 'stream'."""
    from urllib.parse import urlsplit

    tail = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    tail = re.sub(r"[^A-Za-z0-9_.-]+", "_", tail).lstrip(".")
    return tail or "stream"


def _safe_gst_error() -> str:
    from runtime.io import gst_reader

    try:
        gst_reader._gst()
    except gst_reader.GstUnavailable as e:
        return str(e)
    return "GStreamer is available"
