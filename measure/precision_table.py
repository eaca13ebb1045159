"""AP/AR of small, large and dyn per precision on a labelled set: the table both the
``bench.accuracy`` command and the build's calibration report print.

Each precision's nets run once on every crop (``measure.net_outputs.run_nets``, the
pipeline's own runners and batching); the three policies are composed from
those outputs per crop (``measure.net_outputs.compose``, checked against the real
pipeline in tests/test_sweep.py), so a row is what a ``PosePipeline`` with
that precision and policy returns. ``dyn`` routes with the manifest's k1/k2 on
that precision's own router scores, as the runtime does; the router's
decision agreement is measured against the fp32 router on the same crops.

Person scores: ``box`` (default) ranks each person by its detector box score
alone, as the fixtures' own report does (build/train/metrics.routed_results),
so the ranking does not depend on which net a person went to; ``pipeline``
uses the runtime's score (``FrameResult.to_coco``: heatmap people box x mean
keypoint score > 0.2, probability-map people box x mean predicted OKS).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from measure.coco_eval import evaluate_keypoints, load_gt
from measure.net_outputs import NetOutputs, coco_results, compose, run_nets
from measure.workload import CropSet, Frame, load_frames
from runtime.pose.results import FrameResult
from runtime.pose.routing import route_band

PRECISIONS = ("fp32", "fp16", "int8_cpu", "int8_trt")
POLICIES = ("small", "large", "dyn")
# Largest AP drop below fp32 that meets the target, in pycocotools units ([0, 1]):
# "INT8 <= 0.5 AP, FP16 <= 0.1 AP" read as AP points (0.5 AP = 0.005).
MAX_DROP = {"fp16": 0.001, "int8_cpu": 0.005, "int8_trt": 0.005}


@dataclass
class AccRow:
    policy: str
    precision: str
    AP: float
    AP50: float
    AR: float
    large_fraction: float
    route_agreement: float | None  # dyn only: share of crops routed as the fp32 router routes them
    drop: float  # fp32 AP - this AP (same policy)
    max_drop: float | None  # the target for this precision (None for fp32)

    @property
    def met(self) -> bool | None:
        return None if self.max_drop is None else self.drop <= self.max_drop + 1e-12


PERSON_SCORES = ("box", "pipeline")


def scored_results(frames: list[Frame], results: list[FrameResult], person_score: str = "box") -> list[dict]:
    """COCO records of composed frames; ``box`` replaces the runtime's person score by the box score."""
    if person_score not in PERSON_SCORES:
        raise ValueError(f"person_score must be one of {PERSON_SCORES}, got {person_score!r}")
    if person_score == "pipeline":
        return coco_results(frames, results)
    out = []
    for f, res in zip(frames, results):
        recs = res.to_coco(f.image_id)
        for rec, i in zip(recs, np.flatnonzero(res.route >= 0)):
            rec["score"] = float(res.box_score[i])
        out += recs
    return out


def assemble(
    frames: list[Frame],
    cs: CropSet,
    nets: dict[str, NetOutputs],
    k1: float,
    k2: float,
    gt: Any,
    person_score: str = "box",
) -> list[AccRow]:
    """Rows for every (policy, precision) in ``nets`` (which must hold fp32, the reference)."""
    if "fp32" not in nets:
        raise ValueError("the precision table needs fp32 outputs as its reference")
    coco = load_gt(gt)
    ids = [f.image_id for f in frames]
    n = len(cs)
    ref_route = route_band(nets["fp32"].router_scores, k1, k2)
    stats: dict[tuple[str, str], dict[str, float]] = {}
    masks: dict[tuple[str, str], np.ndarray] = {}
    for prec, out in nets.items():
        for policy in POLICIES:
            large = {"small": np.zeros(n, bool), "large": np.ones(n, bool)}.get(policy)
            if large is None:
                large = route_band(out.router_scores, k1, k2)
            masks[policy, prec] = large
            res = scored_results(
                frames, compose(frames, cs, out, large, with_router=policy == "dyn"), person_score
            )
            stats[policy, prec] = evaluate_keypoints(coco, res, image_ids=ids)
    rows = []
    for policy in POLICIES:
        for prec in nets:
            s, large = stats[policy, prec], masks[policy, prec]
            rows.append(
                AccRow(
                    policy,
                    prec,
                    s["AP"],
                    s["AP50"],
                    s["AR"],
                    float(large.mean()) if n else 0.0,
                    float((large == ref_route).mean()) if policy == "dyn" and n else None,
                    stats[policy, "fp32"]["AP"] - s["AP"],
                    MAX_DROP.get(prec),
                )
            )
    return rows


def available(manifest: dict[str, Any], precisions: Sequence[str]) -> list[str]:
    """The ``precisions`` whose small and large models the manifest holds (fp32 always)."""
    return [
        p
        for p in precisions
        if p == "fp32" or all(p in manifest["models"][r].get("variants", {}) for r in ("small", "large"))
    ]


def measure(
    root: Path,
    frames: list[Frame],
    gt: Any,
    precisions: Sequence[str] = PRECISIONS,
    threads: int | None = None,
    person_score: str = "box",
) -> tuple[list[AccRow], dict[str, Any]]:
    """Run every precision's nets through a ``PosePipeline`` (ONNX Runtime) and assemble the table.

    Precisions whose models the manifest lacks are skipped and named in the returned info.
    """
    from runtime.artifacts.manifest import load_manifest
    from runtime.pose.pipeline import PipelineOptions, PosePipeline

    manifest = load_manifest(root, verify=False)
    have = available(manifest, precisions)
    nets: dict[str, NetOutputs] = {}
    cs = None
    opts = {"threads": threads} if threads else {}
    for prec in dict.fromkeys(["fp32", *have]):
        with PosePipeline(
            root, PipelineOptions(policy="dyn", backend="ort", precision=prec, backend_options=opts)
        ) as pipe:
            cs, nets[prec] = run_nets(pipe, frames)
    r = manifest["routing"]
    rows = assemble(frames, cs, nets, r["k1"], r["k2"], gt, person_score)
    info = {
        "n_images": len(frames),
        "n_crops": int(len(cs)),
        "k1": r["k1"],
        "k2": r["k2"],
        "person_score": person_score,
        "skipped": [p for p in precisions if p not in have],
    }
    return rows, info


def labelled_report(root: Path, folder: Path, precisions: Sequence[str]) -> dict[str, Any] | None:
    """The table on a labelled COCO folder (GT + detector boxes), as a JSON-ready dict; None when
    the folder has no ground truth (a folder of images or a video calibrates without labels)."""
    folder = Path(folder)
    if not folder.is_dir() or not all(
        (folder / f).is_file() for f in ("person_keypoints.json", "person_detections.json")
    ):
        return None
    frames = load_frames(folder)
    rows, info = measure(root, frames, folder / "person_keypoints.json", precisions)
    return {"data": str(folder), **info, "rows": [to_dict(r) for r in rows]}


def to_dict(r: AccRow) -> dict[str, Any]:
    return {**asdict(r), "met": r.met}


def format_markdown(rows: Sequence[AccRow] | Sequence[dict[str, Any]]) -> str:
    """The table of docs/results/2026-12-accuracy.md: AP/AR in points (x100), the drop and whether the target holds."""
    ds = [to_dict(r) if isinstance(r, AccRow) else r for r in rows]
    lines = [
        "| net | precision | AP | AP50 | AR | AP drop vs fp32 | target | large fraction | route agreement |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for d in ds:
        tgt = (
            "-"
            if d["max_drop"] is None
            else f"<= {100 * d['max_drop']:.1f} {'met' if d['met'] else 'MISSED'}"
        )
        agr = "-" if d["route_agreement"] is None else f"{d['route_agreement']:.3f}"
        lines.append(
            f"| {d['policy']} | {d['precision']} | {100 * d['AP']:.2f} | {100 * d['AP50']:.2f} | "
            f"{100 * d['AR']:.2f} | {100 * d['drop']:+.2f} | {tgt} | {d['large_fraction']:.3f} | {agr} |"
        )
    return "\n".join(lines)
