"""COCO keypoint AP/AR with pycocotools, the numbers papers report.

The scoring itself is pycocotools' ``COCOeval(iouType='keypoints')`` untouched:
our job is only to get results into it safely (validated, with a clear error
instead of pycocotools' bare asserts), keep its chatter quiet, and hand back
named numbers. ``bench.ex_oks`` reuses :func:`run_cocoeval` with its own
``COCOeval`` subclass so both metrics share one matching/AP machinery.

CLI: ``python -m bench.coco_eval --gt GT.json --results R.json [--json] [--verbose]``
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from measure.gt_records import read_gt
from runtime.cli.args import OneLineParser, add_json_argument, existing_file
from runtime.errors import guarded
from runtime.io.records import RecordError, read_json
from runtime.io.safe_io import atomic_write_text

NUM_KEYPOINTS = 17
PERSON_CATEGORY = 1
# Order of COCOeval.stats for iouType='keypoints' (pycocotools' _summarizeKps).
# COCO OKS per-keypoint sigmas (pycocotools' default for iouType='keypoints').
COCO_SIGMAS = (
    np.array(
        [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
    )
    / 10.0
)
STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")

Results = list[dict[str, Any]]


class ResultsError(RecordError):
    """A results file or record that cannot be scored (exit 2); names the record."""


@contextlib.contextmanager
def _quiet(verbose: bool):
    """pycocotools prints progress on stdout; a benchmark table must stay clean."""
    if verbose:
        yield
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            yield


def load_gt(gt: str | Path | COCO, verbose: bool = False) -> COCO:
    """A COCO ground-truth object from a path (or pass one through)."""
    if isinstance(gt, COCO):
        return gt
    p = Path(gt)
    if not p.is_file():
        raise FileNotFoundError(f"COCO ground truth {p} not found; pass --gt path/to/person_keypoints.json")
    data = read_gt(p)  # strict: names the annotation and field; derives a missing area from the box
    coco = COCO()
    coco.dataset = data
    with _quiet(verbose):
        coco.createIndex()
    return coco


def to_coco_results(
    image_ids: Sequence[int] | np.ndarray,
    keypoints: np.ndarray,
    scores: Sequence[float] | np.ndarray,
    presence: np.ndarray | None = None,
) -> Results:
    """Per-person arrays -> COCO results records.

    ``keypoints`` is [N,17,3] (x, y, keypoint score) in image pixels or [N,17,2]
    (keypoint score then 1). ``presence`` [N,17] is optional and travels as an
    extra ``presence`` field: pycocotools ignores it, Ex-OKS reads it.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[1] != NUM_KEYPOINTS or kp.shape[2] not in (2, 3):
        raise ValueError(
            f"keypoints must be [N,{NUM_KEYPOINTS},3] (or [N,{NUM_KEYPOINTS},2]), got {kp.shape}"
        )
    if kp.shape[2] == 2:
        kp = np.concatenate([kp, np.ones(kp.shape[:2] + (1,))], axis=2)
    ids = np.asarray(image_ids).reshape(-1)
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(ids) != len(kp) or len(sc) != len(kp):
        raise ValueError(
            f"image_ids ({len(ids)}), keypoints ({len(kp)}) and scores ({len(sc)}) must have one row per person"
        )
    pres = None
    if presence is not None:
        pres = np.asarray(presence, dtype=np.float64)
        if pres.shape != kp.shape[:2]:
            raise ValueError(f"presence must be [N,{NUM_KEYPOINTS}] like keypoints, got {pres.shape}")
    out: Results = []
    for i in range(len(kp)):
        rec: dict[str, Any] = {
            "image_id": int(ids[i]),
            "category_id": PERSON_CATEGORY,
            "keypoints": [float(v) for v in kp[i].reshape(-1)],
            "score": float(sc[i]),
        }
        if pres is not None:
            rec["presence"] = [float(v) for v in pres[i]]
        out.append(rec)
    return out


def read_results(results: str | Path | Iterable[dict[str, Any]]) -> Results:
    """Results from a JSON file path or an in-memory list (deep-copied: loadRes mutates records)."""
    if isinstance(results, (str, Path)):
        p = Path(results)
        if not p.is_file():
            raise FileNotFoundError(
                f"results file {p} not found; write one with measure.coco_eval.to_coco_results"
            )
        data = read_json(p, "results", "--results")
        if not isinstance(data, list):
            raise ResultsError(
                f"results must be a JSON list of records, got {type(data).__name__}",
                f"--results {p}",
                "write COCO keypoint results",
            )
        return data
    return copy.deepcopy(list(results))


def posed_only(results: Results) -> Results:
    """Leave out the runtime's dropped-box records (``"dropped"`` and no ``keypoints``): they are
    boxes that were never posed, so they are neither detections nor misses to pycocotools."""
    return [r for r in results if not (isinstance(r, dict) and "dropped" in r and "keypoints" not in r)]


def _check_record_shape(i: int, r: object) -> dict[str, Any]:
    """The record is an object with the four fields pycocotools reads."""
    if not isinstance(r, dict):
        raise ResultsError(
            f"result #{i} is {type(r).__name__}, not an object; records need image_id, "
            "category_id, keypoints, score"
        )
    for key in ("image_id", "category_id", "keypoints", "score"):
        if key not in r:
            raise ResultsError(
                f"result #{i} has no '{key}'; records need image_id, category_id, keypoints, score"
            )
    return r


def _check_record_ids(i: int, r: dict[str, Any], img_ids: set[int], cat_ids: set[int]) -> None:
    """Image and category exist in the ground truth (pycocotools would KeyError deep inside)."""
    if r["image_id"] not in img_ids:
        raise ResultsError(
            f"result #{i}: image_id {r['image_id']} is not in the ground truth; "
            "evaluate against the GT file the images came from"
        )
    if r["category_id"] not in cat_ids:
        raise ResultsError(
            f"result #{i}: category_id {r['category_id']} not in GT categories {sorted(cat_ids)}; "
            f"use {PERSON_CATEGORY} (person)"
        )


def _check_record_values(i: int, r: dict[str, Any], num_keypoints: int) -> None:
    """Keypoints, score and presence are finite numbers of the right count (no silent NaN OKS)."""
    try:
        kp = np.asarray(r["keypoints"], dtype=np.float64)
        score = float(r["score"])
    except (TypeError, ValueError):
        raise ResultsError(
            f"result #{i} (image {r['image_id']}): keypoints and score must be numbers"
        ) from None
    if kp.shape != (3 * num_keypoints,):
        raise ResultsError(
            f"result #{i}: keypoints must be a flat list of {3 * num_keypoints} numbers "
            f"[x,y,score]*{num_keypoints}, got {kp.size}"
        )
    if not np.all(np.isfinite(kp)) or not math.isfinite(score):
        raise ResultsError(
            f"result #{i} (image {r['image_id']}) has NaN/inf keypoints or score; "
            "drop the person or replace the values before scoring"
        )
    if "presence" in r and np.asarray(r["presence"]).shape != (num_keypoints,):
        raise ResultsError(f"result #{i}: presence must have {num_keypoints} values")


def validate_results(coco_gt: COCO, results: Results, num_keypoints: int = NUM_KEYPOINTS) -> None:
    """Fail with the offending record named, instead of a bare assert or a silent NaN OKS."""
    img_ids = set(coco_gt.getImgIds())
    cat_ids = set(coco_gt.getCatIds())
    for i, raw in enumerate(results):
        r = _check_record_shape(i, raw)
        _check_record_ids(i, r, img_ids, cat_ids)
        _check_record_values(i, r, num_keypoints)


def load_results(
    coco_gt: COCO, results: str | Path | Iterable[dict[str, Any]], verbose: bool = False
) -> COCO:
    """Validated results as a COCO object; an empty list yields an empty set (AP 0), not a crash."""
    res = posed_only(read_results(results))
    validate_results(coco_gt, res)
    if not res:
        empty = COCO()
        empty.dataset = {
            "images": list(coco_gt.dataset["images"]),
            "categories": copy.deepcopy(coco_gt.dataset["categories"]),
            "annotations": [],
        }
        with _quiet(verbose):
            empty.createIndex()
        return empty
    with _quiet(verbose):
        return coco_gt.loadRes(res)


def run_cocoeval(
    gt: str | Path | COCO,
    results: str | Path | Iterable[dict[str, Any]],
    *,
    eval_cls: type[COCOeval] = COCOeval,
    sigmas: np.ndarray | None = None,
    image_ids: Sequence[int] | None = None,
    verbose: bool = False,
    configure: Any = None,
) -> COCOeval:
    """evaluate + accumulate + summarize; returns the evaluator (its evalImgs hold the matches).

    ``configure(ev)`` runs before evaluate so a subclass can receive settings.
    """
    coco_gt = load_gt(gt, verbose)
    coco_dt = load_results(coco_gt, results, verbose)
    ev = eval_cls(coco_gt, coco_dt, iouType="keypoints")
    if sigmas is not None:
        s = np.asarray(sigmas, dtype=np.float64)
        if s.shape != (NUM_KEYPOINTS,):
            raise ValueError(f"sigmas must have {NUM_KEYPOINTS} values, got {s.shape}")
        ev.params.kpt_oks_sigmas = s
    if image_ids is not None:
        ev.params.imgIds = sorted(int(i) for i in image_ids)
    if configure is not None:
        configure(ev)
    with _quiet(verbose):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def stats_dict(ev: COCOeval) -> dict[str, float]:
    return {name: float(v) for name, v in zip(STAT_NAMES, ev.stats)}


def evaluate_keypoints(
    gt: str | Path | COCO,
    results: str | Path | Iterable[dict[str, Any]],
    *,
    sigmas: np.ndarray | None = None,
    image_ids: Sequence[int] | None = None,
    verbose: bool = False,
) -> dict[str, float]:
    """COCO keypoint AP/AR: {AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl}.

    A value of -1 is pycocotools' "no ground truth in this area range".
    """
    return stats_dict(run_cocoeval(gt, results, sigmas=sigmas, image_ids=image_ids, verbose=verbose))


def synthetic_results(
    coco_gt: COCO, seed: int = 0, noise: float = 0.5, n_false: int = 3, presence: bool = False
) -> Results:
    """Results made from the GT with seeded noise: a known-answer input for the evaluation stack.

    Each annotated person becomes a prediction whose keypoints move by
    ``noise`` x (2 sigma_k sqrt(area)) x N(0,1) - the OKS length scale, so the
    AP lands between 0 and 1 for moderate noise. Scores are random, and
    ``n_false`` extra detections are shifted copies (false positives), so the
    precision/recall curve is not trivial. With ``presence`` each record
    carries presence 1 on every keypoint.
    """
    rng = np.random.default_rng(seed)
    anns = [
        a for a in coco_gt.dataset["annotations"] if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd", 0)
    ]
    ids, kps, scores = [], [], []
    for a in anns:
        kp = np.asarray(a["keypoints"], dtype=np.float64).reshape(NUM_KEYPOINTS, 3)
        scale = 2 * COCO_SIGMAS * math.sqrt(a["area"])
        xy = kp[:, :2] + noise * scale[:, None] * rng.standard_normal((NUM_KEYPOINTS, 2))
        kps.append(np.concatenate([xy, rng.uniform(0.3, 1.0, (NUM_KEYPOINTS, 1))], axis=1))
        ids.append(a["image_id"])
        scores.append(rng.uniform(0.2, 1.0))
    for j in rng.choice(len(anns), size=min(n_false, len(anns)), replace=False) if anns else []:
        a = anns[int(j)]
        shift = np.array([a["bbox"][2], a["bbox"][3]]) * 0.6
        kps.append(np.concatenate([kps[int(j)][:, :2] + shift, kps[int(j)][:, 2:]], axis=1))
        ids.append(a["image_id"])
        scores.append(rng.uniform(0.2, 1.0))
    if not kps:
        return []
    kp_arr = np.stack(kps)
    return to_coco_results(ids, kp_arr, scores, np.ones(kp_arr.shape[:2]) if presence else None)


def format_stats(stats: dict[str, float]) -> str:
    head = " ".join(f"{k:>6}" for k in stats)
    vals = " ".join(f"{v:6.3f}" for v in stats.values())
    return f"{head}\n{vals}"


def main(argv: Sequence[str] | None = None) -> int:
    return guarded(_main, argv, prog="bench.coco_eval")


def _main(argv: Sequence[str]) -> int:
    ap = OneLineParser(prog="python -m bench.coco_eval", description=__doc__.splitlines()[0])
    ap.add_argument("--gt", required=True, type=existing_file, help="COCO keypoint ground truth json")
    ap.add_argument(
        "--results",
        required=True,
        type=existing_file,
        help="COCO keypoint results json (list of records; dropped-box records are skipped)",
    )
    add_json_argument(
        ap,
        "write the numbers as JSON to FILE (bare --json: print them instead of the table)",
        old=None,
        stdout=True,
    )
    ap.add_argument("--verbose", action="store_true", help="let pycocotools print its own summary")
    a = ap.parse_args(argv)
    gt, res = load_gt(a.gt, a.verbose), read_results(a.results)
    stats = evaluate_keypoints(gt, res, verbose=a.verbose)
    report = {**stats, **coverage(gt, res, a.results)}
    print(json.dumps(report) if a.json is True else format_stats(stats))
    if isinstance(a.json, Path):
        a.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(a.json, json.dumps(report) + "\n")
    return 0


def coverage(coco_gt: COCO, results: Results, where: object) -> dict[str, int]:
    """How many GT images have any record (posed or dropped-box); one warning line when some have
    none: pycocotools scores their people as misses, which is right only if those images were run
    (a detector that found nobody) and silently wrong for a results file of part of the set."""
    have = {r.get("image_id") for r in results if isinstance(r, dict)}
    ids = coco_gt.getImgIds()
    missing = sorted(i for i in ids if i not in have)
    if missing:
        print(
            f"warning: {where} has no record for {len(missing)} of the {len(ids)} ground-truth images "
            f"(ids {', '.join(map(str, missing[:5]))}{', ...' if len(missing) > 5 else ''}); they are scored "
            "as misses: if they were not run, evaluate against a GT of the images that were",
            file=sys.stderr,
        )
    return {"gt_images": len(ids), "images_with_records": len(ids) - len(missing)}


if __name__ == "__main__":
    sys.exit(main())
