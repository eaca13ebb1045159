"""Ex-OKS (ProbPose): OKS that also scores whether a keypoint is in the crop window at all.

Plain OKS only asks "how far is the prediction?", so a model that always
answers "somewhere in the crop" is never penalised for keypoints that are
cut off by the image edge. Ex-OKS adds presence: per keypoint, with the
activation window (AW) = GT box at 3:4 (w:h) padded 1.25 - the crop a
top-down net sees - and a prediction counted "out" when its presence is below
a threshold:

    GT in,  pred in   -> d = |pred - GT|                    (plain OKS)
    GT out, pred in   -> d = distance from pred to the AW boundary
    GT in,  pred out  -> d = distance from GT to the AW boundary
    GT out, pred out  -> d = 0

    Ex-OKS_i = exp(-d_i^2 / (2 s^2 k_i^2)),  s^2 = area, k_i = 2 sigma_i

"Distance to the boundary" is to the window's edge from either side, so a
point just inside the edge costs little and one deep inside costs a lot -
claiming "present" for a cut-off keypoint is punished by how far into the
window the claim lands. When every GT keypoint is in its window and every
presence is 1, Ex-OKS is plain OKS term by term (a test checks this against
pycocotools).

AP uses pycocotools' matching and accumulation unchanged: only
``computeOks`` is replaced. CLI:
``python -m bench.ex_oks --gt GT.json --results R.json [--threshold 0.5|best] [--json]``
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from measure.coco_eval import COCO_SIGMAS, coverage, load_gt, read_results, run_cocoeval, stats_dict
from runtime.cli.args import OneLineParser, add_json_argument, existing_file, number
from runtime.errors import guarded
from runtime.io.records import json_safe
from runtime.io.safe_io import atomic_write_text

PADDING = 1.25
ASPECT_WH = 192 / 256  # the nets' input w:h = 3:4
DEFAULT_THRESHOLD = 0.5
THRESHOLD_GRID = np.round(np.arange(1, 20) * 0.05, 2)  # 0.05 .. 0.95
CASES = ("gt_in_pred_in", "gt_out_pred_in", "gt_in_pred_out", "gt_out_pred_out")


def activation_windows(boxes_xywh: np.ndarray, padding: float = PADDING) -> np.ndarray:
    """[G,4] xywh -> [G,4] x0,y0,x1,y1 of the crop window (same rule as runtime.pose.preprocess)."""
    b = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    cx, cy = b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2
    w, h = b[:, 2].copy(), b[:, 3].copy()
    wide = w > ASPECT_WH * h
    h[wide] = w[wide] / ASPECT_WH
    w[~wide] = h[~wide] * ASPECT_WH
    w, h = w * padding, h * padding
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def _win(windows: np.ndarray) -> tuple[np.ndarray, ...]:
    """Window corners with a trailing keypoint axis, so they broadcast against [..., K] points."""
    return tuple(windows[..., i, None] for i in range(4))


def in_window(x: np.ndarray, y: np.ndarray, windows: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = _win(windows)
    return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)


def distance_to_boundary(x: np.ndarray, y: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Euclidean distance from points to the window's edge (from inside or outside)."""
    x0, y0, x1, y1 = _win(windows)
    inside = in_window(x, y, windows)
    d_in = np.minimum(np.minimum(x - x0, x1 - x), np.minimum(y - y0, y1 - y))
    dx = np.maximum(np.maximum(x0 - x, x - x1), 0.0)
    dy = np.maximum(np.maximum(y0 - y, y - y1), 0.0)
    return np.where(inside, d_in, np.hypot(dx, dy))


def keypoint_ex_oks(
    gt_xy: np.ndarray,
    windows: np.ndarray,
    areas: np.ndarray,
    dt_xy: np.ndarray,
    pred_in: np.ndarray,
    sigmas: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-keypoint Ex-OKS, fully broadcast.

    Shapes broadcast NumPy-style: gt_xy [...,K,2], windows [...,4], areas [...],
    dt_xy [...,K,2], pred_in [...,K]. Matrix use: GT with a leading axis of 1,
    predictions with a second axis of 1 -> [D,G,K]. Returns (similarity, gt_in).
    """
    gx, gy = gt_xy[..., 0], gt_xy[..., 1]
    px, py = dt_xy[..., 0], dt_xy[..., 1]
    gt_in = in_window(gx, gy, windows)
    # Same operation order as pycocotools so the all-in case matches it bit for bit.
    dx, dy = px - gx, py - gy
    d2 = np.where(gt_in & pred_in, dx**2 + dy**2, 0.0)
    d2 = np.where(~gt_in & pred_in, distance_to_boundary(px, py, windows) ** 2, d2)
    d2 = np.where(gt_in & ~pred_in, distance_to_boundary(gx, gy, windows) ** 2, d2)
    variances = (np.asarray(sigmas, dtype=np.float64) * 2) ** 2
    e = d2 / variances / (np.asarray(areas, dtype=np.float64)[..., None] + np.spacing(1)) / 2
    return np.exp(-e), np.broadcast_to(gt_in, e.shape)


def ex_oks_matrix(
    gt_kpts: np.ndarray,
    gt_boxes: np.ndarray,
    gt_areas: np.ndarray,
    dt_kpts: np.ndarray,
    presence: np.ndarray | None,
    threshold: float = DEFAULT_THRESHOLD,
    sigmas: np.ndarray | None = None,
) -> np.ndarray:
    """[D,G] Ex-OKS between every prediction and every GT person of one image.

    gt_kpts [G,K,3] (x, y, v), gt_boxes [G,4] xywh, gt_areas [G], dt_kpts
    [D,K,>=2], presence [D,K] or None (= all present). A GT without labelled
    keypoints gets pycocotools' fallback (distance to its box doubled), as it
    does in plain OKS; such GTs are ignored by COCOeval anyway.
    """
    sig = COCO_SIGMAS if sigmas is None else np.asarray(sigmas, dtype=np.float64)
    g = np.asarray(gt_kpts, dtype=np.float64).reshape(len(gt_boxes), -1, 3)
    d = np.asarray(dt_kpts, dtype=np.float64)
    d = d.reshape(len(d), g.shape[1], -1)[..., :2]
    boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    areas = np.asarray(gt_areas, dtype=np.float64).reshape(-1)
    pres = (
        np.ones(d.shape[:2])
        if presence is None
        else np.asarray(presence, dtype=np.float64).reshape(d.shape[:2])
    )
    sims, _ = keypoint_ex_oks(
        g[None, :, :, :2],
        activation_windows(boxes)[None],
        areas[None],
        d[:, None],
        (pres >= threshold)[:, None],
        sig,
    )
    vis = g[..., 2] > 0  # [G,K]
    n_vis = vis.sum(axis=1)
    out = (sims * vis[None]).sum(axis=2) / np.maximum(n_vis, 1)[None]
    if (n_vis == 0).any():
        out[:, n_vis == 0] = _unlabelled_oks(boxes[n_vis == 0], areas[n_vis == 0], d, sig)
    return out


def _unlabelled_oks(boxes: np.ndarray, areas: np.ndarray, d: np.ndarray, sig: np.ndarray) -> np.ndarray:
    """pycocotools' OKS for a GT with no labelled keypoint: distance to the box doubled in size."""
    x0, x1 = boxes[:, 0] - boxes[:, 2], boxes[:, 0] + boxes[:, 2] * 2
    y0, y1 = boxes[:, 1] - boxes[:, 3], boxes[:, 1] + boxes[:, 3] * 2
    xd, yd = d[:, None, :, 0], d[:, None, :, 1]  # [D,1,K]
    dx = np.maximum(0, x0[None, :, None] - xd) + np.maximum(0, xd - x1[None, :, None])
    dy = np.maximum(0, y0[None, :, None] - yd) + np.maximum(0, yd - y1[None, :, None])
    e = (dx**2 + dy**2) / ((sig * 2) ** 2) / (areas[None, :, None] + np.spacing(1)) / 2
    return np.exp(-e).mean(axis=2)


class ExOKSeval(COCOeval):
    """COCOeval whose similarity is Ex-OKS; matching, AP and AR are pycocotools' own."""

    presence_threshold: float = DEFAULT_THRESHOLD

    def computeOks(self, imgId, catId):  # noqa: N802 (pycocotools' name)
        p = self.params
        gts = self._gts[imgId, catId]
        dts = self._dts[imgId, catId]
        order = np.argsort([-dt["score"] for dt in dts], kind="mergesort")
        dts = [dts[i] for i in order][: p.maxDets[-1]]
        if not gts or not dts:
            return []
        k = len(p.kpt_oks_sigmas)
        return ex_oks_matrix(
            np.array([gt["keypoints"] for gt in gts], dtype=np.float64).reshape(-1, k, 3),
            np.array([gt["bbox"] for gt in gts]),
            np.array([gt["area"] for gt in gts]),
            np.array([dt["keypoints"] for dt in dts], dtype=np.float64).reshape(-1, k, 3),
            np.array([dt.get("presence", [1.0] * k) for dt in dts], dtype=np.float64),
            self.presence_threshold,
            p.kpt_oks_sigmas,
        )


def matched_pairs(ev: COCOeval, match_oks: float = 0.5) -> list[tuple[int, int]]:
    """(gt id, dt id) pairs COCOeval matched at ``match_oks`` over all areas, ignored GTs left out."""
    p = ev.params
    t = int(np.argmin(np.abs(p.iouThrs - match_oks)))
    pairs = []
    for e in ev.evalImgs:
        if e is None or e["aRng"] != p.areaRng[0] or e["maxDet"] != p.maxDets[-1]:
            continue
        for gi, gid in enumerate(e["gtIds"]):
            dt_id = int(e["gtMatches"][t, gi])
            if dt_id > 0 and not e["gtIgnore"][gi]:
                pairs.append((int(gid), dt_id))
    return pairs


def _pair_arrays(ev: COCOeval, pairs: list[tuple[int, int]], threshold: float) -> dict[str, np.ndarray]:
    """Per-keypoint arrays [M,K] for the matched pairs: similarity, in/out flags, presence."""
    gt, dt, k = ev.cocoGt, ev.cocoDt, len(ev.params.kpt_oks_sigmas)
    if not pairs:
        flags = {n: np.zeros((0, k), bool) for n in ("vis", "gt_in", "pred_in", "in_image", "has_size")}
        return {"sim": np.zeros((0, k)), "presence": np.zeros((0, k)), **flags}
    g = np.array([gt.anns[a]["keypoints"] for a, _ in pairs], dtype=np.float64).reshape(-1, k, 3)
    d = np.array([dt.anns[b]["keypoints"] for _, b in pairs], dtype=np.float64).reshape(-1, k, 3)
    pres = np.array([dt.anns[b].get("presence", [1.0] * k) for _, b in pairs], dtype=np.float64)
    boxes = np.array([gt.anns[a]["bbox"] for a, _ in pairs], dtype=np.float64)
    areas = np.array([gt.anns[a]["area"] for a, _ in pairs], dtype=np.float64)
    pred_in = pres >= threshold
    sim, gt_in = keypoint_ex_oks(
        g[..., :2], activation_windows(boxes), areas, d[..., :2], pred_in, ev.params.kpt_oks_sigmas
    )
    imgs = [gt.imgs[gt.anns[a]["image_id"]] for a, _ in pairs]
    wh = np.array([[im.get("width", np.inf), im.get("height", np.inf)] for im in imgs], dtype=np.float64)
    in_image = (g[..., 0] >= 0) & (g[..., 0] < wh[:, :1]) & (g[..., 1] >= 0) & (g[..., 1] < wh[:, 1:])
    has_size = np.isfinite(wh).all(axis=1)[:, None] & np.ones((1, k), bool)
    return {
        "sim": sim,
        "presence": pres,
        "vis": g[..., 2] > 0,
        "gt_in": np.asarray(gt_in),
        "pred_in": pred_in,
        "in_image": in_image,
        "has_size": has_size,
    }


def presence_accuracy(
    presence: np.ndarray, gt_in: np.ndarray, thresholds: np.ndarray = THRESHOLD_GRID
) -> np.ndarray:
    """Accuracy of "presence >= t" as an in-window classifier, for every t at once."""
    if presence.size == 0:
        return np.full(len(thresholds), np.nan)
    pred = presence.reshape(-1)[None, :] >= np.asarray(thresholds)[:, None]
    return (pred == gt_in.reshape(-1)[None, :]).mean(axis=1)


def best_threshold(presence: np.ndarray, gt_in: np.ndarray, thresholds: np.ndarray = THRESHOLD_GRID) -> float:
    """Best-accuracy threshold on the grid; ties go to the one nearest the 0.5 default."""
    acc = presence_accuracy(presence, gt_in, thresholds)
    if np.all(np.isnan(acc)):
        return DEFAULT_THRESHOLD
    best = np.flatnonzero(acc >= np.nanmax(acc) - 1e-12)
    return float(thresholds[best[np.argmin(np.abs(thresholds[best] - DEFAULT_THRESHOLD))]])


def _group(a: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, Any]:
    m = mask & a["vis"]
    n = int(m.sum())
    return {
        "n": n,
        "ex_oks": float(a["sim"][m].mean()) if n else None,
        "presence_accuracy": float((a["pred_in"][m] == a["gt_in"][m]).mean()) if n else None,
    }


def keypoint_report(a: dict[str, np.ndarray]) -> dict[str, Any]:
    """In-window vs out-of-window (and in-image vs out-of-image) keypoints of matched people, apart."""
    rep = {"in_window": _group(a, a["gt_in"]), "out_window": _group(a, ~a["gt_in"])}
    if a["has_size"].all():
        rep["in_image"] = _group(a, a["in_image"])
        rep["out_image"] = _group(a, ~a["in_image"])
    return rep


def evaluate_ex_oks(
    gt: str | Path | COCO,
    results: str | Path | Iterable[dict[str, Any]],
    *,
    presence_threshold: float | str = DEFAULT_THRESHOLD,
    match_oks: float = 0.5,
    sigmas: np.ndarray | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Ex-OKS AP/AR plus presence and in/out keypoint figures.

    ``presence_threshold="best"`` first matches people at 0.5, picks the
    best-accuracy threshold on the 0.05 grid from those matches, then scores
    at it. Keypoint figures come from the people matched at Ex-OKS
    ``match_oks``; results without a ``presence`` field count as present.
    """
    coco_gt = load_gt(gt, verbose)
    res = list(results) if not isinstance(results, (str, Path)) else results

    def run(thr: float) -> ExOKSeval:
        def configure(ev: ExOKSeval) -> None:
            ev.presence_threshold = thr

        return run_cocoeval(
            coco_gt, res, eval_cls=ExOKSeval, sigmas=sigmas, verbose=verbose, configure=configure
        )

    if isinstance(presence_threshold, str):
        if presence_threshold != "best":
            raise ValueError(
                f"presence_threshold must be a number in (0,1) or 'best', got {presence_threshold!r}"
            )
        first = run(DEFAULT_THRESHOLD)
        a0 = _pair_arrays(first, matched_pairs(first, match_oks), DEFAULT_THRESHOLD)
        thr = best_threshold(a0["presence"][a0["vis"]], a0["gt_in"][a0["vis"]])
    else:
        thr = float(presence_threshold)
        if not 0.0 < thr <= 1.0:
            raise ValueError(f"presence_threshold must be in (0,1], got {thr}")
    ev = run(thr)
    pairs = matched_pairs(ev, match_oks)
    a = _pair_arrays(ev, pairs, thr)
    pres_v, in_v = a["presence"][a["vis"]], a["gt_in"][a["vis"]]
    acc = presence_accuracy(pres_v, in_v)
    cases = {
        name: int((m & a["vis"]).sum())
        for name, m in zip(
            CASES,
            (
                a["gt_in"] & a["pred_in"],
                ~a["gt_in"] & a["pred_in"],
                a["gt_in"] & ~a["pred_in"],
                ~a["gt_in"] & ~a["pred_in"],
            ),
        )
    }
    return {
        **stats_dict(ev),
        "presence_threshold": thr,
        "best_presence_threshold": best_threshold(pres_v, in_v),
        "presence_accuracy": float((a["pred_in"][a["vis"]] == in_v).mean()) if in_v.size else None,
        "presence_accuracy_by_threshold": {
            f"{t:.2f}": (None if np.isnan(v) else float(v)) for t, v in zip(THRESHOLD_GRID, acc)
        },
        "matched": len(pairs),
        "cases": cases,
        "keypoints": keypoint_report(a),
    }


def _threshold(text: str) -> float | str:
    """``--threshold``: 'best' or a number in (0, 1]."""
    if text == "best":
        return text
    return number(float, lo=0, hi=1, lo_open=True)(text)


def main(argv: Sequence[str] | None = None) -> int:
    return guarded(_main, argv, prog="bench.ex_oks")


def _main(argv: Sequence[str]) -> int:
    ap = OneLineParser(prog="python -m bench.ex_oks", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--gt",
        required=True,
        type=existing_file,
        help="COCO keypoint ground truth json (e.g. a CropCOCO set)",
    )
    ap.add_argument(
        "--results",
        required=True,
        type=existing_file,
        help="COCO keypoint results json; optional per-record 'presence' [17]",
    )
    ap.add_argument(
        "--threshold",
        default=str(DEFAULT_THRESHOLD),
        type=_threshold,
        help="presence threshold in (0,1], or 'best'",
    )
    add_json_argument(
        ap,
        "write the full report as JSON to FILE (bare --json: print it instead of the table)",
        old=None,
        stdout=True,
    )
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    gt, res = load_gt(a.gt, a.verbose), read_results(a.results)
    rep = evaluate_ex_oks(gt, res, presence_threshold=a.threshold, verbose=a.verbose)
    rep.update(coverage(gt, res, a.results))
    posed = [r for r in res if isinstance(r, dict) and "keypoints" in r]
    rep["results_without_presence"] = sum("presence" not in r for r in posed)
    if rep["results_without_presence"]:
        print(
            f"warning: {rep['results_without_presence']} of {len(posed)} results in {a.results} have no "
            "'presence'; they count as present on every keypoint, so the presence figures do not "
            "describe a model for them",
            file=sys.stderr,
        )
    if a.json is not None:
        text = json.dumps(json_safe(rep), indent=1, allow_nan=False)
        if a.json is True:
            print(text)
            return 0
        a.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(a.json, text + "\n")
    print("Ex-OKS " + " ".join(f"{k}={rep[k]:.3f}" for k in ("AP", "AP50", "AP75", "AR")))
    acc = rep["presence_accuracy"]
    print(
        f"presence threshold {rep['presence_threshold']:.2f} (best {rep['best_presence_threshold']:.2f}), "
        f"accuracy {'n/a' if acc is None else f'{acc:.3f}'}, matched people {rep['matched']}"
    )
    for name, g in rep["keypoints"].items():
        ex = "n/a" if g["ex_oks"] is None else f"{g['ex_oks']:.3f}"
        pa = "n/a" if g["presence_accuracy"] is None else f"{g['presence_accuracy']:.3f}"
        print(f"  {name:<10} n={g['n']:<5d} mean Ex-OKS {ex}  presence acc {pa}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
