"""Synthetic clips (build.synth.video): deterministic, and the ground truth matches what is drawn."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from build.synth.video import Clip, ClipSpec, long_clip, write_clip
from runtime.detectors.factory import JsonDetections
from runtime.io.sources import Frame

SPEC = ClipSpec(seconds=2.0, fps=25, people=5, seed=2)


@pytest.fixture(scope="module")
def frames():
    return list(Clip(SPEC).frames())


def test_same_seed_same_clip_and_frames_stand_alone(frames) -> None:
    again = Clip(SPEC)
    for t in (0, 17, len(frames) - 1):
        fr = again.render(t)  # one frame alone equals the same frame in sequence
        assert np.array_equal(fr.image, frames[t].image)
        assert fr.track_ids == frames[t].track_ids
        for a, b in zip(fr.people, frames[t].people):
            assert np.array_equal(a.keypoints, b.keypoints)
        assert np.array_equal(fr.boxes, frames[t].boxes)
    other = Clip(ClipSpec(seconds=2.0, fps=25, people=5, seed=3)).render(17)
    assert not np.array_equal(other.image, frames[17].image)


def test_keypoints_lie_on_the_drawn_figure_and_visibility_matches_cover(frames) -> None:
    checked = covered = 0
    for fr in frames:
        h, w = fr.image.shape[:2]
        for i, (p, mask) in enumerate(zip(fr.people, fr.masks)):
            nearer = np.zeros((h, w), bool)
            for m in fr.masks[i + 1 :]:  # drawn after = nearer
                nearer |= m > 0
            grown = cv2.dilate(mask, np.ones((3, 3), np.uint8)) > 0
            for x, y, v in p.keypoints:
                if v == 0:
                    continue
                xi, yi = int(round(x)), int(round(y))
                assert grown[yi, xi], f"frame {fr.index}: keypoint ({x:.1f},{y:.1f}) is off its figure"
                checked += 1
                if v == 2:
                    assert not nearer[yi, xi], (
                        f"frame {fr.index}: a visible keypoint is under a nearer person"
                    )
                covered += v == 1
    assert checked > 1000 and covered > 50  # the clip has people covering each other


def test_cut_off_keypoints_are_outside_the_frame_and_unlabelled(frames) -> None:
    cut = 0
    for fr in frames:
        h, w = fr.image.shape[:2]
        for p in fr.people:
            kp = p.keypoints
            outside = (kp[:, 0] < 0) | (kp[:, 1] < 0) | (kp[:, 0] > w - 1) | (kp[:, 1] > h - 1)
            assert np.array_equal(outside, p.out_of_image)
            assert (kp[outside, 2] == 0).all()
            cut += int(outside.sum())
    assert cut > 20  # people enter and leave within these 2 s


def test_track_ids_are_stable_and_motion_is_smooth(frames) -> None:
    last: dict[int, tuple[int, np.ndarray]] = {}
    crossings = 0
    for fr in frames:
        assert len(set(fr.track_ids)) == len(fr.track_ids)
        for tid, p in zip(fr.track_ids, fr.people):
            if tid in last and last[tid][0] == fr.index - 1:
                step = np.abs(p.keypoints[:, :2] - last[tid][1]).max()
                height = fr.image.shape[0] * 0.75
                assert step < 0.3 * height, f"track {tid} jumps {step:.0f} px at frame {fr.index}"
            last[tid] = (fr.index, p.keypoints[:, :2].copy())
        b = np.array([p.bbox for p in fr.people]).reshape(-1, 4)
        for i in range(len(b)):
            for j in range(i + 1, len(b)):
                ox = min(b[i, 0] + b[i, 2], b[j, 0] + b[j, 2]) - max(b[i, 0], b[j, 0])
                crossings += ox > 0.3 * min(b[i, 2], b[j, 2])
    assert crossings > 10  # people overlap: crossings and occlusions


def test_written_clip_reads_back(tmp_path) -> None:
    spec = ClipSpec(seconds=0.4, fps=25, people=3, seed=1)
    paths = write_clip(tmp_path, spec)
    cap = cv2.VideoCapture(str(paths["video"]))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == spec.frames == 10
    gt = json.loads(paths["keypoints"].read_text())
    assert [im["frame_id"] for im in gt["images"]] == list(range(10))
    assert {a["track_id"] for a in gt["annotations"]} <= {1, 2, 3}
    det = JsonDetections(paths["detections"])
    recs = [d for d in json.loads(paths["detections"].read_text()) if d["frame"] == 4]
    boxes, scores = det(Frame(4, 0.16, 0.0, np.zeros((480, 640, 3), np.uint8)))
    assert np.allclose(boxes, [r["bbox"] for r in recs]) and len(scores) == len(recs)


def test_cli_writes_a_clip_and_rejects_bad_flags(tmp_path) -> None:
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "build.synth",
            "--video",
            str(tmp_path / "c"),
            "--seconds",
            "0.2",
            "--photos",
            "",
        ],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "c" / "synth.mp4").is_file()
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "build.synth",
            "--video",
            str(tmp_path / "d"),
            "--photos",
            str(tmp_path / "nope"),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "--photos" in lines[0]


def test_long_clip_is_a_callable_real_format_clip(tmp_path) -> None:
    paths = long_clip(tmp_path, frames=30)  # benchmarks ask for hundreds; 30 keeps the test short
    gt = json.loads(paths["keypoints"].read_text())
    assert gt["videos"][0]["frames"] == len(gt["images"]) == 30
    assert cv2.VideoCapture(str(paths["video"])).get(cv2.CAP_PROP_FRAME_COUNT) == 30
    assert len({a["track_id"] for a in gt["annotations"]}) >= 3
