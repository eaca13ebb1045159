"""Every crop through every net once, and the policies composed from those outputs.

Why: the precision table (calib's report, bench.accuracy) and the trade-off sweep score many
policies and precisions on the same crops; running each net once per crop and composing the
policies afterwards (checked against the real pipeline in tests/test_sweep.py) keeps that
affordable. It lives in measure/ because calib/ (below bench/) reports with it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from measure.workload import CropSet, Frame, make_cropset
from runtime.heads.probfields import ProbExtras
from runtime.pose.pipeline import PosePipeline, decode_outputs
from runtime.pose.preprocess import heatmap_to_image
from runtime.pose.results import FrameResult

MAX_BATCH = 32  # chunk size where the runner has no profile cap


@dataclass
class NetOutputs:
    """Every crop through every net once, decoded to image space, plus the measured costs."""

    router_scores: np.ndarray  # [N]
    keypoints: dict[str, np.ndarray]  # role -> [N,17,3] image xy + score
    presence: dict[str, np.ndarray]  # role -> [N,17]
    seconds: dict[str, float]  # router, small, large, decode_small, decode_large, preprocess
    oks: dict[str, np.ndarray] = field(default_factory=dict)  # probmap role -> [N,17] predicted OKS


def _run(pipe: PosePipeline, role: str, crops: np.ndarray) -> dict[str, np.ndarray]:
    cap = pipe.runners[role].max_batch or MAX_BATCH
    step = max(1, min(pipe.options.max_batch, cap))
    pend = [
        pipe.runners[role].infer_async(crops[i : i + step], pipe.streams[role])
        for i in range(0, len(crops), step)
    ]
    parts = [q.wait() for q in pend]
    return {k: np.concatenate([x[k] for x in parts]) for k in parts[0]}


def run_nets(pipe: PosePipeline, frames: list[Frame]) -> tuple[CropSet, NetOutputs]:
    """Router, small and large once on every crop, frame by frame with the scheduler's batching."""
    t = time.perf_counter()
    cs = make_cropset(frames, pipe.options.max_boxes)
    sec = {"preprocess": time.perf_counter() - t}
    roles = ("router", "small", "large")
    parts: dict[str, list[dict[str, np.ndarray]]] = {r: [] for r in roles}
    sec.update({r: 0.0 for r in roles})
    # Frame-major, role-minor: a busy neighbour slows all three nets alike instead of one.
    for i in range(len(frames)):
        s = cs.frame_slice(i)
        if s.stop == s.start:
            continue
        for role in roles:
            t = time.perf_counter()
            parts[role].append(_run(pipe, role, cs.crops[s]))
            sec[role] += time.perf_counter() - t
    outs = {r: {k: np.concatenate([x[k] for x in parts[r]]) for k in parts[r][0]} for r in roles}
    kps, pres, oks = {}, {}, {}
    for role in ("small", "large"):
        if pipe.heads[role] == "probmap" and "oks" in outs[role]:  # the person score reads it (to_coco)
            oks[role] = np.asarray(outs[role]["oks"], np.float32).reshape(len(cs), 17)
        t = time.perf_counter()
        coords, kscores, presence = decode_outputs(pipe.heads[role], outs[role], pipe.temperature)
        xy = heatmap_to_image(coords, cs.centers, cs.scales)
        kps[role] = np.concatenate([xy, kscores[..., None]], axis=-1).astype(np.float32)
        pres[role] = presence
        sec[f"decode_{role}"] = time.perf_counter() - t
    return cs, NetOutputs(outs["router"]["score"].reshape(-1), kps, pres, sec, oks)


def compose(
    frames: list[Frame], cs: CropSet, nets: NetOutputs, large: np.ndarray, with_router: bool
) -> list[FrameResult]:
    """Per-frame results as the pipeline returns them, picking each crop's routed net."""
    results = []
    for i, f in enumerate(frames):
        s, n = cs.frame_slice(i), len(f.boxes)
        kept, sel = cs.kept[i], large[cs.frame_slice(i)]
        kps = np.full((n, 17, 3), np.nan, np.float32)
        presence = np.zeros((n, 17), np.float32)
        route_arr = np.full(n, -1, np.int8)
        rscore = np.full(n, np.nan, np.float32)
        kps[kept] = np.where(sel[:, None, None], nets.keypoints["large"][s], nets.keypoints["small"][s])
        presence[kept] = np.where(sel[:, None], nets.presence["large"][s], nets.presence["small"][s])
        route_arr[kept] = sel.astype(np.int8)
        if with_router:
            rscore[kept] = nets.router_scores[s]
        dropped = {int(j): "hygiene" for j in np.setdiff1d(np.arange(n), kept)}
        prob = None
        if nets.oks:  # probability-map people: the predicted OKS their COCO person score uses
            prob = ProbExtras.empty(n, ())
            for role, flag in (("small", False), ("large", True)):
                if role in nets.oks:
                    rows = kept[sel == flag]
                    prob.has[rows] = True
                    prob.oks[rows] = nets.oks[role][s][sel == flag]
        results.append(
            FrameResult(
                f.boxes.astype(np.float32),
                kps,
                presence,
                route_arr,
                rscore,
                f.scores.astype(np.float32),
                dropped,
                {},
                prob,
            )
        )
    return results


def coco_results(frames: list[Frame], results: list[FrameResult]) -> list[dict]:
    return [r for f, res in zip(frames, results) for r in res.to_coco(f.image_id)]
