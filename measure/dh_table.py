"""Single vs double heatmap on synthetic CropCOCO crops: Ex-OKS AP and plain AP (docs/results/2026-12-probpose.md).

Every crop is its own COCO "image" with one ground-truth person and one
prediction, all in heatmap pixels of that crop. That frame is exact for both
metrics: the crop's affine is an isotropic scale plus a shift (3:4 window,
64x48 maps), OKS is invariant under it when the area is scaled with it (the
sets carry the area in heatmap pixels^2), and the crop window is known there
exactly: ``[0, W] x [0, H]`` (runtime.heads.grid.heatmap_to_image sends heatmap
x = 0 to the window's left edge). The GT box is chosen so that bench.ex_oks's
activation window (box at 3:4, padded 1.25) *is* that window, so Ex-OKS's
in/out rule needs no change.

Three scores per head (rows: single = the expert map only; double = expert
map where the calibrated presence says "in", outer map elsewhere, as the
runtime decodes; double with the in/out choice made by the truth = what a
perfect presence head would give the double head):

* **Ex-OKS AP, crop window**: ProbPose's Ex-OKS, window = the crop. A
  keypoint predicted "out" scores by the in/out claim only, never by where it
  is placed, so single and double (presence choice) are equal here by
  definition: what the outer map adds cannot show in this metric.
* **Ex-OKS AP, 2x window**: the same metric with the double head's own
  activation window (the outer map's, ``OUTER_FACTOR`` times the crop). The
  double head claims every keypoint inside it (the outer map has no presence
  of its own), so keypoints it places with the outer map score by distance;
  the single head can only say "out" for them (presence below threshold).
* **AP, in-window keypoints**: plain pycocotools keypoint AP with only the
  known keypoints inside the crop window and the cut image labelled.

Matching and accumulation are pycocotools' (bench.coco_eval / bench.ex_oks).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools.coco import COCO

from measure.coco_eval import run_cocoeval, stats_dict, to_coco_results
from measure.ex_oks import ASPECT_WH, PADDING, evaluate_ex_oks
from runtime.heads.grid import HEATMAP_HW

ROWS = ("single", "double", "double_truth_choice")


def window_box(factor: float = 1.0, hm_hw: tuple[int, int] = HEATMAP_HW) -> list[float]:
    """xywh box (heatmap pixels) whose Ex-OKS activation window is the crop window scaled by ``factor``."""
    hh, hw = hm_hw
    w, h = hw * factor / PADDING, hh * factor / PADDING
    assert abs(w / h - ASPECT_WH) < 1e-9, "the heatmap must be 3:4 like the activation window"
    return [hw / 2 - w / 2, hh / 2 - h / 2, w, h]


def crop_gt(xy: np.ndarray, labelled: np.ndarray, area_hm: np.ndarray, factor: float = 1.0) -> COCO:
    """One COCO image per crop with its one person: keypoints [N,17,2] (heatmap px), ``labelled`` [N,17]."""
    box = window_box(factor)
    images, anns = [], []
    for i in range(len(xy)):
        kp = np.concatenate([np.where(labelled[i, :, None], xy[i], 0.0), 2.0 * labelled[i, :, None]], -1)
        images.append({"id": i + 1})
        anns.append(
            {
                "id": i + 1,
                "image_id": i + 1,
                "category_id": 1,
                "iscrowd": 0,
                "bbox": box,
                "area": float(max(area_hm[i], 1.0)),
                "num_keypoints": int(labelled[i].sum()),
                "keypoints": [float(v) for v in kp.reshape(-1)],
            }
        )
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def row_predictions(
    single: np.ndarray, double: np.ndarray, truth_choice: np.ndarray, presence: np.ndarray, gt_in: np.ndarray
) -> dict[str, dict[str, np.ndarray]]:
    """Per row: keypoints [N,17,2], presence for the crop window and for the 2x window.

    2x window: the single head claims "in" only what its presence calls in; the
    double head claims everything (its outer map covers the 2x window).
    """
    ones = np.ones_like(presence)
    truth = gt_in.astype(np.float64)
    return {
        "single": {"xy": single, "crop": presence, "wide": presence},
        "double": {"xy": double, "crop": presence, "wide": ones},
        "double_truth_choice": {"xy": truth_choice, "crop": truth, "wide": ones},
    }


def dh_table(
    single: np.ndarray,
    double: np.ndarray,
    truth_choice: np.ndarray,
    presence: np.ndarray,
    score: np.ndarray,
    xy: np.ndarray,
    known: np.ndarray,
    valid: np.ndarray,
    area_hm: np.ndarray,
    threshold: float,
    factor: float,
) -> dict[str, Any]:
    """Ex-OKS AP (crop window, 2x window) and in-window AP for single / double / double with truth choice.

    ``single``/``double``/``truth_choice`` [N,17,2] decoded keypoints (heatmap px), ``presence``
    [N,17] calibrated, ``score`` [N] person score, ``xy`` [N,17,2] truth, ``known`` [N,17] truth
    known, ``valid`` [N,17] known and inside the window and the cut image, ``area_hm`` [N].
    """
    from measure.ex_oks import activation_windows, in_window

    win = activation_windows(np.array([window_box(1.0)]))
    gt_in = in_window(xy[..., 0], xy[..., 1], win)
    gt_crop = crop_gt(xy, known, area_hm, 1.0)
    gt_wide = crop_gt(xy, known, area_hm, factor)
    gt_plain = crop_gt(xy, valid, area_hm, 1.0)
    ids = np.arange(1, len(xy) + 1)
    out: dict[str, Any] = {
        "n_crops": int(len(xy)),
        "threshold": float(threshold),
        "outer_factor": float(factor),
        "n_known_in_window": int((known & gt_in).sum()),
        "n_known_out_of_window": int((known & ~gt_in).sum()),
        "rows": {},
    }
    for name, p in row_predictions(single, double, truth_choice, presence, gt_in).items():
        res = {}
        for key, gt in (("crop", gt_crop), ("wide", gt_wide)):
            r = to_coco_results(ids, p["xy"], score, p[key])
            res[f"ex_oks_ap_{key}"] = evaluate_ex_oks(gt, r, presence_threshold=threshold)["AP"]
        plain = stats_dict(run_cocoeval(gt_plain, to_coco_results(ids, p["xy"], score)))
        res["ap_in_window"] = plain["AP"]
        out["rows"][name] = res
    return out


def format_table(t: dict[str, Any]) -> str:
    """The table of docs/results/2026-12-probpose.md (markdown)."""
    names = {
        "single": "single (expert map)",
        "double": "double, choice by presence (run time)",
        "double_truth_choice": "double, choice by the truth (upper bound)",
    }
    f = t["outer_factor"]
    lines = [
        f"| head | Ex-OKS AP, crop window | Ex-OKS AP, {f:g}x window | AP, in-window keypoints |",
        "|---|---|---|---|",
    ]
    for k in ROWS:
        r = t["rows"][k]
        lines.append(
            f"| {names[k]} | {r['ex_oks_ap_crop']:.3f} | {r['ex_oks_ap_wide']:.3f} | {r['ap_in_window']:.3f} |"
        )
    return "\n".join(lines)
