"""Score a video run against a synthetic clip's ground truth: ``python -m bench.video_eval --gt G --jsonl J``.

Prints one table: keypoint AP (pycocotools, person score as in
``FrameResult.to_coco``), box AP (pycocotools ``bbox``: the run's person boxes
and detector scores against the people's visible-pixel boxes), tracking IDF1 /
MOTA / ID switches (py-motmetrics, boxes matched at IoU >= 0.5), the large-net
share, and keypoint jitter.

Box AP (why): with a detector in the loop every other number inherits its
misses and false boxes; box AP says how much of a score is the detector's.
People no detector could see (not ``trackable``: under ``MIN_AREA`` visible
pixels or no labelled keypoint) are crowd regions there, neither hits nor misses.

Tracking ground truth is every person whose visible part a detector could
see (``area >= MIN_AREA`` pixels and at least one labelled keypoint); boxes
the tracker left untracked (``track_id`` 0) are not hypotheses.

Jitter (why this definition): smoothing must remove frame-to-frame shake
without lagging. For every ground-truth person matched to an output
person in three consecutive frames (greedy on IoU, ids ignored) and every
keypoint labelled in all three, the error of the second difference
``|(p[t+1] - 2 p[t] + p[t-1]) - (g[t+1] - 2 g[t] + g[t-1])|`` in pixels is
averaged: 0 means the output accelerates exactly as the truth does.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runtime.errors import InputError
from runtime.io.records import RecordError, parse_box, record_int
from runtime.safe_io import atomic_write_text
from runtime.tracking.tracker import iou_matrix

MIN_AREA = 300.0  # build.synth's detector boxes skip people with less visible area


def load_clip_gt(path: str | Path) -> tuple[dict[str, Any], dict[int, list[dict]]]:
    """The ground-truth json (checked by measure.gt_records) and its annotations grouped by 0-based frame."""
    from measure.gt_records import read_gt

    gt = read_gt(Path(path), "--gt")
    frame_of = {im["id"]: im.get("frame_id", im["id"] - 1) for im in gt["images"]}
    per: dict[int, list[dict]] = defaultdict(list)
    for a in gt["annotations"]:
        per[frame_of[a["image_id"]]].append(a)
    return gt, per


def _person(p: object, where: str) -> dict:
    if not isinstance(p, dict) or not isinstance(p.get("route"), str):
        raise RecordError(
            "a person is not a runtime.video record (route, box, keypoints)",
            where,
            "pass the .jsonl that runtime.video wrote",
        )
    if p["route"] != "dropped":
        parse_box(p.get("box"), where)
        kp = p.get("keypoints")
        if not (isinstance(kp, list) and kp and all(isinstance(k, list) and len(k) == 3 for k in kp)):
            raise RecordError(
                "field 'keypoints' must be a list of [x, y, score] triples",
                where,
                "pass the .jsonl that runtime.video wrote",
            )
    return p


def read_jsonl(path: str | Path) -> dict[int, list[dict]]:
    """``runtime.video`` JSON Lines -> persons per frame (dropped boxes left out); a line that is
    not a frame record, a frame written twice (two runs in one file), or a file with none, is one
    error naming the file and line."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(
            f"cannot read the run's JSON Lines ({e})",
            f"--jsonl {path}",
            "pass the .jsonl that runtime.video wrote",
        ) from None
    out: dict[int, list[dict]] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"--jsonl {path} line {n}"
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as e:
            raise RecordError(
                f"not valid JSON ({getattr(e, 'msg', e)})",
                where,
                "pass the .jsonl that runtime.video wrote",
            ) from None
        if not isinstance(rec, dict) or not isinstance(rec.get("persons"), list):
            raise RecordError(
                "not a runtime.video frame record (frame, persons)",
                where,
                "pass the .jsonl that runtime.video wrote",
            )
        persons = [_person(p, f"{where} persons[{i}]") for i, p in enumerate(rec["persons"])]
        frame = record_int(rec, "frame", where)
        if frame in out:
            raise InputError(f"frame {frame} appears twice", where, "pass one run's JSON Lines per file")
        out[frame] = [p for p in persons if p["route"] != "dropped"]
    if not out:
        raise InputError(
            "no frame records: nothing to score",
            f"--jsonl {path}",
            "pass the .jsonl of a runtime.video run that read frames",
        )
    return out


def covered(gt: dict[str, Any], out: Mapping[int, list[dict]], jsonl: str | Path) -> set[int]:
    """The clip frames the run wrote; a frame the clip does not have means the wrong ground truth."""
    from runtime.errors import InputError

    frames = {im.get("frame_id", im["id"] - 1) for im in gt["images"]}
    alien = sorted(set(out) - frames)
    if alien:
        raise InputError(
            f"frames {alien[:5]} are not in the ground truth ({len(frames)} frames)",
            f"--jsonl {jsonl}",
            "evaluate against the person_keypoints.json of the clip the run read",
        )
    return frames & set(out)


def trackable(a: Mapping[str, Any]) -> bool:
    return a["num_keypoints"] > 0 and a["area"] >= MIN_AREA


def tracking_metrics(
    gt_frames: Mapping[int, list[dict]],
    hyp_frames: Mapping[int, tuple[Sequence[int], np.ndarray]],
    n_frames: int,
) -> dict[str, float]:
    """IDF1, MOTA, ID switches (and friends) with py-motmetrics; ``hyp_frames[t] = (ids, boxes xywh)``."""
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=True)
    for t in range(n_frames):
        g = [a for a in gt_frames.get(t, []) if trackable(a)]
        ids, boxes = hyp_frames.get(t, ((), np.zeros((0, 4))))
        keep = [i for i, k in enumerate(ids) if int(k) > 0]
        hb = np.asarray(boxes, np.float64).reshape(-1, 4)[keep]
        gb = np.array([a["bbox"] for a in g], np.float64).reshape(-1, 4)
        d = 1.0 - iou_matrix(gb, hb)
        d[d > 0.5] = np.nan
        acc.update([a["track_id"] for a in g], [int(ids[i]) for i in keep], d)
    mh = mm.metrics.create()
    names = [
        "idf1",
        "mota",
        "num_switches",
        "num_fragmentations",
        "mostly_tracked",
        "num_unique_objects",
        "precision",
        "recall",
    ]
    s = mh.compute(acc, metrics=names, name="run")
    return {k: float(s[k].iloc[0]) for k in names}


def person_score(p: Mapping[str, Any]) -> float:
    kp = np.asarray(p["keypoints"], np.float64).reshape(-1, 3)
    conf = kp[:, 2]
    vis = conf > 0.2
    return float(p.get("score", 1.0)) * (float(conf[vis].mean()) if vis.any() else 0.0)


def coco_results(out: Mapping[int, list[dict]], image_id_of: Mapping[int, int]) -> list[dict]:
    res = []
    for t, persons in out.items():
        if t not in image_id_of:
            continue
        for p in persons:
            kp = np.asarray(p["keypoints"], np.float64).reshape(-1, 3)
            res.append(
                {
                    "image_id": image_id_of[t],
                    "category_id": 1,
                    "keypoints": kp.reshape(-1).tolist(),
                    "score": person_score(p),
                }
            )
    return res


def keypoint_ap(gt: dict[str, Any], out: Mapping[int, list[dict]], frames: set[int] | None = None) -> float:
    """COCO keypoint AP of the run's persons over the clip's frames (only ``frames`` when given;
    0 when the run has none)."""
    import contextlib
    import io

    from pycocotools.coco import COCO

    from measure.coco_eval import run_cocoeval

    image_id_of = {im.get("frame_id", im["id"] - 1): im["id"] for im in gt["images"]}
    res = coco_results(out, image_id_of)
    if not res:
        return 0.0
    coco = COCO()
    coco.dataset = {k: gt[k] for k in ("images", "annotations", "categories")}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    ids = None if frames is None else [image_id_of[t] for t in sorted(frames)]
    return float(run_cocoeval(coco, res, image_ids=ids).stats[0])


def box_results(out: Mapping[int, list[dict]], image_id_of: Mapping[int, int]) -> list[dict]:
    """The run's person boxes (xywh) as COCO detection results, scored by the detector's score."""
    return [
        {
            "image_id": image_id_of[t],
            "category_id": 1,
            "bbox": [float(v) for v in p["box"]],
            "score": float(p["score"]) if p.get("score") is not None else 1.0,
        }
        for t, persons in out.items()
        if t in image_id_of
        for p in persons
    ]


def box_ap(gt: dict[str, Any], out: Mapping[int, list[dict]], frames: set[int] | None = None) -> float:
    """COCO box AP (IoU 0.50:0.95) of the run's person boxes over the clip's frames (only
    ``frames`` when given; 0 when the run has none); untrackable people are crowd regions."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    image_id_of = {im.get("frame_id", im["id"] - 1): im["id"] for im in gt["images"]}
    res = box_results(out, image_id_of)
    if not res:
        return 0.0
    coco = COCO()
    anns = [{**a, "iscrowd": 0 if trackable(a) else 1} for a in gt["annotations"]]
    coco.dataset = {"images": gt["images"], "annotations": anns, "categories": gt["categories"]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(res), iouType="bbox")
        ev.params.catIds = [1]
        if frames is not None:
            ev.params.imgIds = sorted(image_id_of[t] for t in frames)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return max(0.0, float(ev.stats[0]))


def _matches(gt: list[dict], persons: list[dict]) -> dict[int, np.ndarray]:
    """track_id -> the output keypoints [17,2] of the person best overlapping it (IoU >= 0.5, greedy)."""
    if not gt or not persons:
        return {}
    iou = iou_matrix(np.array([a["bbox"] for a in gt]), np.array([p["box"] for p in persons]))
    out, used = {}, set()
    for flat in np.argsort(-iou, axis=None):
        gi, pi = divmod(int(flat), len(persons))
        if iou[gi, pi] < 0.5:
            break
        if gt[gi]["track_id"] in out or pi in used:
            continue
        used.add(pi)
        out[gt[gi]["track_id"]] = np.asarray(persons[pi]["keypoints"], np.float64)[:, :2]
    return out


def jitter(gt_frames: Mapping[int, list[dict]], out: Mapping[int, list[dict]], n_frames: int) -> float:
    """Mean second-difference error in pixels (module docstring); NaN when nothing is matched 3 frames running."""
    pred = [
        _matches([a for a in gt_frames.get(t, []) if trackable(a)], out.get(t, [])) for t in range(n_frames)
    ]
    truth = [
        {a["track_id"]: np.asarray(a["keypoints"], np.float64).reshape(-1, 3) for a in gt_frames.get(t, [])}
        for t in range(n_frames)
    ]
    errs = []
    for t in range(1, n_frames - 1):
        for tid, p1 in pred[t].items():
            if (
                tid not in pred[t - 1]
                or tid not in pred[t + 1]
                or tid not in truth[t - 1]
                or tid not in truth[t + 1]
            ):
                continue
            g0, g1, g2 = truth[t - 1][tid], truth[t][tid], truth[t + 1][tid]
            ok = (g0[:, 2] > 0) & (g1[:, 2] > 0) & (g2[:, 2] > 0)
            acc_p = pred[t + 1][tid] - 2 * p1 + pred[t - 1][tid]
            acc_g = g2[:, :2] - 2 * g1[:, :2] + g0[:, :2]
            e = np.linalg.norm(acc_p - acc_g, axis=1)[ok]
            errs.extend(e[np.isfinite(e)].tolist())
    return float(np.mean(errs)) if errs else float("nan")


def evaluate_run(gt_path: str | Path, jsonl: str | Path) -> dict[str, float]:
    """The run's numbers over the frames it wrote. A run that covers part of the clip (stopped
    early, ``--max-frames``) is scored on those frames only, and says so: ``coverage`` < 1 in the
    numbers, the table's coverage column and a warning line."""
    import sys

    gt, per = load_clip_gt(gt_path)
    out = read_jsonl(jsonl)
    n = len(gt["images"])
    frames = covered(gt, out, jsonl)
    if len(frames) < n:
        print(
            f"warning: {jsonl} covers {len(frames)} of the clip's {n} frames ({len(frames) / n:.0%}); "
            "its numbers are over those frames only",
            file=sys.stderr,
        )
        per = {t: a for t, a in per.items() if t in frames}
    hyps = {
        t: ([p.get("track_id", 0) for p in ps], np.array([p["box"] for p in ps]).reshape(-1, 4))
        for t, ps in out.items()
    }
    routes = [p["route"] for ps in out.values() for p in ps]
    m = {
        "frames": float(len(out)),
        "coverage": len(frames) / n if n else 0.0,
        "AP": keypoint_ap(gt, out, frames if len(frames) < n else None),
        "box_AP": box_ap(gt, out, frames if len(frames) < n else None),
        "large_share": float(np.mean([r == "large" for r in routes])) if routes else 0.0,
        "jitter_px": jitter(per, out, n),
    }
    m.update(tracking_metrics(per, hyps, n))
    return m


def format_table(rows: Iterable[tuple[str, Mapping[str, float]]]) -> str:
    """A Markdown table: one row per run, the columns a user reads first."""
    cols = [
        ("coverage", "coverage", "{:.0%}"),
        ("AP", "AP", "{:.3f}"),
        ("box AP", "box_AP", "{:.3f}"),
        ("IDF1", "idf1", "{:.3f}"),
        ("MOTA", "mota", "{:.3f}"),
        ("ID sw", "num_switches", "{:.0f}"),
        ("large", "large_share", "{:.0%}"),
        ("jitter px", "jitter_px", "{:.2f}"),
    ]
    lines = ["| run | " + " | ".join(c[0] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, m in rows:
        cells = [fmt.format(m[k]) if k in m and np.isfinite(m[k]) else "-" for _, k, fmt in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def check_inputs(gt: Path, jsonls: Sequence[Path]) -> None:
    """The ground truth and every JSON Lines file read once, with the readers the scoring uses,
    before any scoring: a bad one is one line naming the file (and line), not an error deep in
    the evaluation of an earlier file's row."""
    load_clip_gt(gt)
    for path in jsonls:
        read_jsonl(path)


def main(argv: list[str]) -> int:
    from runtime.cli.args import OneLineParser, add_json_argument, existing_file

    p = OneLineParser(
        prog="python -m bench.video_eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--gt", required=True, type=existing_file, help="the clip's person_keypoints.json")
    p.add_argument(
        "--jsonl",
        required=True,
        type=existing_file,
        nargs="+",
        help="runtime.video JSON Lines (several: one row each)",
    )
    add_json_argument(p, "also write the numbers here (JSON)")
    a = p.parse_args(argv)
    # The scorers' packages (the eval extra) before any work: a missing one is one line, not a
    # coverage warning followed by a failure half way through the table.
    import motmetrics  # noqa: F401
    import pycocotools.coco  # noqa: F401

    check_inputs(a.gt, a.jsonl)
    stems = [Path(j).stem for j in a.jsonl]
    names = [
        f"{Path(j).parent.name}/{Path(j).stem}" if stems.count(Path(j).stem) > 1 else Path(j).stem
        for j in a.jsonl
    ]
    rows = [(n, evaluate_run(a.gt, j)) for n, j in zip(names, a.jsonl)]
    print(format_table(rows))
    if a.json:
        atomic_write_text(Path(a.json), json.dumps(dict(rows), indent=2))
    return 0


if __name__ == "__main__":
    from runtime.errors import guarded

    raise SystemExit(guarded(main, prog="python -m bench.video_eval"))
