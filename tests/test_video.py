"""``python -m runtime.video`` end to end, as a user runs it (a subprocess), on the real clip."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(
    engines: Path, source: Path | str, out: Path, *extra: str, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        cli_args(engines, source, out, *extra),
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli_args(engines: Path, source: Path | str, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "runtime.video",
        "--engines",
        str(engines),
        "--source",
        str(source),
        "--out",
        str(out),
        "--threads",
        "1",
        "--quiet",
        *extra,
    ]


def cli_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def video_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} does not open"
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            return frames
        frames.append(img)


def jsonl(path: Path) -> list[dict]:
    raw = path.read_bytes()
    assert raw == b"" or raw.endswith(b"\n"), "last line is cut"
    return [json.loads(line) for line in raw.decode().splitlines()]


@pytest.fixture(scope="module")
def people(shared_data: Path) -> Path:
    return shared_data / "video" / "people.mp4"


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 frames of the synthetic long clip (build.synth.video.long_clip, 640x480, 7 people), so a
    run is still going when we kill it."""
    from build.synth.video import long_clip as make_long_clip

    root = tmp_path_factory.mktemp("clip")
    clip = make_long_clip(root / "synth", frames=60)
    path = root / "long.mp4"
    shutil.move(str(clip["video"]), path)
    assert len(video_frames(path)) == 60
    return path


def one_box_per_frame(path: Path, n: int) -> Path:
    path.write_text(
        json.dumps(
            [
                {"image_id": i, "category_id": 1, "bbox": [100.5, 40.25, 120, 260], "score": 0.9}
                for i in range(n)
            ]
        )
    )
    return path


def test_overlay_and_jsonl_match_the_input(cpu_artifacts: Path, people: Path, tmp_path: Path) -> None:
    r = run_cli(cpu_artifacts, people, tmp_path, "--det-every", "2", "--max-boxes", "2")
    assert r.returncode == 0, r.stderr
    src = video_frames(people)
    out = video_frames(tmp_path / "people.overlay.avi")
    assert len(out) == len(src) == 5 and out[0].shape == src[0].shape
    assert np.abs(out[2].astype(int) - src[2]).mean() < 20  # the input frame, annotated
    recs = jsonl(tmp_path / "people.jsonl")
    assert [r["frame"] for r in recs] == list(range(5))
    assert [r["detected"] for r in recs] == [True, False, True, False, True]
    assert [r["timestamp"] for r in recs] == pytest.approx([i / 30 for i in range(5)], abs=1e-4)
    assert sum(len(r["persons"]) for r in recs) >= 3  # HOG finds the runner in every frame
    for rec in recs:
        for p in rec["persons"]:
            assert p["route"] in ("small", "large", "dropped") and len(p["box"]) == 4
            if p["route"] == "dropped":  # a dropped box says why and carries no keypoints
                assert isinstance(p["dropped"], str) and "keypoints" not in p
            else:
                assert np.asarray(p["keypoints"]).shape == (17, 3) and len(p["presence"]) == 17
            assert isinstance(p["track_id"], int) and p["track_id"] > 0
    for prev, cur in zip(recs[0::2], recs[1::2]):  # tracked frames carry the ids of the detection before
        assert {p["track_id"] for p in cur["persons"]} <= {p["track_id"] for p in prev["persons"]}
    summary = json.loads((tmp_path / "people.summary.json").read_text())
    assert summary["frames"] == 5 and summary["boxes"] == sum(len(r["persons"]) for r in recs)
    assert summary["persons"] == sum(p["route"] != "dropped" for r in recs for p in r["persons"])
    assert abs(sum(summary["share_of_busy_time"].values()) - 1) < 1e-6
    assert "FPS" in r.stderr and "large net" in r.stderr


def test_precomputed_detections_are_honoured_exactly(
    cpu_artifacts: Path, people: Path, tmp_path: Path
) -> None:
    given = {
        0: [[398.25, 251.5, 145.5, 351.0], [1200.0, 600.0, 200.0, 300.0]],  # second one runs off-image
        1: [[388.0, 252.0, 147.0, 351.0]],
        3: [[364.75, 259.0, 141.0, 340.5]],
    }
    dets = [
        {"image_id": f, "category_id": 1, "bbox": b, "score": 0.5 + 0.1 * i}
        for f, boxes in given.items()
        for i, b in enumerate(boxes)
    ]
    dets.append({"image_id": 1, "category_id": 2, "bbox": [0, 0, 50, 50], "score": 0.99})  # not a person
    (tmp_path / "d.json").write_text(json.dumps(dets))
    r = run_cli(
        cpu_artifacts,
        people,
        tmp_path,
        "--detector",
        f"json:{tmp_path / 'd.json'}",
        "--no-video",
        "--max-frames",
        "4",
    )
    assert r.returncode == 0, r.stderr
    recs = jsonl(tmp_path / "people.jsonl")
    assert len(recs) == 4 and not (tmp_path / "people.overlay.avi").exists()
    for rec in recs:
        assert [p["box"] for p in rec["persons"]] == given.get(rec["frame"], [])
    assert [p["score"] for p in recs[0]["persons"]] == [0.5, 0.6]
    assert recs[1]["persons"][0]["track_id"] == recs[0]["persons"][0]["track_id"]  # same person, same id


def _start_and_wait(cpu_artifacts: Path, long_clip: Path, out: Path, min_lines: int) -> subprocess.Popen:
    dets = one_box_per_frame(out / "d.json", 60)
    proc = subprocess.Popen(
        cli_args(cpu_artifacts, long_clip, out, "--detector", f"json:{dets}"),
        cwd=REPO,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = out / "long.jsonl"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if lines.exists() and lines.read_bytes().count(b"\n") >= min_lines:
            return proc
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the CLI wrote too few lines in 90 s")


def test_ctrl_c_leaves_valid_outputs(cpu_artifacts: Path, long_clip: Path, tmp_path: Path) -> None:
    proc = _start_and_wait(cpu_artifacts, long_clip, tmp_path, 2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    recs = jsonl(tmp_path / "long.jsonl")
    assert 2 <= len(recs) < 60 and [r["frame"] for r in recs] == list(range(len(recs)))
    frames = video_frames(tmp_path / "long.overlay.avi")
    assert len(frames) == len(recs) and frames[0].shape == (480, 640, 3)
    assert int(cv2.VideoCapture(str(tmp_path / "long.overlay.avi")).get(cv2.CAP_PROP_FRAME_COUNT)) == len(
        recs
    )
    assert json.loads((tmp_path / "long.summary.json").read_text())["interrupted"] == "SIGINT"


def test_sigkill_leaves_valid_outputs(cpu_artifacts: Path, long_clip: Path, tmp_path: Path) -> None:
    proc = _start_and_wait(cpu_artifacts, long_clip, tmp_path, 3)
    proc.kill()
    proc.communicate(timeout=30)
    recs = jsonl(tmp_path / "long.jsonl")  # every line whole and valid
    assert 3 <= len(recs) < 60 and [r["frame"] for r in recs] == list(range(len(recs)))
    frames = video_frames(tmp_path / "long.overlay.avi")
    assert len(recs) - 1 <= len(frames) <= len(recs)  # the video is written just after the line
    header = int(cv2.VideoCapture(str(tmp_path / "long.overlay.avi")).get(cv2.CAP_PROP_FRAME_COUNT))
    # A kill between a frame's write and its header patch leaves that one frame uncounted (see
    # test_avi_killed_between_frame_and_header_patch); the header never counts a missing frame.
    assert len(frames) - 1 <= header <= len(frames)


def test_truncated_video_is_one_clear_error(cpu_artifacts: Path, people: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(people.read_bytes()[: people.stat().st_size // 2])
    r = run_cli(cpu_artifacts, cut, tmp_path / "out")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert f"cannot open video file '{cut}'" in r.stderr and "truncated" in r.stderr


def test_missing_source_is_one_clear_error(cpu_artifacts: Path, tmp_path: Path) -> None:
    r = run_cli(cpu_artifacts, tmp_path / "nope.mp4", tmp_path / "out")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "nope.mp4" in errors[0] and "not found" in errors[0]
