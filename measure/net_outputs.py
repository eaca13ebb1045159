"""Every crop through every net once, and the policies composed from those outputs.

Why: the precision table (calib's report, bench.accuracy) and the trade-off sweep score many
policies and precisions on the same crops; running each net once per crop and composing the
policies afterwards (checked against the real pipeline in tests/test_sweep.py) keeps that
affordable. It lives in measure/ because calib/ (below bench/) reports with it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from measure.workload import CropSet, Frame, make_cropset
from runtime.heads.probfields import ProbFieldsDecoder
from runtime.pose.assemble import FrameRows, People, decode_people
from runtime.pose.pipeline import PosePipeline
from runtime.pose.preprocess import net_sizes
from runtime.pose.results import FrameResult

MAX_BATCH = 32  # chunk size where the runner has no profile cap


@dataclass
class NetOutputs:
    """Every crop through every net once, decoded to image space, plus the measured costs."""

    router_scores: np.ndarray  # [N]
    people: dict[str, People]  # role -> every crop decoded by that net (runtime.pose.assemble)
    seconds: dict[str, float]  # router, small, large, decode_small, decode_large, preprocess

    @property
    def keypoints(self) -> dict[str, np.ndarray]:
        """role -> [N,17,3] image xy + score."""
        return {r: p.keypoints for r, p in self.people.items()}


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
    cs = make_cropset(frames, pipe.options.max_boxes, net_sizes(pipe.manifest))
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
            parts[role].append(_run(pipe, role, cs.at(pipe.input_hw[role])[s]))
            sec[role] += time.perf_counter() - t
    outs = {r: {k: np.concatenate([x[k] for x in parts[r]]) for k in parts[r][0]} for r in roles}
    people = {}
    fields = ProbFieldsDecoder(pipe.manifest, ())  # the COCO score reads predicted OKS, not regions
    for role in ("small", "large"):
        t = time.perf_counter()
        centers, scales = cs.windows.at(pipe.input_hw[role])
        people[role] = decode_people(
            pipe.heads[role], outs[role], centers, scales, pipe.decode_ctx[role], fields
        )
        sec[f"decode_{role}"] = time.perf_counter() - t
    return cs, NetOutputs(outs["router"]["score"].reshape(-1), people, sec)


def compose(
    frames: list[Frame], cs: CropSet, nets: NetOutputs, large: np.ndarray, with_router: bool
) -> list[FrameResult]:
    """Per-frame results as the pipeline returns them, picking each crop's routed net."""
    results = []
    for i, f in enumerate(frames):
        s = cs.frame_slice(i)
        kept, sel = cs.kept[i], large[s]
        frame = FrameRows(len(f.boxes), ())
        for role, flag in (("small", False), ("large", True)):
            frame.put(kept[sel == flag], nets.people[role].take(s).take(sel == flag), flag)
        if with_router:
            frame.router_score[kept] = nets.router_scores[s]
        dropped = {int(j): "hygiene" for j in np.setdiff1d(np.arange(len(f.boxes)), kept)}
        results.append(frame.result(f.boxes, f.scores, dropped, {}))
    return results


def coco_results(frames: list[Frame], results: list[FrameResult]) -> list[dict]:
    return [r for f, res in zip(frames, results) for r in res.to_coco(f.image_id)]
