"""Outputs that survive Ctrl-C, SIGTERM, exceptions and even SIGKILL.

* :class:`JsonlWriter` writes each frame's line with one ``write`` system call
  on an ``O_APPEND`` descriptor: a killed process leaves whole lines only, and
  nothing waits in a user-space buffer.
* :class:`MjpegAviWriter` is a small AVI muxer of our own instead of
  ``cv2.VideoWriter``: MP4 needs its index ('moov') written at close, so a
  killed MP4 does not open at all, and OpenCV's AVI writer buffers frames and
  leaves a zero frame count in the header. Ours writes every JPEG frame
  straight to the file and then patches the header sizes and frame count in
  place, so at every moment the file on disk is a valid AVI of the frames
  finished so far (a SIGKILL between a frame's write and its header patch
  leaves that one frame after the counted ones: FFmpeg still decodes it); ``close`` only adds the optional ``idx1`` index (for fast
  seeking). Files roll over before the 4 GiB RIFF limit (``name.1.avi`` ...).
* :func:`set_aside_earlier_outputs`: a rerun into the same folder first moves
  (and names) the JSON Lines, overlay segments and summary an earlier run wrote
  for the same source into ``<name>.previous/``, so nothing of other options
  sits beside the new outputs as if it were this run's, and a rerun that fails
  still leaves the earlier complete results; they go when the run ends well.
"""

from __future__ import annotations

import json
import os
import re
import struct
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from runtime.errors import output_error
from runtime.io.safe_io import set_aside_earlier, write_at
from runtime.tracking.ids import TrackIds

if TYPE_CHECKING:
    from runtime.io.sources import Frame
    from runtime.pose.results import FrameResult

AVIF_HASINDEX = 0x10
AVIIF_KEYFRAME = 0x10
DEFAULT_MAX_BYTES = 2**31  # well below the 4 GiB a 32-bit RIFF size can describe


def frame_record(frame: Frame, track_ids: TrackIds, detected: bool, res: FrameResult) -> dict[str, Any]:
    """The JSON Lines record of one frame; persons keep the detector's box order."""
    persons = res.persons()
    for p, tid, s in zip(persons, track_ids, res.box_score):
        p["track_id"] = int(tid)
        p["score"] = round(float(s), 5) if np.isfinite(s) else None
        if "keypoints" in p:  # dropped boxes carry no keypoints (see FrameResult.persons)
            # float32 -> float64 before rounding, or 517.27 prints as 517.27001953125
            p["keypoints"] = [[round(float(v), 2) for v in kp] for kp in p["keypoints"]]
            p["presence"] = [round(float(v), 4) for v in p["presence"]]
    return {
        "frame": frame.index,
        "timestamp": round(frame.timestamp, 4),
        "wall_time": round(frame.wall_time, 4),
        "detected": bool(detected),
        **({"file": frame.name} if frame.name else {}),
        "persons": persons,
    }


class JsonlWriter:
    """One JSON object per line; every line on disk is complete (one writer per file)."""

    def __init__(self, path: str | Path, fsync: bool = False) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as e:
            raise output_error(e, self.path) from None
        self._fsync = fsync
        self.lines = 0
        self._size = 0

    def write(self, record: dict[str, Any]) -> None:
        if self._fd is None:
            raise ValueError(f"{self.path} is closed")
        data = (json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n").encode()
        # One checked positional write; a short or failed one (disk full) is cut back to the
        # previous line end, so the file never keeps a partial line.
        write_at(self._fd, data, self._size, self.path, restore_size=self._size)
        self._size += len(data)
        if self._fsync:
            os.fsync(self._fd)  # only power loss needs this; a killed process keeps the page cache
        self.lines += 1

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _chunk(fourcc: bytes, payload: bytes) -> bytes:
    pad = b"\0" if len(payload) % 2 else b""
    return fourcc + struct.pack("<I", len(payload)) + payload + pad


class MjpegAviWriter:
    """Motion-JPEG in AVI, playable after any interruption (see the module docstring)."""

    def __init__(
        self,
        path: str | Path,
        fps: float,
        size: tuple[int, int],
        quality: int = 85,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if not 0 < fps < float("inf"):  # callers pass FrameSource.fps, which has its fallback
            raise ValueError(f"{path}: frame rate {fps!r} is not a positive number")
        self.base = Path(path)
        self.base.parent.mkdir(parents=True, exist_ok=True)
        self.fps, self.size, self.quality, self.max_bytes = float(fps), tuple(size), int(quality), max_bytes
        self.paths: list[Path] = []
        self.frames_total = 0
        self._fd: int | None = None
        self._open_segment()

    # -- layout ------------------------------------------------------------------------
    def _headers(self, frames: int, flags: int, movi_size: int, riff_size: int) -> bytes:
        w, h = self.size
        scale, rate = 1000, max(1, round(self.fps * 1000))
        avih = struct.pack("<14I", round(1e6 / self.fps), 0, 0, flags, frames, 0, 1, 0, w, h, 0, 0, 0, 0)
        strh = struct.pack(
            "<4s4sIHHIIIIIIIIhhhh",
            b"vids",
            b"MJPG",
            0,
            0,
            0,
            0,
            scale,
            rate,
            0,
            frames,
            0,
            0xFFFFFFFF,
            0,
            0,
            0,
            w,
            h,
        )
        strf = struct.pack("<IiiHH4sIiiII", 40, w, h, 1, 24, b"MJPG", w * h * 3, 0, 0, 0, 0)
        strl = (
            b"LIST"
            + struct.pack("<I", 4 + 8 + len(strh) + 8 + len(strf))
            + b"strl"
            + _chunk(b"strh", strh)
            + _chunk(b"strf", strf)
        )
        hdrl_body = b"hdrl" + _chunk(b"avih", avih) + strl
        hdrl = b"LIST" + struct.pack("<I", len(hdrl_body)) + hdrl_body
        return (
            b"RIFF"
            + struct.pack("<I", riff_size)
            + b"AVI "
            + hdrl
            + b"LIST"
            + struct.pack("<I", movi_size)
            + b"movi"
        )

    def _open_segment(self) -> None:
        n = len(self.paths)
        path = self.base if n == 0 else self.base.with_name(f"{self.base.stem}.{n}{self.base.suffix}")
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as e:
            raise output_error(e, path) from None
        self.paths.append(path)
        self._index: list[tuple[int, int]] = []  # (offset from 'movi', payload length)
        head = self._headers(0, 0, 4, 0)
        self._movi_at = len(head) - 4  # file offset of the 'movi' fourcc
        self._end = len(head)
        write_at(self._fd, head, 0, path, restore_size=0)
        self._patch(0, 0)

    def _patch(self, frames: int, flags: int) -> None:
        """Rewrite the header in place so it describes exactly the frames on disk."""
        assert self._fd is not None, "patched while open only"
        movi_size = self._end - self._movi_at
        write_at(self._fd, self._headers(frames, flags, movi_size, self._end - 8), 0, self.paths[-1])

    # -- writing -----------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self.paths[0]

    @property
    def segment_frames(self) -> int:
        return len(self._index)

    def write(self, frame_bgr: np.ndarray) -> None:
        if self._fd is None:
            raise ValueError(f"{self.base} is closed")
        if frame_bgr.shape[1::-1] != self.size:
            frame_bgr = cv2.resize(frame_bgr, self.size, interpolation=cv2.INTER_AREA)
        ok, jpg = cv2.imencode(".jpg", frame_bgr, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for a {frame_bgr.shape} frame")
        data = _chunk(b"00dc", jpg.tobytes())
        if self._end + len(data) + 16 * (len(self._index) + 1) + 8 > self.max_bytes and self._index:
            self._finish_segment()
            self._open_segment()
        assert self._fd is not None  # checked above; _open_segment reopens
        # Checked: a frame cut short (disk full) is cut off again and never counted in the header.
        write_at(self._fd, data, self._end, self.paths[-1], restore_size=self._end)
        self._index.append((self._end - self._movi_at, len(jpg)))
        self._end += len(data)
        self.frames_total += 1
        self._patch(len(self._index), 0)

    def _finish_segment(self) -> None:
        idx = b"".join(struct.pack("<4sIII", b"00dc", AVIIF_KEYFRAME, off, n) for off, n in self._index)
        fd, self._fd = self._fd, None
        assert fd is not None, "a segment is finished once"
        try:
            # No room for the (optional) index: the header already describes every frame on disk.
            write_at(fd, _chunk(b"idx1", idx), self._end, self.paths[-1], restore_size=self._end)
            frames, movi_size = len(self._index), self._end - self._movi_at
            end = self._end + 8 + len(idx)
            write_at(fd, self._headers(frames, AVIF_HASINDEX, movi_size, end - 8), 0, self.paths[-1])
            self._end = end
            os.ftruncate(fd, self._end)
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._fd is not None:
            self._finish_segment()


class CvVideoWriter:
    """cv2.VideoWriter for other containers (.mp4 ...): closed in ``finally`` on Ctrl-C or
    errors, but an MP4 cut off by SIGKILL or power loss has no index and will not open."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int], fourcc: str = "mp4v") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.paths = [self.path]
        self.size = tuple(size)
        self._w: cv2.VideoWriter | None = cv2.VideoWriter(
            str(self.path), cv2.VideoWriter.fourcc(*fourcc), float(fps), self.size
        )
        if not self._w.isOpened():
            raise RuntimeError(f"OpenCV cannot write {self.path} with codec {fourcc!r}; use an .avi output")
        self.frames_total = 0

    def write(self, frame_bgr: np.ndarray) -> None:
        if self._w is None:
            raise ValueError(f"{self.path} is closed")
        if frame_bgr.shape[1::-1] != self.size:
            frame_bgr = cv2.resize(frame_bgr, self.size, interpolation=cv2.INTER_AREA)
        self._w.write(frame_bgr)
        self.frames_total += 1

    def close(self) -> None:
        if self._w is not None:
            self._w.release()
            self._w = None


def set_aside_earlier_outputs(out: Path, name: str) -> Path | None:
    """``name``'s JSON Lines, overlays (every format and rollover segment) and summary of an earlier
    run, moved into ``out/<name>.previous/`` until this run ends well (safe_io.set_aside_earlier)."""
    pattern = re.compile(re.escape(name) + r"\.(jsonl|overlay(\.\d+)?\.(avi|mp4)|summary\.json)")
    return set_aside_earlier(out, name, pattern)


def open_video_writer(path: str | Path, fps: float, size: tuple[int, int]) -> MjpegAviWriter | CvVideoWriter:
    """.avi -> our crash-safe MJPEG writer; anything else -> cv2.VideoWriter (with a warning)."""
    if Path(path).suffix.lower() == ".avi":
        return MjpegAviWriter(path, fps, size)
    print(f"warning: {path}: only .avi outputs stay playable after a hard kill", file=sys.stderr)
    return CvVideoWriter(path, fps, size)
