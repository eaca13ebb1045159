"""``python -m bench.detector_eval``: accuracy of the artifacts' detector per precision.

For every detector variant in the manifest (fp32, fp16, int8_cpu, int8_trt;
the Q/DQ and fp16 graphs run by ONNX Runtime on the CPU, which executes the
same quantization arithmetic TensorRT fuses) it scores, on a COCO folder:

* person boxes: pycocotools ``COCOeval(iouType='bbox')``;
* for pose detectors, their keypoints: ``COCOeval(iouType='keypoints')``;
* output drift vs fp32 on confident anchors (fp32 score >= ``--drift-score``),
  in frame pixels: mean |corner| box error, mean signed width/height change
  (a systematic shrink shows as a negative bias) and mean keypoint error on
  keypoints fp32 calls visible. On a 14-person set AP moves by a point when
  one box flips; drift measures every anchor and is the stabler signal.

Both evaluations go through the runtime's own letterbox, decode and NMS
(:class:`runtime.detectors.net.NetDetector`), so the numbers are those of the
deployed path.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from runtime.artifacts.manifest import load_manifest
from runtime.detectors.net import ROLE, NetDetector
from runtime.detectors.yolo import candidates, cxcywh_to_xyxy
from runtime.io.safe_io import atomic_write_text

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco-mini"
VARIANTS = ("fp32", "fp16", "int8_cpu", "int8_trt")


def _coco_eval(gt: COCO, results: list[dict[str, Any]], iou_type: str) -> dict[str, float]:
    if not results:
        return {"AP": 0.0, "AP50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iouType=iou_type)
        ev.params.catIds = [1]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"AP": float(ev.stats[0]), "AP50": float(ev.stats[1])}


def evaluate_variant(
    root: Path, manifest: dict, variant: str, gt: COCO, folder: Path, score_thr: float, iou_thr: float
) -> tuple[dict[str, Any], list[tuple]]:
    """AP numbers for one variant, and the raw per-image outputs (for the drift)."""
    det = NetDetector(root, manifest, backend="ort", precision=variant, score_thr=score_thr, iou_thr=iou_thr)
    if det.variant != variant:
        det.close()
        raise SystemExit(
            f"error: the detector has no {variant!r} variant ({root}): rebuild with "
            "`python -m build.engines --detector PATH.onnx` (default --det-precision all)"
        )
    boxes, kpts, raw = [], [], []
    try:
        for img_id in sorted(gt.getImgIds()):
            info = gt.loadImgs(img_id)[0]
            image = cv2.imread(str(folder / info["file_name"]))
            if image is None:
                raise SystemExit(f"error: cannot read {folder / info['file_name']} (--data)")
            job = det.submit([image])
            out = job.pending.wait()[det.output]
            raw.append((out, job.geos[0]))
            d = det.collect(job)[0]
            for i in range(len(d)):
                rec = {"image_id": img_id, "category_id": 1, "score": float(d.scores[i])}
                boxes.append({**rec, "bbox": [float(v) for v in d.boxes[i]]})
                if d.keypoints is not None:
                    kpts.append({**rec, "keypoints": [float(v) for v in d.keypoints[i].reshape(-1)]})
    finally:
        det.close()
    row: dict[str, Any] = {"variant": variant, "box": _coco_eval(gt, boxes, "bbox")}
    if kpts:
        row["kpt"] = _coco_eval(gt, kpts, "keypoints")
    return row, raw


def _mean_of_all(parts: list[np.ndarray]) -> float:
    """Mean over all the per-image arrays together; NaN when there is nothing to average."""
    return float(np.concatenate(parts).mean()) if parts and sum(map(len, parts)) else float("nan")


def drift(ref: list[tuple], got: list[tuple], layout, cls: int, score: float) -> dict[str, float]:
    """Mean box corner error, signed w/h bias and keypoint error in frame px on confident anchors."""
    box_err, wh_bias, kpt_err, n = [], [], [], 0
    for (r, g), (o, _) in zip(ref, got):
        rb, rs, rk = candidates(r, layout, cls)
        ob, _, ok = candidates(o, layout, cls)
        sel = rs[0] >= score
        n += int(sel.sum())
        if not sel.any():
            continue
        box_err.append(np.abs(cxcywh_to_xyxy(ob[0, sel]) - cxcywh_to_xyxy(rb[0, sel])).mean(-1) / g.scale)
        wh_bias.append((ob[0, sel, 2:] - rb[0, sel, 2:]).mean(-1) / g.scale)
        if rk is not None:
            vis = rk[0, sel, :, 2] >= 0.5 if rk.shape[-1] > 2 else np.ones(rk.shape[1:3], bool)[sel]
            e = np.linalg.norm(ok[0, sel, :, :2] - rk[0, sel, :, :2], axis=-1) / g.scale
            kpt_err.append(e[vis])
    return {
        "anchors": n,
        "box_px": _mean_of_all(box_err),
        "wh_bias_px": _mean_of_all(wh_bias),
        "kpt_px": _mean_of_all(kpt_err),
    }


def evaluate(
    root: Path,
    data: Path,
    variants: Sequence[str] | None = None,
    score_thr: float = 0.01,
    iou_thr: float = 0.7,
    drift_score: float = 0.5,
) -> list[dict[str, Any]]:
    manifest = load_manifest(root)
    if ROLE not in manifest["models"]:
        from runtime.errors import InputError

        raise InputError(
            f"no detector in {root}", "--engines", "build with `python -m build.engines --detector PATH.onnx`"
        )
    entry = manifest["models"][ROLE]
    have = ["fp32", *entry.get("variants", {})]
    variants = [v for v in VARIANTS if v in have] if variants is None else list(variants)
    gt_path = data / "person_keypoints.json"
    if not gt_path.is_file():
        raise SystemExit(
            f"error: {gt_path} not found (--data): pass a COCO folder with person_keypoints.json"
        )
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
    rows, raws = [], {}
    for v in ["fp32", *[v for v in variants if v != "fp32"]]:
        row, raws[v] = evaluate_variant(root, manifest, v, gt, data, score_thr, iou_thr)
        if v != "fp32":
            from runtime.detectors.yolo import YoloLayout

            row["drift"] = drift(
                raws["fp32"],
                raws[v],
                YoloLayout.from_dict(entry["layout"]),
                int(entry.get("class", 0)),
                drift_score,
            )
        rows.append(row)
    return rows


def _f3(x: float) -> str:
    return f"{x:.3f}"


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| variant | box AP | box AP50 | kpt AP | kpt AP50 | box drift px | w/h bias px | kpt drift px |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        k = r.get("kpt", {})
        d = r.get("drift")
        lines.append(
            f"| {r['variant']} | {_f3(r['box']['AP'])} | {_f3(r['box']['AP50'])} | "
            f"{_f3(k['AP']) if k else '-'} | {_f3(k['AP50']) if k else '-'} | "
            + (f"{d['box_px']:.2f} | {d['wh_bias_px']:+.2f} | {d['kpt_px']:.2f} |" if d else "- | - | - |")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from runtime.errors import guarded

    return guarded(_main, argv, prog="python -m bench.detector_eval")


def _main(argv: list[str]) -> int:
    from runtime.cli.args import OneLineParser, artifacts_dir, existing_dir, output_file, unit_float

    p = OneLineParser(
        prog="python -m bench.detector_eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--engines", required=True, type=artifacts_dir, help="artifacts folder with a detector role"
    )
    p.add_argument(
        "--data", type=existing_dir, default=DEFAULT_DATA, help="COCO folder (images + person_keypoints.json)"
    )
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=None, help="default: every one built")
    p.add_argument(
        "--score-thr", type=unit_float, default=0.01, help="score threshold for AP (low: full PR curve)"
    )
    p.add_argument("--iou", type=unit_float, default=0.7, help="NMS IoU")
    p.add_argument(
        "--drift-score", type=unit_float, default=0.5, help="fp32 score of the anchors the drift uses"
    )
    p.add_argument("--json", type=output_file, default=None, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    rows = evaluate(args.engines, args.data, args.variants, args.score_thr, args.iou, args.drift_score)
    print(format_table(rows))
    if args.json:
        atomic_write_text(args.json, json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
