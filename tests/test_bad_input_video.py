"""Bad-input corpus, part 2: ``python -m runtime.video`` on the real clip and real image folders.

Flag cases run ``runtime.video.engine.main`` in-process (same boundary as ``python -m``);
the cases that used to end in a native crash (HOG on tiny frames) run as
subprocesses, so a crash would show as its signal exit code, not kill pytest.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from failcheck import assert_one_line_failure, run_in_process, run_module, strict_json, strict_jsonl

from runtime.errors import EXIT_INPUT
from runtime.video.engine import main as video_main


@pytest.fixture(scope="module")
def people(shared_data: Path) -> Path:
    return shared_data / "video" / "people.mp4"


def _argv(engines: Path, source: Path | str, out: Path, *extra: str) -> list[str]:
    return [
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


FLAG_CASES = [
    (("--fps", "0"), "--fps"),
    (("--fps", "nan"), "--fps"),
    (("--hog-width", "0"), "--hog-width"),
    (("--hog-width", "79"), "--hog-width"),
    (("--budget-ms", "nan"), "--budget-ms"),
    (("--det-every", "0"), "--det-every"),
    (("--max-boxes", "-3"), "--max-boxes"),
    (("--det-thr", "1.5"), "--det-thr"),
    (("--presence-thr", "x"), "--presence-thr"),
    (("--max-frames", "0"), "--max-frames"),
    (("--detector", "yolo"), "--detector"),
    (("--detector", "json:/nonexistent/dets.json"), "/nonexistent/dets.json"),
    (("--backend", "ort", "--triton-url", "127.0.0.1:8001"), "--triton-url"),  # was silently a local run
    (("--backend", "triton"), "--triton-url"),
]


@pytest.mark.parametrize("extra,flag", FLAG_CASES, ids=[f"{a[0]}={a[1]}" for a, _ in FLAG_CASES])
def test_bad_video_flag_is_one_line(cpu_artifacts, people, tmp_path, capsys, extra, flag):
    rc, _, err = run_in_process(video_main, _argv(cpu_artifacts, people, tmp_path / "out", *extra), capsys)
    assert_one_line_failure(rc, err, EXIT_INPUT, flag)
    assert not (tmp_path / "out" / "people.jsonl").exists()  # refused before any output was opened


def test_out_that_is_a_file(cpu_artifacts, people, tmp_path, capsys):
    f = tmp_path / "taken"
    f.write_text("mine")
    rc, _, err = run_in_process(video_main, _argv(cpu_artifacts, people, f), capsys)
    assert_one_line_failure(rc, err, EXIT_INPUT, "--out", str(f))
    assert f.read_text() == "mine"


def test_json_detector_bad_record_is_named(cpu_artifacts, people, tmp_path, capsys):
    dets = tmp_path / "d.json"
    dets.write_text(json.dumps([{"frame": 0, "bbox": [1, 2, 3, 4]}, {"frame": 1, "bbox": ["1", 2, 3, 4]}]))
    rc, _, err = run_in_process(
        video_main, _argv(cpu_artifacts, people, tmp_path / "o", "--detector", f"json:{dets}"), capsys
    )
    assert_one_line_failure(rc, err, EXIT_INPUT, "record 1", "'bbox'", str(dets))


def test_json_detector_nan_boxes_are_dropped_not_fatal(cpu_artifacts, people, tmp_path, capsys):
    """NaN boxes used to crash the overlay drawing and be written as the non-JSON token NaN."""
    dets = tmp_path / "d.json"
    dets.write_text(
        '[{"frame": 0, "bbox": [NaN, 10, 50, 100], "score": 0.9},'
        ' {"frame": 0, "bbox": [100, 50, 80, 200], "score": 0.8},'
        ' {"frame": 1, "bbox": [1e308, 1e308, Infinity, 5], "score": 0.7}]'
    )
    out = tmp_path / "o"
    rc, stdout, err = run_in_process(
        video_main,
        _argv(cpu_artifacts, people, out, "--detector", f"json:{dets}", "--max-frames", "2"),
        capsys,
    )
    assert rc == 0, err
    recs = strict_jsonl(out / "people.jsonl")
    assert [[p.get("dropped") for p in r["persons"]] for r in recs] == [["nan_or_inf", None], ["nan_or_inf"]]
    assert recs[0]["persons"][0]["box"][0] is None and "keypoints" not in recs[0]["persons"][0]
    assert "boxes in 3, posed 1, dropped 2 (nan_or_inf 2)" in stdout
    summary = strict_json((out / "people.summary.json").read_text())
    assert summary["account"] == {"boxes": 3, "posed": 1, "dropped": {"nan_or_inf": 2}}


def test_tiny_frames_do_not_crash_hog(cpu_artifacts, coco_mini, tmp_path):
    """A 1x1 and a 3x500 image in a folder used to abort in HOG (exit 134, malloc(): invalid size)."""
    src = tmp_path / "tiny"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), np.full((1, 1, 3), 128, np.uint8))
    cv2.imwrite(str(src / "b.png"), np.full((3, 500, 3), 128, np.uint8))
    shutil.copy(coco_mini / "000000000785.jpg", src / "c.jpg")
    out = tmp_path / "o"
    r = run_module("runtime.video", *_argv(cpu_artifacts, src, out))
    assert r.returncode == 0, r.stderr
    recs = strict_jsonl(out / "o.jsonl" if (out / "o.jsonl").exists() else out / "tiny.jsonl")
    assert len(recs) == 3


def test_narrow_hog_width_on_a_wide_clip(cpu_artifacts, people, tmp_path):
    """--hog-width 160 on a 16:9 clip used to segfault (exit 139): frames are now scaled to fit HOG's window."""
    out = tmp_path / "o"
    r = run_module(
        "runtime.video",
        *_argv(cpu_artifacts, people, out, "--hog-width", "160", "--max-frames", "3", "--no-video"),
    )
    assert r.returncode == 0, r.stderr
    assert len(strict_jsonl(out / "people.jsonl")) == 3
    assert "account: boxes in" in r.stdout


def test_triton_url_alone_means_triton(cpu_artifacts, people, tmp_path, capsys):
    """A named Triton server is used (was: ignored, the run went local with exit 0): nothing
    listens on the port, so the run stops on its first connection, naming the address."""
    from tools.ports import free_port

    url = f"127.0.0.1:{free_port()}"
    argv = _argv(cpu_artifacts, people, tmp_path / "out", "--no-video", "--triton-url", url)
    argv.remove("--threads"), argv.remove("1")  # ONNX Runtime's option: refused on Triton (by name)
    rc, _, err = run_in_process(video_main, argv, capsys)
    assert_one_line_failure(rc, err, EXIT_INPUT, f"Triton at {url}")
