"""The committed detector fixture (build/fixtures/detector.pth, `python -m build.train.detector
--seed 0`): MMDet's RTMDet-nano layout loaded strictly, the track threshold its recipe measured,
people of held-out clips found through the runtime's letterbox, and the runtime with the fixture
in its artifacts tracking the people of a held-out clip (frame -> detector -> tracker -> pose,
no ground-truth boxes). Held-out: clip seeds 500-502; training draws from 1000 up and picks its
threshold on 900-902."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.video_eval import evaluate_run
from build.checkpoint import load_strict, read_meta, read_state_dict
from build.configs import get_config
from build.detector import add_detector
from build.detector_check import early_check
from build.engines import parse_args
from build.models.rtmdet import DetectorGraph, arch_of, build_rtmdet, num_classes_of
from build.synth.coco import load_photos
from build.synth.video import Clip, ClipSpec, write_clip
from build.train.detector import OUT, SIZE, box_iou, detect, person_boxes
from runtime.artifacts.manifest import load_manifest, save_manifest
from runtime.detectors.letterbox import Letterboxer

REPO = Path(__file__).resolve().parents[1]
HELD_OUT = (500, 501, 502)
RECALL = 0.7  # at IoU 0.5 and the track threshold, people with >= 300 visible pixels; 0.84 measured
IDF1 = 0.35  # on the held-out clip with the fixture in the loop: 0.64 measured (HOG: 0)


def _fixture() -> torch.nn.Module:
    sd = read_state_dict(OUT)
    assert arch_of(sd) == "rtmdet-nano" and num_classes_of(sd) == 1
    assert all(v.dtype == torch.float16 for v in sd.values() if v.is_floating_point())  # stored small
    model = build_rtmdet("rtmdet-nano", 1)
    load_strict(model, OUT, "detector")
    return model.eval()


def test_fixture_is_small_loads_strictly_and_records_its_recipe_and_track_threshold() -> None:
    assert OUT.stat().st_size < 3_000_000
    _fixture()
    meta = read_meta(OUT)
    assert meta["recipe"] == "python -m build.train.detector" and meta["options"]["seed"] == "0"
    assert 0.05 < meta["thresholds"]["track"] < 0.9


def test_fixture_finds_the_people_of_held_out_clips_at_its_track_threshold() -> None:
    torch.set_num_threads(1)
    graph, boxer = DetectorGraph(_fixture(), (SIZE, SIZE)), Letterboxer((SIZE, SIZE))
    thr = read_meta(OUT)["thresholds"]["track"]
    found = total = false = 0
    for seed in HELD_OUT:
        clip = Clip(ClipSpec(seconds=2.0, seed=seed), load_photos(None))
        for t in (5, 25, 45):
            fr = clip.render(t)
            dets, _ = detect(graph, boxer, fr.image, thr)
            gt = person_boxes(fr.people, 300.0)
            total += len(gt)
            iou = box_iou(gt, dets) if len(gt) and len(dets) else np.zeros((len(gt), len(dets)))
            found += int((iou.max(1, initial=0) >= 0.5).sum())
            false += int((iou.max(0, initial=0) < 0.5).sum())
    assert total >= 30
    assert found / total >= RECALL, f"recall {found}/{total}"
    assert false <= 0.25 * total, f"{false} boxes on no person ({total} people)"


@pytest.fixture(scope="module")
def fixture_artifacts(cpu_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's pose artifacts plus the fixture config's own detector, built the way
    build.engines builds it (fp32 only: INT8 is covered by tests/test_detector_build.py)."""
    root = tmp_path_factory.mktemp("detfix") / cpu_artifacts.name
    shutil.copytree(cpu_artifacts, root)
    args = parse_args(["--target", "cpu", "--det-precision", "fp32"])
    det = early_check(args, get_config("fixture-dyn"), REPO)
    assert det is not None
    manifest = load_manifest(root)
    add_detector(root, manifest, det.src, args, REPO, checked=det)
    save_manifest(root, manifest)
    return root


def test_the_manifest_carries_the_fixtures_track_threshold(fixture_artifacts: Path) -> None:
    entry = load_manifest(fixture_artifacts)["models"]["detector"]
    assert entry["thresholds"]["track"] == read_meta(OUT)["thresholds"]["track"]
    assert entry["weights"]["arch"] == "rtmdet-nano" and entry["input_hw"] == [SIZE, SIZE]


def _run(engines: Path, clip: Path, out: Path, *extra: str) -> dict[str, float]:
    r = subprocess.run(
        [sys.executable, "-m", "runtime.video", "--engines", str(engines), "--source", str(clip)]
        + ["--no-video", "--quiet", "--out", str(out), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return evaluate_run(clip.parent / "person_keypoints.json", out / f"{clip.stem}.jsonl")


@pytest.mark.slow
def test_the_runtime_tracks_held_out_people_with_the_fixture_detector(
    fixture_artifacts: Path, tmp_path: Path
) -> None:
    paths = write_clip(tmp_path / "clip", ClipSpec(seconds=4.0, seed=501), load_photos(None))
    clip = Path(paths["video"])
    m = _run(fixture_artifacts, clip, tmp_path / "fix")
    assert m["idf1"] >= IDF1 and m["box_AP"] >= 0.2, json.dumps(m)  # box AP 0.33 measured
    # the tracker's old constant 0.5 on these IoU-aware scores starts too few tracks
    low = _run(fixture_artifacts, clip, tmp_path / "thr05", "--track-thr", "0.5")
    assert low["idf1"] < m["idf1"] - 0.1, (low["idf1"], m["idf1"])  # 0.43 against 0.64 measured
