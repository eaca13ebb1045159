"""What the user typed after ``--source`` -> a :class:`FrameSource`, so no caller branches on its kind.

Why a module of its own: it is the one place that knows every kind (files, folders,
cameras, URLs, CSI, GStreamer pipelines) and therefore imports both runtime.io.sources
(sources read to their end) and runtime.io.live (newest-frame sources), which import
neither it nor each other's users. Anything that cannot be opened fails here, once, with a
:class:`SourceError` that names the input and says what to do.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import cv2

from runtime.io import gst_reader
from runtime.io.live import FfmpegReader, LatestFrameSource, LiveOptions, Reader
from runtime.io.sources import (
    DEFAULT_FPS,
    CaptureSource,
    FolderSource,
    FrameSource,
    SourceError,
    gstreamer_available,
)

URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
READERS = ("auto", "gst", "ffmpeg")
NOT_FOUND = (
    "give an existing video file or image folder, a camera index (0), /dev/videoN, an rtsp:// or "
    "http:// URL, csi://0 or a GStreamer pipeline"
)


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


def _live(
    spec: str, kind: str, name: str, open_reader: Callable[[], Reader], live: LiveOptions
) -> FrameSource:
    """A newest-frame live source; a connection that never opens is one SourceError."""
    try:
        return LatestFrameSource(spec, kind, name, open_reader, live)
    except (ConnectionError, OSError) as e:
        raise SourceError(
            f"cannot open stream {spec!r}: {e}. Check that the camera/server is up, the URL and "
            "credentials, and the network (try it with `ffplay URL` or gst-launch-1.0)"
        ) from None
    except ValueError as e:
        raise SourceError(f"source {spec!r}: {e}") from None


def _gst_source(spec: str, desc: str, live: LiveOptions) -> FrameSource:
    return _live(
        spec,
        "gstreamer",
        "gstreamer",
        lambda: gst_reader.GstReader(desc, live.open_timeout_s, live.read_timeout_s),
        live,
    )


def _use_gst(reader: str) -> bool:
    """Whether URLs and pipelines go through PyGObject; ``--reader gst`` without it is refused."""
    if reader not in READERS:
        raise SourceError(f"unknown reader {reader!r}: use auto, gst or ffmpeg")
    if reader == "gst" and not gst_reader.available():
        raise SourceError(f"--reader gst: {_safe_gst_error()}")
    return reader == "gst" or (reader == "auto" and gst_reader.available())


def _pipeline_source(spec: str, use_gst: bool, live: LiveOptions) -> FrameSource:
    """``gst:PIPELINE``, ``csi://N`` (a Jetson camera) or a bare pipeline with ``!``."""
    if spec.startswith("gst:"):
        if not gst_reader.available():
            raise SourceError(f"source {spec!r}: " + _safe_gst_error())
        return _gst_source(spec, spec[4:], live)
    m = re.fullmatch(r"csi(?::/*|://)(\d+)", spec)
    if m:
        if use_gst and not gst_reader.has_element("nvarguscamerasrc"):
            raise SourceError(
                f"source {spec!r}: this GStreamer has no nvarguscamerasrc (csi:// needs a Jetson with "
                "JetPack's GStreamer and nvargus-daemon); give a camera index, URL or gst:PIPELINE"
            )
        spec = csi_pipeline(int(m.group(1)))
    if use_gst:
        return _gst_source(spec, spec, live)
    if not gstreamer_available():
        raise _no_gstreamer_error(spec)
    pipeline = spec if "appsink" in spec else spec + " ! videoconvert ! video/x-raw,format=BGR ! appsink"
    return CaptureSource(spec, "gstreamer", "gstreamer", pipeline, cv2.CAP_GSTREAMER)


def _url_source(spec: str, use_gst: bool, live: LiveOptions) -> FrameSource:
    name = _stream_name(spec)
    if use_gst and spec.lower().startswith(("rtsp://", "rtsps://")):
        desc = gst_reader.rtsp_pipeline(spec)
        return _live(
            spec,
            "url",
            name,
            lambda: gst_reader.GstReader(desc, live.open_timeout_s, live.read_timeout_s),
            live,
        )
    return _live(
        spec, "url", name, lambda: FfmpegReader(spec, live.open_timeout_s, live.read_timeout_s), live
    )


def _path_source(spec: str, fps: float) -> FrameSource:
    p = Path(spec)
    if p.is_dir():
        return FolderSource(spec, fps)
    if not p.exists():
        raise SourceError(f"source {spec!r} not found: {NOT_FOUND}")
    if not p.is_file():
        raise SourceError(f"source {spec!r} is neither a file nor a folder")
    if p.stat().st_size == 0:
        raise SourceError(f"cannot open video file {spec!r}: it is empty (0 bytes)")
    return CaptureSource(spec, "file", p.stem, spec)


def open_source(
    spec: str,
    fps: float = DEFAULT_FPS,
    live: LiveOptions | None = None,
    reader: str = "auto",
) -> FrameSource:
    """Turn a ``--source`` value into a frame source (see docs/video.md for the forms).

    ``live`` sets timeouts and reconnects of live sources; ``reader`` picks how a URL or
    pipeline is read: ``gst`` (PyGObject appsink), ``ffmpeg`` (OpenCV/FFmpeg) or ``auto``
    (GStreamer for pipelines, csi:// and rtsp:// where PyGObject is installed, FFmpeg otherwise).
    """
    use_gst = _use_gst(reader)
    spec = str(spec).strip()
    if not spec:
        raise SourceError(
            "empty --source: give a video file, image folder, camera index, URL or GStreamer pipeline"
        )
    live = live or LiveOptions()
    if spec.startswith("gst:") or "!" in spec or re.fullmatch(r"csi(?::/*|://)(\d+)", spec):
        return _pipeline_source(spec, use_gst, live)
    if spec.isdigit():
        return CaptureSource(spec, "camera", f"camera{spec}", int(spec))
    if spec.startswith("/dev/video"):
        return CaptureSource(spec, "camera", Path(spec).name, spec, cv2.CAP_V4L2)
    if spec.lower().startswith(URL_SCHEMES):
        return _url_source(spec, use_gst, live)
    return _path_source(spec, fps)


def _stream_name(url: str) -> str:
    """A file-name-safe name for a stream's outputs: the URL path's last part (cam0), else 'stream'."""
    tail = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    tail = re.sub(r"[^A-Za-z0-9_.-]+", "_", tail).lstrip(".")
    return tail or "stream"


def _safe_gst_error() -> str:
    try:
        gst_reader._gst()
    except gst_reader.GstUnavailable as e:
        return str(e)
    return "GStreamer is available"
