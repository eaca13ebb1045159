"""GStreamer frames through PyGObject's appsink, independent of how OpenCV was built.

The pip OpenCV wheels have no GStreamer, and JetPack's OpenCV is the only one
that has it on a Jetson; reading the appsink ourselves makes ``gst:``,
``csi://`` and hardware-decoded ``rtsp://`` work with any OpenCV. Optional
extra: ``pip install -e .[gst]`` (PyGObject) plus the system's GStreamer.

Gotchas handled here: ``set_state(PLAYING)`` returns at once, so start-up
errors arrive on the bus, not as return values; ``try_pull_sample`` needs
GstApp imported; a frozen server yields no error at all, only our timeout.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

SINK_NAME = "dynpose_sink"
BGR_TAIL = f"videoconvert ! video/x-raw,format=BGR ! appsink name={SINK_NAME}"


class GstUnavailable(RuntimeError):
    """PyGObject or GStreamer is not installed."""


@functools.lru_cache(maxsize=1)
def _gst() -> Any:
    try:
        import gi  # type: ignore[import-untyped]

        gi.require_version("Gst", "1.0")
        gi.require_version("GstApp", "1.0")
        from gi.repository import Gst, GstApp  # type: ignore[import-untyped]  # noqa: F401  (GstApp adds try_pull_sample)
    except (ImportError, ValueError) as e:
        raise GstUnavailable(
            f"GStreamer for Python is not available ({e}); install it with "
            "`pip install -e .[gst]` and the system packages gstreamer1.0-plugins-{base,good,bad} "
            "gir1.2-gstreamer-1.0 (JetPack has them)"
        ) from None
    Gst.init(None)
    return Gst


def available() -> bool:
    try:
        _gst()
        return True
    except GstUnavailable:
        return False


def has_element(name: str) -> bool:
    """Whether this GStreamer has a plugin element (e.g. nvv4l2decoder on a Jetson)."""
    return available() and _gst().ElementFactory.find(name) is not None


def with_bgr_sink(desc: str) -> str:
    """A user pipeline, ending in our named BGR appsink unless it names its own appsink."""
    desc = desc.strip().rstrip("!").strip()
    return desc if "appsink" in desc else f"{desc} ! {BGR_TAIL}"


def rtsp_pipeline(url: str) -> str:
    """The Jetson hardware-decode pipeline when nvv4l2decoder exists, software decode otherwise."""
    src = f"rtspsrc location={url} latency=0 protocols=tcp"
    if has_element("nvv4l2decoder") and has_element("nvvidconv"):
        return (
            f"{src} ! rtph264depay ! h264parse ! nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx ! "
            f"{BGR_TAIL}"
        )
    return f"{src} ! decodebin ! {BGR_TAIL}"


class GstReader:
    """One running pipeline; ``read()`` returns the next BGR frame or None (``reason`` says why)."""

    def __init__(self, desc: str, open_timeout_s: float, read_timeout_s: float) -> None:
        Gst = _gst()
        self.desc, self.read_timeout_s = with_bgr_sink(desc), read_timeout_s
        self.reason: str | None = None
        try:
            self.pipe = Gst.parse_launch(self.desc)
        except Exception as e:  # GLib.Error: a bad element name or syntax
            raise ValueError(f"GStreamer cannot parse the pipeline ({str(e).strip()})") from None
        self.sink = self.pipe.get_by_name(SINK_NAME) or self._find_appsink()
        if self.sink is None:
            self.close()
            raise ValueError("the pipeline has no appsink to read frames from")
        for prop, value in (("emit-signals", False), ("max-buffers", 1), ("drop", True), ("sync", False)):
            self.sink.set_property(prop, value)
        self.bus = self.pipe.get_bus()
        self.fps: float | None = None  # the caps' framerate (0/1 = variable: unknown)
        self.pipe.set_state(Gst.State.PLAYING)
        self._first = self._pull(open_timeout_s)
        if self._first is None:
            why = self.reason or f"no frame within {open_timeout_s:g} s"
            self.close()
            raise ConnectionError(why)

    def _find_appsink(self) -> Any:
        it = self.pipe.iterate_elements()
        while True:
            ok, el = it.next()
            if ok != _gst().IteratorResult.OK:
                return None
            if el.get_factory() is not None and el.get_factory().get_name() == "appsink":
                return el

    def _bus_problem(self) -> str | None:
        Gst = _gst()
        while True:
            msg = self.bus.pop_filtered(Gst.MessageType.ERROR | Gst.MessageType.EOS)
            if msg is None:
                return None
            if msg.type == Gst.MessageType.EOS:
                return "end of stream"
            err, _dbg = msg.parse_error()
            return f"GStreamer error from {msg.src.get_name()}: {err.message}"

    def _pull(self, timeout_s: float) -> np.ndarray | None:
        Gst = _gst()
        sample = self.sink.try_pull_sample(int(timeout_s * Gst.SECOND))
        if sample is None:
            self.reason = self._bus_problem() or f"no frame for {timeout_s:g} s (stalled source)"
            return None
        if self.fps is None:
            ok, num, den = sample.get_caps().get_structure(0).get_fraction("framerate")
            self.fps = num / den if ok and den else 0.0
        return _to_bgr(sample)

    def read(self) -> np.ndarray | None:
        if self._first is not None:
            img, self._first = self._first, None
            return img
        return self._pull(self.read_timeout_s)

    def close(self) -> None:
        pipe = getattr(self, "pipe", None)
        if pipe is not None:
            pipe.set_state(_gst().State.NULL)
            self.pipe = None


def _to_bgr(sample: Any) -> np.ndarray:
    """Copy a BGR sample out of GStreamer's buffer (rows may be padded: use the real stride).

    Always a copy, even when the rows are unpadded: the mapped memory is read-only and
    belongs to GStreamer after ``unmap``, while a reader's frame must be the caller's own
    writable array (the overlay draws on it in place; runtime.io.live.Reader)."""
    Gst = _gst()
    s = sample.get_caps().get_structure(0)
    w, h = s.get_value("width"), s.get_value("height")
    fmt = s.get_value("format")
    if fmt != "BGR":
        raise ValueError(f"the appsink delivers {fmt}, not BGR: end the pipeline with `{BGR_TAIL}`")
    buf = sample.get_buffer()
    ok, info = buf.map(Gst.MapFlags.READ)
    if not ok:
        raise ValueError("cannot map a GStreamer buffer")
    try:
        stride = info.size // h
        arr = np.frombuffer(info.data, np.uint8, count=stride * h).reshape(h, stride)
        return arr[:, : w * 3].reshape(h, w, 3).copy()
    finally:
        buf.unmap(info)
