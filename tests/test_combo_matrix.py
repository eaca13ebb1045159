"""The combination matrix: features as users combine them, each run a real CLI subprocess.

Factors (issue 25): source kind x output x backend x detector x cameras. All
5*3*2*4*2 = 240 combinations would take an hour here; every PAIR of factor
values meets in at least one run instead (a pairwise covering array from
tests/pairwise.py: 20 runs, the lower bound 5 sources x 4 detectors). The bugs
this matrix found each sat on a pair (a live source with an overlay, Triton
with the artifacts' detector, a file camera beside a live one).

Constraints, explicit in ``allowed``: an image folder is ``runtime.images``
input (COCO results JSON: no overlay, one folder), so ``folder`` pairs only
with output ``none`` and 1 camera; its ``json`` detector is ``--dets``. Every
other source runs ``runtime.video``. Three cameras are the row's source plus
a file (people.mp4) and a second RTSP camera, so each 3-camera run mixes a
file with live cameras.

Real servers, started once for the module: the RTSP server (tools.rtsp_server,
3 mounts replaying street.mp4) and the bundled tritonserver serving a
repository built with the artifacts (``--detector`` yolo11n-pose from
../shared, test data only, built into a tmp dir). Each run checks: exit 0, no
traceback; every frame accounted for (frames read == JSONL lines + frames
dropped while waiting == the overlay's frames, 5 per camera); outputs valid
(JSONL parses, overlay opens in OpenCV at the source's size); with Triton the
server's own statistics show it served the nets (and the detector).
Marker ``combo``: its own CI step after the live and Triton steps.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import cv2
import pytest

from bench.data import REPO, build_artifacts
from tests.pairwise import all_pairs, cover, pairs_of

pytestmark = pytest.mark.combo
FRAMES = 5  # per camera: both clips hold exactly 5 frames
RUN_TIMEOUT_S = 240

FACTORS = {
    "source": ("file", "folder", "rtsp-gst", "rtsp-ffmpeg", "gst-pipeline"),
    "output": ("avi", "mp4", "none"),
    "backend": ("ort", "triton"),
    "detector": ("engine", "onnx", "json", "hog"),
    "cameras": (1, 3),
}


def allowed(row: dict) -> bool:
    """False for impossible (partial) rows: an image folder is runtime.images input."""
    if row.get("source") == "folder":
        return row.get("output", "none") == "none" and row.get("cameras", 1) == 1
    return True


# tests.pairwise.cover(FACTORS, allowed), kept as a table to read (test_table_is_the_generated_cover).
RUNS = [
    # source         output  backend   detector  cameras
    ("file", "avi", "ort", "engine", 1),
    ("file", "mp4", "triton", "onnx", 3),
    ("file", "none", "ort", "json", 3),
    ("file", "avi", "triton", "hog", 1),
    ("folder", "none", "triton", "engine", 1),
    ("folder", "none", "ort", "onnx", 1),
    ("folder", "none", "triton", "json", 1),
    ("folder", "none", "ort", "hog", 1),
    ("rtsp-gst", "avi", "ort", "onnx", 3),
    ("rtsp-gst", "mp4", "ort", "engine", 1),
    ("rtsp-gst", "none", "triton", "json", 1),
    ("rtsp-gst", "mp4", "ort", "hog", 3),
    ("rtsp-ffmpeg", "avi", "ort", "json", 1),
    ("rtsp-ffmpeg", "mp4", "triton", "engine", 3),
    ("rtsp-ffmpeg", "none", "ort", "onnx", 1),
    ("rtsp-ffmpeg", "avi", "ort", "hog", 1),
    ("gst-pipeline", "avi", "ort", "engine", 1),
    ("gst-pipeline", "mp4", "triton", "json", 3),
    ("gst-pipeline", "none", "ort", "onnx", 1),
    ("gst-pipeline", "avi", "ort", "hog", 1),
]
ROWS = [dict(zip(FACTORS, r)) for r in RUNS]


def test_table_is_the_generated_cover() -> None:
    assert ROWS == cover(FACTORS, allowed)
    covered = set().union(*(pairs_of(r, FACTORS) for r in ROWS))
    assert all_pairs(FACTORS, allowed) <= covered and all(allowed(r) for r in ROWS)
    assert len(all_pairs(FACTORS, allowed)) == 96  # 4 pairs with folder are impossible


# -- servers and inputs, once per module ----------------------------------------------------------
@pytest.fixture(scope="module")
def yolo(shared_data: Path) -> Path:
    p = shared_data / "models" / "yolo11n-pose.onnx"
    if not p.is_file():
        raise RuntimeError(f"{p} missing: the combination matrix needs the shared YOLO11n-pose ONNX")
    return p


@pytest.fixture(scope="module")
def built(tmp_path_factory, coco_mini: Path, yolo: Path) -> tuple[Path, Path]:
    """(artifacts with the detector role, their Triton repository) from one real build."""
    root = tmp_path_factory.mktemp("combo")
    art = build_artifacts(
        root / "art",
        "fixture-dyn",
        extra=(
            "--calib-data",
            str(coco_mini),
            "--detector",
            str(yolo),
            "--det-precision",
            "fp32",
            "--triton-repo",
            str(root / "repo"),
        ),
    )
    return art, root / "repo"


@pytest.fixture(scope="module")
def rtsp():
    from tests.test_live_sources import RtspServer

    s = RtspServer(mounts=3).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def triton(built):
    from tools.triton_server import start_server

    s = start_server(built[1])
    yield s
    s.stop()


@pytest.fixture(scope="module")
def frame_dets(tmp_path_factory) -> Path:
    """json: detections keyed by frame index, two people in every frame of any camera."""
    recs = [
        {"image_id": i, "category_id": 1, "bbox": b, "score": 0.9}
        for i in range(4 * FRAMES)
        for b in ([200, 60, 120, 260], [420, 80, 110, 240])
    ]
    p = tmp_path_factory.mktemp("dets") / "frames.json"
    p.write_text(json.dumps(recs))
    return p


def served(server, model: str) -> int:
    """Requests the Triton server itself counts for ``model`` (all versions)."""
    with urllib.request.urlopen(f"{server.http_url}/v2/models/{model}/stats", timeout=10) as r:
        return sum(int(s.get("inference_count", 0)) for s in json.load(r)["model_stats"])


# -- one run --------------------------------------------------------------------------------------
def _sources(row: dict, rtsp, shared: Path) -> list[tuple[str, str, tuple[int, int]]]:
    """(spec, output name, frame size) of each camera of a video row."""
    live = (640, 360)  # tools.rtsp_server's default width, street.mp4's aspect
    first = {
        "file": (str(shared / "video" / "street.mp4"), "street", (960, 540)),
        "rtsp-gst": (rtsp.urls[0], "cam0", live),
        "rtsp-ffmpeg": (rtsp.urls[0], "cam0", live),
        "gst-pipeline": (
            f"gst:rtspsrc location={rtsp.urls[1]} latency=0 protocols=tcp ! rtph264depay ! "
            "avdec_h264 ! videoconvert",
            "gstreamer",
            live,
        ),
    }[row["source"]]
    more = [(str(shared / "video" / "people.mp4"), "people", (1280, 720)), (rtsp.urls[2], "cam2", live)]
    return [first, *more] if row["cameras"] == 3 else [first]


def _video_cmd(row: dict, art: Path, out: Path, cams: list, dets: Path, yolo: Path, url: str) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "runtime.video",
        "--engines",
        str(art),
        "--out",
        str(out),
        "--quiet",
        "--max-frames",
        str(FRAMES),
        "--open-timeout",
        "5",
        "--read-timeout",
        "3",
        "--reconnect-tries",
        "2",
        "--reconnect-backoff",
        "0.2",
    ]
    for spec, _, _ in cams:
        cmd += ["--source", spec]
    cmd += {"none": ["--no-video"], "avi": ["--video-format", "avi"], "mp4": ["--video-format", "mp4"]}[
        row["output"]
    ]
    cmd += {"rtsp-gst": ["--reader", "gst"], "rtsp-ffmpeg": ["--reader", "ffmpeg"]}.get(row["source"], [])
    cmd += [
        "--detector",
        {"engine": "engine", "onnx": f"onnx:{yolo}", "json": f"json:{dets}", "hog": "hog"}[row["detector"]],
    ]
    return cmd + (
        ["--backend", "triton", "--triton-url", url] if row["backend"] == "triton" else ["--backend", "ort"]
    )


def _images_cmd(row: dict, art: Path, out: Path, coco_mini: Path, yolo: Path, url: str) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "runtime.images",
        "--engines",
        str(art),
        "--images",
        str(coco_mini),
        "--out",
        str(out),
    ]  # a folder: results.json inside
    cmd += {
        "engine": ["--detector", "engine"],
        "onnx": ["--detector", f"onnx:{yolo}"],
        "hog": ["--detector", "hog"],
        "json": ["--dets", str(coco_mini / "person_detections.json")],
    }[row["detector"]]
    return cmd + (
        ["--backend", "triton", "--triton-url", url] if row["backend"] == "triton" else ["--backend", "ort"]
    )


def _check_camera(row: dict, out: Path, name: str, size: tuple[int, int]) -> int:
    """One camera's outputs, every frame accounted for; returns its people."""
    s = json.loads((out / f"{name}.summary.json").read_text())
    lines = [json.loads(x) for x in (out / f"{name}.jsonl").read_text().splitlines()]
    where = f"{row} camera {name}"
    assert s["ended_early"] is None and s["corrupt_frames"] == 0, where
    assert s["frames_read"] == FRAMES, where
    assert len(lines) == s["frames"] and s["frames"] + s["live_dropped_waiting"] == s["frames_read"], where
    frames = [x["frame"] for x in lines]
    assert frames == sorted(set(frames)), where
    if name in ("street", "people"):  # a file drops nothing
        assert frames == list(range(FRAMES)), where
    assert sum(len(x["persons"]) for x in lines) == s["boxes"] == s["account"]["boxes"], where
    if row["detector"] == "json":  # the frame-keyed file's two boxes, every frame
        assert all(len(x["persons"]) == 2 for x in lines), where
    videos = s["outputs"]["video"]
    if row["output"] == "none":
        assert videos == [] and not list(out.glob(f"{name}.overlay.*")), where
        return s["boxes"]
    assert videos == [str(out / f"{name}.overlay.{row['output']}")], where
    cap = cv2.VideoCapture(videos[0])
    assert cap.isOpened(), where
    n, shape = 0, None
    while True:
        ok, img = cap.read()
        if not ok:
            break
        n, shape = n + 1, img.shape[1::-1]
    cap.release()
    assert n == s["frames"] and shape == size, f"{where}: overlay {n} frames of {shape}"
    return s["boxes"]


def _check_images(row: dict, out: Path, stdout: str, coco_mini: Path) -> int:
    from runtime.io.records import image_names

    recs = json.loads((out / "results.json").read_text())
    m = re.search(r"account: boxes in (\d+), posed (\d+), dropped (\d+)", stdout)
    assert m, stdout
    boxes, posed, dropped = map(int, m.groups())
    assert len(recs) == boxes == posed + dropped, row
    assert {r["image_id"] for r in recs} <= set(image_names(coco_mini)), row
    assert sum("keypoints" in r for r in recs) == posed, row
    if row["detector"] == "json":
        assert boxes == 118, row  # every person record of the file
    return boxes


@pytest.mark.parametrize("row", ROWS, ids=["-".join(map(str, r)) for r in RUNS])
def test_combination(row, built, rtsp, triton, frame_dets, yolo, coco_mini, shared_data, tmp_path) -> None:
    art, _ = built
    out = tmp_path / "out"
    before = {m: served(triton, m) for m in ("router", "detector")}
    if row["source"] == "folder":
        cmd = _images_cmd(row, art, out, coco_mini, yolo, triton.grpc_url)
        out.mkdir()
    else:
        cams = _sources(row, rtsp, shared_data)
        cmd = _video_cmd(row, art, out, cams, frame_dets, yolo, triton.grpc_url)
    proc = subprocess.run(
        cmd,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert proc.returncode == 0, f"{row}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr[-3000:]
    if row["source"] == "folder":
        people = _check_images(row, out, proc.stdout, coco_mini)
    else:
        people = sum(_check_camera(row, out, name, size) for _, name, size in cams)
        if row["cameras"] == 3:
            total = json.loads((out / "multicam.summary.json").read_text())
            assert sorted(total["cameras"]) == sorted(n for _, n, _ in cams)
    if row["detector"] in ("engine", "onnx", "json"):  # HOG may miss everyone in 5 frames
        assert people > 0, row
    after = {m: served(triton, m) for m in ("router", "detector")}
    if row["backend"] == "triton":  # the server did the work, not a silent local run
        assert after["router"] > before["router"] or people == 0, row
        if row["detector"] == "engine":
            assert after["detector"] > before["detector"], row
    else:
        assert after == before, f"{row}: an ORT run sent requests to Triton"
