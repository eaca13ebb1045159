"""A real RTSP server on loopback that replays a video file forever (tests, demos).

``python -m tools.rtsp_server --video clip.mp4 --mounts 2 [--port 0] [--fps 15]``
prints one line ``READY rtsp://127.0.0.1:PORT/cam0 rtsp://127.0.0.1:PORT/cam1 ...``
once it listens, then serves until killed. Each mount is its own shared media
(one encoder, any number of clients) fed by ``appsrc`` from the file's frames,
rewound at the end, so a live camera that never ends can be imitated; a plain
``filesrc ! qtdemux`` pipeline would stop when the file ends.

Why GStreamer's RTSP server: it is the one packaged by Debian and driven from
Python (gir1.2-gst-rtsp-server-1.0); Debian's ffmpeg cannot serve RTSP and
mediamtx/live555 are not packaged. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from tools.ports import free_port


def load_frames(video: Path, width: int) -> list[np.ndarray]:
    """All frames of the clip, resized to ``width`` (even sizes for the H.264 encoder)."""
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        h, w = img.shape[:2]
        nh = max(2, int(round(h * width / w / 2)) * 2)
        frames.append(np.ascontiguousarray(cv2.resize(img, (width, nh), interpolation=cv2.INTER_AREA)))
    cap.release()
    if not frames:
        raise SystemExit(f"error: no frames in {video}")
    return frames


class Mount:
    """One mount point: pushes the clip's frames into appsrc at ``fps``, looping forever."""

    def __init__(self, gst, frames: list[np.ndarray], fps: int) -> None:
        self.gst, self.frames, self.fps = gst, frames, fps
        self.index = 0

    def on_configure(self, _factory, media) -> None:
        src = media.get_element().get_child_by_name("src")
        self.index = 0
        src.connect("need-data", self.on_need_data)

    def on_need_data(self, src, _length) -> None:
        gst = self.gst
        img = self.frames[self.index % len(self.frames)]
        buf = gst.Buffer.new_wrapped(img.tobytes())
        buf.duration = gst.SECOND // self.fps
        buf.pts = buf.dts = self.index * buf.duration
        self.index += 1
        src.emit("push-buffer", buf)


def serve(video: Path, mounts: int, port: int, fps: int, width: int) -> None:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    frames = load_frames(video, width)
    h, w = frames[0].shape[:2]
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    points = server.get_mount_points()
    keep = []
    for i in range(mounts):
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(
            f"( appsrc name=src is-live=true block=true format=time "
            f"caps=video/x-raw,format=BGR,width={w},height={h},framerate={fps}/1 "
            "! videoconvert ! video/x-raw,format=I420 "
            f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} bitrate=2000 "
            "! rtph264pay name=pay0 pt=96 config-interval=1 )"
        )
        factory.set_shared(True)
        m = Mount(Gst, frames, fps)
        factory.connect("media-configure", m.on_configure)
        points.add_factory(f"/cam{i}", factory)
        keep.append((factory, m))
    if server.attach(None) == 0:
        raise SystemExit(f"error: cannot listen on 127.0.0.1:{port}")
    urls = " ".join(f"rtsp://127.0.0.1:{port}/cam{i}" for i in range(mounts))
    print(f"READY {urls}", flush=True)
    loop = GLib.MainLoop()
    loop.run()


def main(argv: list[str] | None = None) -> int:
    from runtime.errors import guarded

    return guarded(_main, argv, prog="python -m tools.rtsp_server")


def _main(argv: list[str]) -> int:
    from runtime.cli.args import OneLineParser, existing_file, number, port

    ap = OneLineParser(prog="python -m tools.rtsp_server", description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=existing_file, required=True, help="video file replayed on every mount")
    ap.add_argument("--mounts", type=number(int, lo=1, hi=64), default=1, help="mounts /cam0 ... (1-64)")
    ap.add_argument("--port", type=port, default=0, help="0: a free port")
    ap.add_argument("--fps", type=number(int, lo=1, hi=240), default=15)
    ap.add_argument("--width", type=number(int, lo=16, hi=8192), default=640)
    a = ap.parse_args(argv)
    serve(a.video, a.mounts, a.port or free_port(), a.fps, a.width)
    return 0


if __name__ == "__main__":
    sys.exit(main())
