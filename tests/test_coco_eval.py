"""bench.coco_eval on the real coco-mini set: known answers and parity with raw pycocotools."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from measure import coco_eval as ce


def _gt_path(coco_mini):
    return coco_mini / "person_keypoints.json"


def _gt_as_results(gt: COCO) -> list[dict]:
    anns = [a for a in gt.dataset["annotations"] if a["num_keypoints"] > 0]
    kp = np.array([a["keypoints"] for a in anns], dtype=np.float64).reshape(-1, 17, 3)
    return ce.to_coco_results([a["image_id"] for a in anns], kp, np.ones(len(anns)))


def _raw_pycocotools(gt_path, res_path) -> dict[str, float]:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        ev = COCOeval(gt, gt.loadRes(str(res_path)), iouType="keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return dict(zip(ce.STAT_NAMES, map(float, ev.stats)))


def test_ground_truth_as_predictions_scores_one(coco_mini):
    gt = ce.load_gt(_gt_path(coco_mini))
    res = _gt_as_results(gt)
    assert len(res) == 12  # 14 people, 2 without labelled keypoints (COCO ignores those)
    stats = ce.evaluate_keypoints(gt, res)
    assert set(stats) == set(ce.STAT_NAMES)
    assert all(v == 1.0 for v in stats.values()), stats


def test_equals_pycocotools_on_a_real_results_file(coco_mini, tmp_path, capsys):
    gt = ce.load_gt(_gt_path(coco_mini))
    res_path = tmp_path / "results.json"
    res_path.write_text(json.dumps(ce.synthetic_results(gt, seed=0, noise=0.5, n_false=3)))
    ours = ce.evaluate_keypoints(_gt_path(coco_mini), res_path)
    assert capsys.readouterr().out == ""  # pycocotools kept quiet
    raw = _raw_pycocotools(_gt_path(coco_mini), res_path)
    assert ours == raw
    assert 0.0 < ours["AP"] < 1.0  # a non-trivial curve, not the all-or-nothing case
    assert ce.main(["--gt", str(_gt_path(coco_mini)), "--results", str(res_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {k: out[k] for k in raw} == raw and out["images_with_records"] == out["gt_images"] == 4


def test_more_noise_scores_lower(coco_mini):
    gt = ce.load_gt(_gt_path(coco_mini))
    aps = [
        ce.evaluate_keypoints(gt, ce.synthetic_results(gt, seed=1, noise=n, n_false=0))["AP"]
        for n in (0.1, 0.5, 1.5)
    ]
    assert aps[0] > aps[1] > aps[2]


def test_empty_results_score_zero(coco_mini):
    stats = ce.evaluate_keypoints(_gt_path(coco_mini), [])
    assert all(v == 0.0 for v in stats.values())


def test_to_coco_results_shapes_and_presence():
    kp = np.arange(2 * 17 * 2, dtype=np.float64).reshape(2, 17, 2)
    res = ce.to_coco_results([785, 40083], kp, [0.9, 0.5], presence=np.full((2, 17), 0.25))
    assert [r["image_id"] for r in res] == [785, 40083]
    assert res[1]["keypoints"][:3] == [34.0, 35.0, 1.0]
    assert res[0]["presence"] == [0.25] * 17 and res[0]["category_id"] == 1
    with pytest.raises(ValueError, match="keypoints must be"):
        ce.to_coco_results([1], np.zeros((1, 16, 3)), [1.0])
    with pytest.raises(ValueError, match="one row per person"):
        ce.to_coco_results([1, 2], np.zeros((1, 17, 3)), [1.0])


def test_bad_results_name_the_record(coco_mini, tmp_path):
    gt = ce.load_gt(_gt_path(coco_mini))
    good = _gt_as_results(gt)
    bad_img = [dict(good[0], image_id=123456)]
    with pytest.raises(ValueError, match="image_id 123456"):
        ce.evaluate_keypoints(gt, bad_img)
    nan = [dict(good[0], keypoints=[float("nan")] * 51)]
    with pytest.raises(ValueError, match="NaN"):
        ce.evaluate_keypoints(gt, nan)
    short = [dict(good[0], keypoints=good[0]["keypoints"][:48])]
    with pytest.raises(ValueError, match="51 numbers"):
        ce.evaluate_keypoints(gt, short)
    with pytest.raises(FileNotFoundError, match="results file"):
        ce.evaluate_keypoints(gt, tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError, match="--gt"):
        ce.load_gt(tmp_path / "missing_gt.json")


def test_each_record_check_names_its_field(coco_mini):
    """One bad record per check of validate_results: the message names the record and the field."""
    gt = ce.load_gt(_gt_path(coco_mini))
    good = _gt_as_results(gt)[0]
    no_score = {k: v for k, v in good.items() if k != "score"}
    cases = [
        ([no_score], "result #0 has no 'score'"),
        ([good, dict(good, category_id=7)], r"result #1: category_id 7 not in GT categories \[1\]"),
        ([dict(good, score="high")], "keypoints and score must be numbers"),
        ([dict(good, presence=[1.0] * 5)], "presence must have 17 values"),
    ]
    for results, named in cases:
        with pytest.raises(ce.ResultsError, match=named):
            ce.validate_results(gt, results)
    ce.validate_results(gt, [dict(good, presence=[1.0] * 17)])
