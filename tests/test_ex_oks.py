"""Ex-OKS: equals pycocotools' OKS when nothing is out, and each in/out case scores as docs/DESIGN.md section 6 says."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from bench.cropcoco import crop_coco
from measure import coco_eval as ce
from measure import ex_oks as ex
from runtime.pose.preprocess import boxes_to_center_scale


def _load(path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def _runtime_windows(boxes: np.ndarray) -> np.ndarray:
    c, s = boxes_to_center_scale(boxes)
    return np.concatenate([c - s / 2, c + s / 2], axis=1).astype(np.float64)


def test_window_is_the_runtime_crop(coco_mini):
    import json

    dets = json.loads((coco_mini / "person_detections.json").read_text())
    boxes = np.array([d["bbox"] for d in dets], dtype=np.float64)
    np.testing.assert_allclose(ex.activation_windows(boxes), _runtime_windows(boxes), rtol=1e-5, atol=1e-3)


def test_equals_pycocotools_oks_when_all_in_and_present(coco_mini):
    gt = _load(coco_mini / "person_keypoints.json")
    anns = gt.dataset["annotations"]
    kp = np.array([a["keypoints"] for a in anns], dtype=np.float64).reshape(-1, 17, 3)
    win = ex.activation_windows(np.array([a["bbox"] for a in anns]))
    labelled = kp[..., 2] > 0
    assert ex.in_window(kp[..., 0], kp[..., 1], win)[labelled].all()  # the premise holds on coco-mini
    res = ce.synthetic_results(gt, seed=3, noise=0.6, n_false=4, presence=True)
    with contextlib.redirect_stdout(io.StringIO()):
        raw = COCOeval(gt, gt.loadRes([dict(r) for r in res]), iouType="keypoints")
        ours = ex.ExOKSeval(gt, gt.loadRes([dict(r) for r in res]), iouType="keypoints")
        raw._prepare()
        ours._prepare()
    n_pairs = 0
    for img in gt.getImgIds():
        a, b = np.asarray(raw.computeOks(img, 1)), np.asarray(ours.computeOks(img, 1))
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-15)
        n_pairs += a.size
    assert n_pairs > 14  # every GT (incl. the 2 unlabelled ones) against every prediction
    plain = ce.evaluate_keypoints(gt, res)
    extended = ex.evaluate_ex_oks(gt, res)
    assert {k: extended[k] for k in ce.STAT_NAMES} == pytest.approx(plain, abs=1e-12)
    cases = extended["cases"]
    assert (
        cases["gt_in_pred_in"] > 0
        and cases["gt_out_pred_in"] == cases["gt_in_pred_out"] == cases["gt_out_pred_out"] == 0
    )
    assert extended["presence_accuracy"] == 1.0


def _sim(d: float, sigma: float, area: float) -> float:
    return math.exp(-(d**2) / (2 * area * (2 * sigma) ** 2))


def test_the_four_cases_by_hand():
    # Box 60x80 is already 3:4; padded 1.25 -> 75x100 around (130,140): x 92.5..167.5, y 90..190.
    box, area = np.array([[100.0, 100.0, 60.0, 80.0]]), 4000.0
    np.testing.assert_allclose(ex.activation_windows(box), [[92.5, 90.0, 167.5, 190.0]])
    gt = np.zeros((1, 17, 3))
    A, B, C, D = 0, 9, 5, 15  # different sigmas on purpose
    gt[0, A] = (130, 140, 2)  # in
    gt[0, B] = (200, 140, 2)  # out (right of the window)
    gt[0, C] = (130, 100, 1)  # in, 10 px below the top edge
    gt[0, D] = (130, 250, 2)  # out (below)
    dt = np.zeros((1, 17, 2))
    pres = np.full((1, 17), 0.9)
    dt[0, A] = (133, 144)  # in/in: |(3,4)| = 5
    dt[0, B] = (160, 140)  # GT out, pred in: 7.5 px from the right edge
    dt[0, C], pres[0, C] = (0, 0), 0.1  # GT in, pred out: GT is 10 px from the edge
    dt[0, D], pres[0, D] = (0, 0), 0.2  # both out: d = 0
    s = ce.COCO_SIGMAS
    expect = {A: _sim(5, s[A], area), B: _sim(7.5, s[B], area), C: _sim(10, s[C], area), D: 1.0}
    sims, gin = ex.keypoint_ex_oks(
        gt[..., :2], ex.activation_windows(box), np.array([area]), dt, pres >= 0.5, s
    )
    for k, v in expect.items():
        assert sims[0, k] == pytest.approx(v, rel=1e-12)
    assert gin[0, [A, B, C, D]].tolist() == [True, False, True, False]
    m = ex.ex_oks_matrix(gt, box, [area], dt, pres, threshold=0.5)
    assert m.shape == (1, 1) and m[0, 0] == pytest.approx(np.mean(list(expect.values())), rel=1e-12)
    # A prediction that claims "present" but lands outside the window is measured from outside the edge.
    dt2 = dt.copy()
    dt2[0, B] = (180, 140)
    s2, _ = ex.keypoint_ex_oks(gt[..., :2], ex.activation_windows(box), np.array([area]), dt2, pres >= 0.5, s)
    assert s2[0, B] == pytest.approx(_sim(12.5, s[B], area), rel=1e-12)
    # Below C's presence the threshold flips C to in/in: plain distance from (0,0) to (130,100).
    low = ex.ex_oks_matrix(gt, box, [area], dt, pres, threshold=0.05)
    parts = [
        expect[A],
        expect[B],
        _sim(math.hypot(130, 100), s[C], area),
        _sim(math.hypot(130, 250), s[D], area),
    ]
    assert low[0, 0] == pytest.approx(np.mean(parts), rel=1e-12)


def test_presence_and_in_out_report_on_cropped_coco(coco_mini, tmp_path):
    summary = crop_coco(coco_mini, tmp_path / "crop", strength=1.0, seed=0)
    gt = _load(summary["json"])
    anns = [a for a in gt.dataset["annotations"] if a["num_keypoints"] > 0]
    kp = np.array([a["keypoints"] for a in anns], dtype=np.float64).reshape(-1, 17, 3)
    win = _runtime_windows(np.array([a["bbox"] for a in anns]))  # independent window
    gin = (
        (kp[..., 0] >= win[:, :1])
        & (kp[..., 0] <= win[:, 2:3])
        & (kp[..., 1] >= win[:, 1:2])
        & (kp[..., 1] <= win[:, 3:])
    )
    vis = kp[..., 2] > 0
    n_out = int((~gin & vis).sum())
    assert (
        n_out >= 1 and summary["keypoints_out_of_image"] > n_out
    )  # padding keeps most cut-off points in-window
    pres = np.where(gin, 0.9, 0.6)  # separable at any threshold in (0.6, 0.9]
    res = ce.to_coco_results([a["image_id"] for a in anns], kp, np.ones(len(anns)), presence=pres)

    best = ex.evaluate_ex_oks(gt, res, presence_threshold="best")
    assert best["presence_threshold"] == best["best_presence_threshold"] == 0.65  # nearest 0.5 in (0.6, 0.9]
    assert best["AP"] == 1.0 and best["presence_accuracy"] == 1.0 and best["matched"] == len(anns)
    rep = best["keypoints"]
    assert rep["out_window"]["n"] == n_out and rep["in_window"]["n"] == int((gin & vis).sum())
    assert rep["out_image"]["n"] == summary["keypoints_out_of_image"]
    assert rep["out_window"]["ex_oks"] == 1.0 and best["cases"]["gt_out_pred_in"] == 0
    acc = best["presence_accuracy_by_threshold"]
    assert acc["0.60"] < 1.0 and acc["0.65"] == acc["0.90"] == 1.0 and acc["0.95"] < 1.0

    at_half = ex.evaluate_ex_oks(gt, res, presence_threshold=0.5)
    assert at_half["cases"]["gt_out_pred_in"] == n_out
    assert at_half["keypoints"]["out_window"]["ex_oks"] < 1.0  # "present" claims for cut-off points cost
    assert at_half["keypoints"]["in_window"]["ex_oks"] == 1.0
    assert at_half["presence_accuracy"] == pytest.approx(1 - n_out / vis.sum())
    assert ce.evaluate_keypoints(gt, res)["AP"] == 1.0  # plain OKS cannot see the difference


def test_best_threshold_grid_and_bad_threshold(coco_mini):
    gin = np.array([False, False, True, True])
    assert ex.best_threshold(np.array([0.1, 0.2, 0.3, 0.9]), gin) == 0.3  # perfect on (0.2, 0.3]
    assert ex.best_threshold(np.array([0.1, 0.3, 0.72, 0.9]), gin) == 0.5  # a tie band holding 0.5 keeps it
    acc = ex.presence_accuracy(np.array([0.1, 0.2, 0.3, 0.9]), gin)
    assert acc.shape == (19,) and acc.max() == 1.0 and acc[0] == 0.5  # t=0.05 calls everything "in"
    with pytest.raises(ValueError, match="presence_threshold"):
        ex.evaluate_ex_oks(coco_mini / "person_keypoints.json", [], presence_threshold="median")
    with pytest.raises(ValueError, match="presence_threshold"):
        ex.evaluate_ex_oks(coco_mini / "person_keypoints.json", [], presence_threshold=1.5)
