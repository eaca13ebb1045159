"""A full disk, for real: the child process runs under a file-size rlimit (RLIMIT_FSIZE) with SIGXFSZ
ignored, so its writes come back short and then fail with EFBIG, exactly like a disk filling up.
Each run must end with one line and exit 4, and keep everything written before valid."""

from __future__ import annotations

import json
import resource
import signal
import struct
import subprocess
import sys
from pathlib import Path

import cv2
from failcheck import REPO, assert_one_line_failure, run_module, strict_json, strict_jsonl

from runtime.errors import EXIT_OUTPUT


def _limit(nbytes: int):
    def pre() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return pre


def _child(code: str, limit: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit(limit),
    )


def avi_counts(path: Path) -> tuple[int, int]:
    """(frames the header counts, complete '00dc' chunks on disk)."""
    data = path.read_bytes()
    header_frames = struct.unpack_from("<I", data, 48)[0]  # avih.dwTotalFrames
    pos = data.index(b"movi") + 4
    complete = 0
    while pos + 8 <= len(data) and data[pos : pos + 4] == b"00dc":
        size = struct.unpack_from("<I", data, pos + 4)[0]
        end = pos + 8 + size + (size & 1)
        if end > len(data):
            break
        complete += 1
        pos = end
    return header_frames, complete


def test_jsonl_never_keeps_a_partial_line(tmp_path):
    path = tmp_path / "out.jsonl"
    code = f"""
from runtime.errors import guarded
from runtime.io.sinks import JsonlWriter
def main(argv):
    w = JsonlWriter({str(path)!r})
    for i in range(10000):
        w.write({{"frame": i, "persons": [{{"box": [1.5, 2.5, 3.5, 4.5]}}] * 3}})
raise SystemExit(guarded(main, []))
"""
    r = _child(code, 20_000)
    assert_one_line_failure(r.returncode, r.stderr, EXIT_OUTPUT, "no space left", str(path))
    recs = strict_jsonl(path)
    assert 10 < len(recs) < 10000 and [x["frame"] for x in recs] == list(range(len(recs)))


def test_avi_header_counts_only_frames_on_disk(tmp_path, shared_data):
    path = tmp_path / "o.avi"
    clip = shared_data / "video" / "people.mp4"
    code = f"""
import cv2
from runtime.errors import guarded
from runtime.io.sinks import MjpegAviWriter
def main(argv):
    cap = cv2.VideoCapture({str(clip)!r})
    ok, img = cap.read()
    w = MjpegAviWriter({str(path)!r}, 30, img.shape[1::-1])
    try:
        for i in range(200):
            w.write(img if i % 2 else 255 - img)
    finally:
        w.close()
raise SystemExit(guarded(main, []))
"""
    r = _child(code, 400_000)
    assert_one_line_failure(r.returncode, r.stderr, EXIT_OUTPUT, "no space left", str(path))
    counted, on_disk = avi_counts(path)
    assert counted == on_disk and 1 < counted < 200
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == counted


def test_images_cli_disk_full_keeps_finished_images(cpu_artifacts, coco_mini, tmp_path):
    args = [
        "--engines",
        str(cpu_artifacts),
        "--images",
        str(coco_mini),
        "--dets",
        str(coco_mini / "person_detections.json"),
        "--policy",
        "small",
    ]
    full = tmp_path / "full.json"
    r = run_module("runtime.images", *args, "--out", str(full))
    assert r.returncode == 0, r.stderr
    ref = strict_json(full.read_text())
    cut = tmp_path / "cut.json"
    r = run_module("runtime.images", *args, "--out", str(cut), preexec_fn=_limit(full.stat().st_size // 2))
    assert_one_line_failure(r.returncode, r.stderr, EXIT_OUTPUT, "no space left", str(cut))
    got = strict_json(cut.read_text())  # still one valid JSON list ...
    assert 0 < len(got) < len(ref) and got == ref[: len(got)]  # ... of whole images, nothing half-written
    per_image = {i: sum(r["image_id"] == i for r in ref) for i in {r["image_id"] for r in ref}}
    assert all(sum(r["image_id"] == i for r in got) in (0, per_image[i]) for i in per_image)
    assert "partial run: boxes in" in r.stderr


def test_video_cli_disk_full(cpu_artifacts, shared_data, tmp_path):
    out = tmp_path / "o"
    r = run_module(
        "runtime.video",
        "--engines",
        str(cpu_artifacts),
        "--source",
        str(shared_data / "video" / "people.mp4"),
        "--out",
        str(out),
        "--threads",
        "1",
        "--quiet",
        "--max-frames",
        "40",
        preexec_fn=_limit(300_000),
    )
    assert_one_line_failure(r.returncode, r.stderr, EXIT_OUTPUT, "no space left", "people.overlay.avi")
    counted, on_disk = avi_counts(out / "people.overlay.avi")
    assert counted == on_disk and 0 < counted < 40
    lines = strict_jsonl(out / "people.jsonl")
    assert len(lines) >= counted and [x["frame"] for x in lines] == list(range(len(lines)))
    assert not list(out.glob(".*.tmp"))
    json.dumps(lines)
