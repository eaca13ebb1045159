"""The per-precision accuracy table (measure.precision_table, bench.accuracy).

Unit: the table's assembly on a tiny generated set (three build.synth scenes, the nets'
outputs made from the ground truth), so every number has a known direction.
Slow: the real ``python -m bench.accuracy`` on a small build.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from build.synth.coco import write_dataset
from measure.net_outputs import NetOutputs
from measure.precision_table import MAX_DROP, POLICIES, assemble, format_markdown
from measure.workload import Frame, make_cropset
from runtime.heads.probfields import ProbExtras
from runtime.pose.assemble import People
from runtime.pose.routing import route_band

K1, K2 = 0.3, 0.7


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Frames whose boxes are the GT boxes, the crop set, and each crop's GT keypoints."""
    paths = write_dataset(tmp_path_factory.mktemp("tiny"), 3, seed=123, photos=[])
    gt = json.loads(paths["keypoints"].read_text())
    import cv2

    frames, kps = [], []
    for im in gt["images"]:
        anns = [a for a in gt["annotations"] if a["image_id"] == im["id"]]
        img = cv2.imread(str(paths["images"] / im["file_name"]))
        frames.append(
            Frame(
                im["id"],
                img,
                np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4),
                np.full(len(anns), 0.9),
            )
        )
        kps.append(np.array([a["keypoints"] for a in anns], np.float32).reshape(-1, 17, 3))
    cs = make_cropset(frames)
    truth = np.concatenate([k[cs.kept[i]] for i, k in enumerate(kps)])
    truth[..., 2] = 0.9  # keypoint score
    assert len(cs) >= 4, "the tiny set needs a few crops"
    return frames, cs, truth, paths["keypoints"]


def outputs(
    truth: np.ndarray, small_noise: float, large_noise: float, scores: np.ndarray, seed: int
) -> NetOutputs:
    rng = np.random.default_rng(seed)

    def noisy(s: float) -> np.ndarray:
        k = truth.copy()
        k[..., :2] += rng.normal(0, s, k[..., :2].shape).astype(np.float32)
        return k

    n = len(truth)
    ones = np.ones((n, 17), np.float32)
    return NetOutputs(
        scores,
        {
            r: People(noisy(s), ones, ProbExtras.empty(n, ()))
            for r, s in (("small", small_noise), ("large", large_noise))
        },
        {},
    )


def test_table_rows_drops_targets_and_router_agreement(tiny):
    frames, cs, truth, gt = tiny
    n = len(cs)
    scores = np.linspace(0, 1, n)
    flipped = scores.copy()
    flipped[: n // 2] = 0.99  # another router: the band's lower crops leave it
    fp32 = outputs(truth, 8.0, 0.0, scores, seed=0)
    nets = {
        "fp32": fp32,
        "fp16": NetOutputs(scores.copy(), dict(fp32.people), {}),  # identical
        "int8_trt": outputs(truth, 8.0, 25.0, flipped, seed=1),
    }  # a worse large net
    rows = assemble(frames, cs, nets, K1, K2, gt)
    by = {(r.policy, r.precision): r for r in rows}
    assert set(by) == {(p, q) for p in POLICIES for q in nets}
    for r in rows:
        assert 0.0 <= r.AP <= 1.0 and 0.0 <= r.AR <= 1.0 and math.isfinite(r.drop)
    assert by["large", "fp32"].AP > by["small", "fp32"].AP  # exact keypoints beat 8 px noise
    assert by["large", "int8_trt"].drop > MAX_DROP["int8_trt"] and by["large", "int8_trt"].met is False
    for p in POLICIES:
        assert by[p, "fp16"].drop == 0.0 and by[p, "fp16"].met is True
        assert by[p, "fp32"].drop == 0.0 and by[p, "fp32"].met is None
    ref = route_band(scores, K1, K2)
    assert by["dyn", "fp32"].route_agreement == 1.0
    assert by["dyn", "fp32"].large_fraction == pytest.approx(ref.mean())
    got = route_band(flipped, K1, K2)
    assert by["dyn", "int8_trt"].route_agreement == pytest.approx((got == ref).mean())
    assert by["dyn", "int8_trt"].route_agreement < 1.0
    assert by["small", "fp32"].large_fraction == 0.0 and by["large", "fp32"].large_fraction == 1.0
    assert by["small", "fp32"].route_agreement is None
    md = format_markdown(rows).splitlines()
    assert len(md) == 2 + len(rows) and "MISSED" in md[2 + rows.index(by["large", "int8_trt"])]


def test_table_needs_fp32(tiny):
    frames, cs, truth, gt = tiny
    with pytest.raises(ValueError, match="fp32"):
        assemble(frames, cs, {"int8_cpu": outputs(truth, 1.0, 1.0, np.zeros(len(cs)), 0)}, K1, K2, gt)


@pytest.mark.slow
def test_accuracy_command_on_a_small_build(tmp_path, capsys):
    """The real command: build fixture-dyn with all precisions, score a small held-out split."""
    from bench.accuracy import main
    from measure.precision_table import PRECISIONS
    from runtime.artifacts.manifest import load_manifest

    out = tmp_path / "acc.json"
    assert (
        main(["--work", str(tmp_path), "--test-images", "12", "--calib-images", "12", "--json", str(out)])
        == 0
    )
    table = json.loads(out.read_text())
    rows = {(r["policy"], r["precision"]): r for r in table["rows"]}
    assert set(rows) == {(p, q) for p in POLICIES for q in PRECISIONS}
    for r in rows.values():
        assert 0.0 <= r["AP"] <= 1.0 and math.isfinite(r["AP"]) and 0.0 <= r["AR"] <= 1.0
    assert rows["dyn", "fp32"]["route_agreement"] == 1.0 and rows["dyn", "fp32"]["drop"] == 0.0
    assert "| dyn | int8_trt |" in capsys.readouterr().out
    lab = load_manifest(table["engines"])["calibration"]["report"]["labelled"]  # the build's own table
    assert {(r["policy"], r["precision"]) for r in lab["rows"]} == set(rows)


def test_person_scores_box_or_pipeline(tiny):
    """``box`` ranks by the detector score alone; ``pipeline`` keeps the runtime's rescoring."""
    from measure.net_outputs import coco_results, compose
    from measure.precision_table import scored_results

    frames, cs, truth, _ = tiny
    nets = outputs(truth, 1.0, 1.0, np.zeros(len(cs)), 0)
    nets.keypoints["small"][..., 2] = 0.5
    res = compose(frames, cs, nets, np.zeros(len(cs), bool), with_router=False)
    box = scored_results(frames, res, "box")
    assert [r["score"] for r in box] == pytest.approx([0.9] * len(cs))
    pipe = scored_results(frames, res, "pipeline")
    assert pipe == coco_results(frames, res) and pipe[0]["score"] == pytest.approx(0.9 * 0.5)
    with pytest.raises(ValueError, match="person_score"):
        scored_results(frames, res, "oks")


def test_accuracy_cli_bad_input_is_one_line(tmp_path, capsys):
    """Refused before anything is drawn or built: unknown precision, a folder of another config."""
    from failcheck import assert_one_line_failure, run_in_process

    from bench.accuracy import main
    from runtime.errors import EXIT_INPUT

    rc, _, err = run_in_process(main, ["--precisions", "fp32,int4", "--work", str(tmp_path)], capsys)
    assert_one_line_failure(rc, err, EXIT_INPUT, "--precisions", "int4")
    (tmp_path / "manifest.json").write_text(json.dumps({"config": "dyn-r50-h32"}))
    rc, _, err = run_in_process(main, ["--engines", str(tmp_path), "--work", str(tmp_path)], capsys)
    assert_one_line_failure(rc, err, EXIT_INPUT, "--engines", "dyn-r50-h32")
    rc, _, err = run_in_process(main, ["--engines", str(tmp_path / "none")], capsys)
    assert_one_line_failure(rc, err, EXIT_INPUT, "--engines")
