"""``python -m runtime.images`` on the real coco-mini images and detector boxes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from measure.coco_eval import evaluate_keypoints

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runtime.images", *args], cwd=REPO, capture_output=True, text=True, timeout=900
    )


def test_writes_coco_results_for_every_valid_box(cpu_artifacts, coco_mini, tmp_path):
    out = tmp_path / "res.json"
    r = _run(
        "--engines",
        str(cpu_artifacts),
        "--images",
        str(coco_mini),
        "--dets",
        str(coco_mini / "person_detections.json"),
        "--out",
        str(out),
        "--policy",
        "small",
    )
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert len(res) == 118
    assert {d["image_id"] for d in res} == {785, 40083, 196141, 197388}
    assert all(len(d["keypoints"]) == 51 and d["category_id"] == 1 for d in res)
    assert "118 people from 4 images" in r.stdout
    stats = evaluate_keypoints(coco_mini / "person_keypoints.json", out)
    assert 0.0 <= stats["AP"] <= 1.0


def test_bad_detections_file_is_one_clear_error(cpu_artifacts, coco_mini, tmp_path):
    bad = tmp_path / "dets.json"
    bad.write_text("{not json")
    r = _run("--engines", str(cpu_artifacts), "--images", str(coco_mini), "--dets", str(bad))
    assert r.returncode != 0 and "cannot read detections" in r.stderr and "Traceback" not in r.stderr
    r = _run(
        "--engines",
        str(tmp_path),
        "--images",
        str(coco_mini),
        "--dets",
        str(coco_mini / "person_detections.json"),
    )
    assert r.returncode != 0 and "no manifest.json" in r.stderr


def test_triton_url_with_another_backend_is_refused(cpu_artifacts, coco_mini, tmp_path):
    """--triton-url with --backend ort was silently a local run; now one line, exit 2, no output."""
    out = tmp_path / "res.json"
    r = _run(
        "--engines",
        str(cpu_artifacts),
        "--images",
        str(coco_mini),
        "--dets",
        str(coco_mini / "person_detections.json"),
        "--out",
        str(out),
        "--backend",
        "ort",
        "--triton-url",
        "127.0.0.1:8001",
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert [x for x in r.stderr.splitlines() if x.startswith("error:")] == [
        "error: --triton-url 127.0.0.1:8001 only applies to --backend triton, not --backend ort: "
        "drop --triton-url to run locally, or use --backend triton"
    ]
    assert not out.exists()
