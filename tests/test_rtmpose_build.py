"""dyn-rtm-s-l end to end: ``build.engines`` at --target cpu (fp32 + int8_cpu) and --target orin (the
plan), then ``runtime.images`` and ``runtime.video`` on the result, as a user runs them (subprocesses).

Slow (~10 min on the 2-core machine: RTMPose-l's INT8 calibration dominates); random weights, so
only the plumbing is checked (shapes, counts, files), not accuracy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.data import build_artifacts
from runtime.heads.registry import SIMCC

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
CONFIG = "dyn-rtm-s-l"


@pytest.fixture(scope="module")
def rtm_cpu(tmp_path_factory: pytest.TempPathFactory, coco_mini: Path) -> Path:
    extra = ("--calib-data", str(coco_mini), "--precision", "int8", "--calib-max-crops", "16")
    return build_artifacts(tmp_path_factory.mktemp("rtm"), CONFIG, "cpu", extra)


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", module, *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def test_cpu_build_has_both_simcc_nets_at_fp32_and_int8(rtm_cpu: Path):
    m = json.loads((rtm_cpu / "manifest.json").read_text())
    for role, arch in (("small", "rtmpose-s"), ("large", "rtmpose-l")):
        e = m["models"][role]
        assert (e["arch"], e["head"]) == (arch, SIMCC)
        assert [o["shape"] for o in e["outputs"]] == [["N", 17, 384], ["N", 17, 512]]
        assert (rtm_cpu / e["onnx"]).is_file()
        assert (rtm_cpu / e["variants"]["int8_cpu"]["onnx"]).is_file()
    costs = {c["precision"] for c in m["routing"]["costs"]["entries"]}
    assert {"fp32", "int8_cpu"} <= costs


@pytest.mark.parametrize("precision", ["fp32", "int8_cpu"])
def test_runtime_images_runs_the_pair(rtm_cpu: Path, coco_mini: Path, tmp_path: Path, precision: str):
    r = _run(
        "runtime.images",
        *("--engines", str(rtm_cpu), "--images", str(coco_mini)),
        *("--dets", str(coco_mini / "person_detections.json"), "--out", str(tmp_path)),
        *("--policy", "dyn", "--precision", precision),
    )
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "results.json").read_text())
    assert len(res) == 118 and all(len(d["keypoints"]) == 51 for d in res)


def test_runtime_video_runs_the_pair(rtm_cpu: Path, shared_data: Path, tmp_path: Path):
    clip = shared_data / "video" / "people.mp4"
    r = _run(
        "runtime.video",
        *("--engines", str(rtm_cpu), "--source", str(clip), "--out", str(tmp_path)),
        *("--threads", "1", "--quiet", "--max-frames", "6", "--no-video"),
    )
    assert r.returncode == 0, r.stderr
    assert any(tmp_path.iterdir())


def test_orin_target_writes_the_plan(tmp_path: Path, coco_mini: Path):
    extra = ("--calib-data", str(coco_mini), "--calib-max-crops", "16")
    out = build_artifacts(tmp_path, CONFIG, "orin", extra)
    plan = (out / "build_plan.sh").read_text()
    assert "small" in plan and "large" in plan and "trtexec" in plan
