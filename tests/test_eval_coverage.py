"""Evaluation commands never score partial or mismatched input without a word: a JSONL covering
half the clip is scored on those frames and flagged (coverage column, warning line); frames the clip
does not have, or written twice, are refused (exit 2); COCO results missing GT images are flagged;
precisions and gates that were not measured are never "met". Real files, real CLIs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from build.synth.video import ClipSpec, write_clip

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> dict:
    return write_clip(
        tmp_path_factory.mktemp("clip"), ClipSpec(seconds=1.2, fps=25, people=2, seed=3), photos=[]
    )


def _perfect_jsonl(gt_path: Path, out: Path, frames: range | None = None, extra: list[int] = ()) -> Path:
    """A run that poses every ground-truth person exactly (so AP is 1 on any frames it covers)."""
    gt = json.loads(gt_path.read_text())
    frame_of = {im["id"]: im.get("frame_id", im["id"] - 1) for im in gt["images"]}
    per: dict[int, list] = {t: [] for t in frame_of.values()}
    for a in gt["annotations"]:
        if a["num_keypoints"] > 0:
            kp = [[x, y, 1.0 if v > 0 else 0.0] for x, y, v in zip(*[iter(a["keypoints"])] * 3)]
            per[frame_of[a["image_id"]]].append(
                {"box": a["bbox"], "keypoints": kp, "score": 1.0, "route": "small", "track_id": a["track_id"]}
            )
    keep = sorted(per) if frames is None else [t for t in sorted(per) if t in frames]
    out.write_text(
        "".join(json.dumps({"frame": t, "persons": per.get(t, [])}) + "\n" for t in [*keep, *extra])
    )
    return out


def test_video_eval_flags_a_run_covering_half_the_clip(clip, tmp_path) -> None:
    gt = Path(clip["keypoints"])
    n = len(json.loads(gt.read_text())["images"])
    full = _perfect_jsonl(gt, tmp_path / "full.jsonl")
    half = _perfect_jsonl(gt, tmp_path / "half.jsonl", range(n // 2))
    r = _cli(
        "bench.video_eval",
        "--gt",
        str(gt),
        "--jsonl",
        str(full),
        str(half),
        "--json",
        str(tmp_path / "m.json"),
    )
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["full"]["coverage"] == 1.0 and m["half"]["coverage"] == pytest.approx((n // 2) / n)
    assert m["half"]["AP"] == pytest.approx(m["full"]["AP"]) and m["full"]["AP"] > 0.9  # scored on its frames
    assert r.stderr.count("warning:") == 1 and f"covers {n // 2} of the clip's {n} frames (50%)" in r.stderr
    assert "| coverage |" in r.stdout and "| half | 50% |" in r.stdout


@pytest.mark.parametrize("case", ["alien frame", "frame twice", "not json"])
def test_video_eval_refuses_a_jsonl_of_another_clip(clip, tmp_path, case) -> None:
    gt = Path(clip["keypoints"])
    n = len(json.loads(gt.read_text())["images"])
    j = _perfect_jsonl(
        gt, tmp_path / "run.jsonl", extra={"alien frame": [n + 5], "frame twice": [0], "not json": []}[case]
    )
    if case == "not json":
        j.write_text(j.read_text() + '{"frame": 3, "persons": [\n')
    r = _cli("bench.video_eval", "--gt", str(gt), "--jsonl", str(j))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and str(j) in r.stderr


def test_accuracy_never_says_met_for_a_precision_it_did_not_measure(cpu_artifacts, tmp_path) -> None:
    """fp32-only artifacts: a named int8_cpu is refused (exit 2, one line); by default the targets
    line names what was not measured instead of "all met"."""
    r = _cli(
        "bench.accuracy",
        "--engines",
        str(cpu_artifacts),
        "--work",
        str(tmp_path),
        "--test-images",
        "3",
        "--precisions",
        "int8_cpu",
    )
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: {cpu_artifacts} has no int8_cpu models (--precisions int8_cpu): build them (python -m "
        "bench.accuracy without --engines builds all four) or leave them out"
    ]
    r = _cli("bench.accuracy", "--engines", str(cpu_artifacts), "--work", str(tmp_path), "--test-images", "3")
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("targets"))
    assert "met" not in line.replace("NOT MEASURED", "") and "NOT MEASURED: fp16, int8_cpu, int8_trt" in line


def test_coco_eval_flags_ground_truth_images_without_results(coco_mini, tmp_path) -> None:
    from measure.coco_eval import load_gt, synthetic_results

    gt = load_gt(coco_mini / "person_keypoints.json")
    res = synthetic_results(gt, seed=0)
    first = min(r["image_id"] for r in res)
    part = tmp_path / "part.json"
    part.write_text(json.dumps([r for r in res if r["image_id"] != first]))
    r = _cli(
        "bench.coco_eval", "--gt", str(coco_mini / "person_keypoints.json"), "--results", str(part), "--json"
    )
    assert r.returncode == 0, r.stderr
    n = len(gt.getImgIds())
    assert json.loads(r.stdout)["images_with_records"] == n - 1 and json.loads(r.stdout)["gt_images"] == n
    assert r.stderr.count("warning:") == 1
    assert f"no record for 1 of the {n} ground-truth images (ids {first})" in r.stderr
    full = tmp_path / "full.json"
    full.write_text(json.dumps(res))
    r = _cli("bench.coco_eval", "--gt", str(coco_mini / "person_keypoints.json"), "--results", str(full))
    assert r.returncode == 0 and "warning" not in r.stderr


def test_track_eval_refuses_a_video_shorter_than_its_ground_truth(clip, tmp_path) -> None:
    import shutil

    import cv2

    d = tmp_path / "short"
    shutil.copytree(Path(clip["video"]).parent, d)
    video = d / Path(clip["video"]).name
    cap = cv2.VideoCapture(str(video))
    frames = []
    while (got := cap.read())[0]:
        frames.append(got[1])
    cap.release()
    h, w = frames[0].shape[:2]
    wr = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 25, (w, h))
    for f in frames[: len(frames) // 2]:
        wr.write(f)
    wr.release()
    r = _cli("bench.track_eval", "--clip", str(d), "--no-hog")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"error: {video} has {len(frames) // 2} frames, its ground truth {len(frames)} (--clip {d}): "
        "regenerate the clip with python -m build.synth --video"
    ]


def test_track_eval_runs_each_detector_once_for_all_trackers(clip) -> None:
    """bench.track_eval.evaluate_clip: one detector pass per clip, replayed to every tracker; the clip's
    own boxes are close to its ground truth, so every tracker finds most people; a detector that finds
    nobody gets its own rows (recall 0), not the previous detector's boxes."""
    from bench.track_eval import evaluate_clip
    from runtime.detectors.factory import JsonDetections

    d = Path(clip["video"]).parent
    boxes = JsonDetections(d / "detections.json")
    seen: list[int] = []

    def counted(frame):
        seen.append(frame.index)
        return boxes(frame)

    def nothing(frame):
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)

    rows = evaluate_clip(d, {"clip boxes": counted, "none": nothing}, trackers=("iou", "buffered"))
    n = len(json.loads((d / "person_keypoints.json").read_text())["images"])
    assert seen == list(range(n))
    names = [name for name, _ in rows]
    assert names == ["clip boxes, iou", "clip boxes, buffered", "none, iou", "none, buffered"]
    assert [m["recall"] > 0.8 for _, m in rows] == [True, True, False, False], rows
    assert [m["recall"] for _, m in rows][2:] == [0.0, 0.0]


def test_ex_oks_flags_results_without_presence(coco_mini, tmp_path) -> None:
    from measure.coco_eval import load_gt, synthetic_results

    gt = load_gt(coco_mini / "person_keypoints.json")
    plain, with_presence = tmp_path / "plain.json", tmp_path / "pres.json"
    plain.write_text(json.dumps(synthetic_results(gt, seed=0)))
    with_presence.write_text(json.dumps(synthetic_results(gt, seed=0, presence=True)))
    r = _cli(
        "bench.ex_oks", "--gt", str(coco_mini / "person_keypoints.json"), "--results", str(plain), "--json"
    )
    assert r.returncode == 0, r.stderr
    n = len(json.loads(plain.read_text()))
    assert json.loads(r.stdout)["results_without_presence"] == n
    assert r.stderr.count("warning:") == 1 and f"{n} of {n} results in {plain} have no 'presence'" in r.stderr
    r = _cli(
        "bench.ex_oks", "--gt", str(coco_mini / "person_keypoints.json"), "--results", str(with_presence)
    )
    assert r.returncode == 0 and "warning" not in r.stderr
