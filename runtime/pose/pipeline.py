"""The DynPose scheduler: crops -> router -> split -> small || large -> decode -> merge.

It drives any backend through ``runtime.backends.base`` only, so ONNX
Runtime on a laptop and TensorRT on a Jetson run exactly this code.
Frames are pipelined: :meth:`PosePipeline.run_many` preprocesses and routes
frame t+1 while the pose nets of frame t are still running.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from runtime.artifacts.manifest import load_manifest, verify_files
from runtime.backends import backend_class, open_backend, resolve_backend_name
from runtime.backends.base import Pending
from runtime.backends.options import BackendOptions, given
from runtime.heads.base import DecodeContext
from runtime.heads.credible import DEFAULT_MASSES
from runtime.heads.probfields import ProbFieldsDecoder
from runtime.pose.api_checks import ImageError, OptionError, check_image, check_masses, check_options  # noqa: F401 (the API's names)
from runtime.pose.assemble import FrameRows, decode_people
from runtime.pose.preprocess import (
    DEFAULT_MAX_BOXES,
    INPUT_HW,
    as_boxes,
    boxes_to_center_scale,
    make_crops,
    sanitize_boxes,
)
from runtime.pose.results import FrameResult
from runtime.pose.routing import apply_budget, budget_max_large, cost_ratios, route

NET_ROLES = ("small", "large")


@dataclass
class PipelineOptions:
    policy: str = "dyn"  # dyn | small | large | random
    backend: str = "auto"  # auto | ort | trt
    precision: str = "fp32"  # fp32 | int8_cpu | fp16 | ... (ORT variants; TRT uses its engines)
    max_batch: int = 32  # chunk size where the backend has no profile cap
    budget_ms: float | None = None  # cap large-net crops per frame to meet this latency
    score_thr: float | None = None
    max_boxes: int = DEFAULT_MAX_BOXES
    seed: int = 0
    # typed (runtime.backends.options) or a dict of them; checked against the backend's options
    backend_options: BackendOptions | dict[str, Any] = field(default_factory=dict)
    credible: tuple[float, ...] = DEFAULT_MASSES  # credible-region masses for probmap nets; () = none
    refresh_costs: bool = False  # re-measure the routing cost ratios here, rewrite manifest.json


@dataclass
class _Job:
    """A frame between submission and collection."""

    boxes: np.ndarray
    box_scores: np.ndarray
    kept: np.ndarray
    dropped: dict[int, str]
    centers: np.ndarray
    scales: np.ndarray
    scores: np.ndarray
    large: np.ndarray
    pending: dict[str, list[tuple[Pending, int]]]
    timings: dict[str, float]
    t0: float
    sizes: list[int] = field(default_factory=list)  # input boxes per view, in view order


def fair_shares(total: int, want: np.ndarray) -> np.ndarray:
    """Max-min fair split of ``total`` slots (water filling): everyone gets an equal share,
    those who want less keep only what they want and the rest is shared again; leftover single
    slots go to the largest claims. Nobody gets more than they want."""
    want = np.asarray(want, np.int64)
    got = np.zeros_like(want)
    left = int(min(total, want.sum()))
    while left > 0:
        open_ = np.flatnonzero(got < want)
        each = left // len(open_)
        if each == 0:
            for i in open_[np.argsort(-(want[open_] - got[open_]), kind="stable")][:left]:
                got[i] += 1
            break
        add = np.minimum(want[open_] - got[open_], each)
        got[open_] += add
        left -= int(add.sum())
    return got


class PosePipeline:
    """Load once, call per frame: ``pipe(image_bgr, boxes_xywh) -> FrameResult``."""

    def __init__(self, root: str | Path, options: PipelineOptions | None = None, **kw: Any) -> None:
        self.options = options or PipelineOptions(**kw)
        check_options(self.options)
        self.root = Path(root)
        # schema first; the files' sha256 only where this backend runs them (not a Triton client)
        self.manifest = load_manifest(self.root, verify=False)
        if backend_class(resolve_backend_name(self.options.backend, self.manifest)).local_models:
            verify_files(self.root, self.manifest)
        if self.manifest.get("weights") == "random":
            print("WARNING: these artifacts have RANDOM weights; keypoints mean nothing", file=sys.stderr)
        self.backend = open_backend(
            self.options.backend,
            self.root,
            self.manifest,
            self.options.backend_options,
            precision=self.options.precision,
        )
        self.runners = {r: self.backend.open_runner(r).activate() for r in ("router", *NET_ROLES)}
        self.streams = {r: self.backend.new_stream(r) for r in self.runners}
        self.heads = {r: self.manifest["models"][r]["head"] for r in NET_ROLES}
        routing = self.manifest.get("routing") or {}
        self.k1, self.k2 = routing.get("k1", 0.0), routing.get("k2", 1.0)
        self.fraction = routing.get("large_fraction", 0.5)
        self.temperature = float(self.manifest.get("presence", {}).get("temperature", 1.0))
        self.prob = ProbFieldsDecoder(self.manifest, self.options.credible)
        self.decode_ctx = DecodeContext(self.temperature, self.prob.threshold)
        self._rng = np.random.default_rng(self.options.seed)
        self._crops = np.empty((0, 3, *INPUT_HW), np.float32)
        self._ms_per_crop: dict[str, float] = {}
        self.cost_source: str | None = None  # budget mode: "manifest" (the stored ratios) or "probe"
        if self.options.refresh_costs:  # runtime.pose.costs: the ratios measured on this device
            from runtime.pose.costs import measure_runner_costs, store_entry

            entry = measure_runner_costs(
                self.runners, self.streams, self.backend.name, self.options.precision
            )
            store_entry(self.root, self.manifest, entry)
        if self.options.budget_ms is not None:
            self._measure_costs()

    # -- public API -------------------------------------------------------------------
    def __call__(self, image: np.ndarray, boxes: object, scores: object = None) -> FrameResult:
        return self._collect(self._submit(image, boxes, scores))

    def run_many(self, frames: Iterable[tuple[np.ndarray, object, object]]) -> Iterator[FrameResult]:
        """Pipelined: frame t+1's crops and router overlap frame t's pose nets."""
        prev: _Job | None = None
        for image, boxes, scores in frames:
            job = self._submit(image, boxes, scores)
            if prev is not None:
                yield self._collect(prev)
            prev = job
        if prev is not None:
            yield self._collect(prev)

    def run_views(self, views: list[tuple[np.ndarray, object, object]]) -> list[FrameResult]:
        """Several frames (e.g. one per camera) as ONE batch through router and nets; one result
        per view, in view order, each in its own input box order."""
        job = self._submit_views(views)
        return self._collect(job).split(job.sizes)

    def run_ticks(
        self, ticks: Iterable[list[tuple[np.ndarray, object, object]]]
    ) -> Iterator[list[FrameResult]]:
        """Pipelined :meth:`run_views`: tick t+1's crops and router overlap tick t's pose nets."""
        prev: _Job | None = None
        for views in ticks:
            job = self._submit_views(views)
            if prev is not None:
                yield self._collect(prev).split(prev.sizes)
            prev = job
        if prev is not None:
            yield self._collect(prev).split(prev.sizes)

    def close(self) -> None:
        for s in self.streams.values():
            s.close()
        for r in self.runners.values():
            r.deactivate()
        self.backend.close()

    def __enter__(self) -> PosePipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- stages ----------------------------------------------------------------------
    def _chunk(self, role: str) -> int:
        cap = self.runners[role].max_batch
        return max(1, min(self.options.max_batch, cap) if cap else self.options.max_batch)

    def _enqueue(self, role: str, crops: np.ndarray) -> list[tuple[Pending, int]]:
        step = self._chunk(role)
        return [
            (
                self.runners[role].infer_async(crops[i : i + step], self.streams[role]),
                min(step, len(crops) - i),
            )
            for i in range(0, len(crops), step)
        ]

    def _crop_buffer(self, n: int) -> np.ndarray:
        if len(self._crops) < n:
            self._crops = np.empty((max(n, 2 * len(self._crops)), 3, *INPUT_HW), np.float32)
        return self._crops

    def _submit(self, image: np.ndarray, boxes: object, scores: object) -> _Job:
        return self._submit_views([(image, boxes, scores)])

    def _submit_views(self, views: list[tuple[np.ndarray, object, object]]) -> _Job:
        """Crops of every view (a camera's frame) in one buffer, then one router/small/large
        submission for all of them; ``_Job.sizes`` remembers how to split the result back."""
        t0 = time.perf_counter()
        raws, all_scores, kept_l, dropped, cen_l, sc_l, sizes = [], [], [], {}, [], [], []
        offset = 0
        prepared = []
        for image, boxes, scores in views:
            image = check_image(image)
            raw = as_boxes(boxes)
            n = len(raw)
            b, kept, rep = sanitize_boxes(
                raw, image.shape[:2], scores, self.options.score_thr, self.options.max_boxes
            )
            box_scores = np.ones(n) if scores is None else np.asarray(scores, np.float64).reshape(-1)
            dropped.update({offset + i: why for i, why in sorted(rep.reasons.items())})
            c, s = boxes_to_center_scale(b)
            prepared.append((image, c, s))
            raws.append(raw)
            all_scores.append(box_scores)
            kept_l.append(kept + offset)
            cen_l.append(c)
            sc_l.append(s)
            sizes.append(n)
            offset += n
        centers, scales = np.concatenate(cen_l), np.concatenate(sc_l)
        buf = self._crop_buffer(len(centers))
        row = 0
        for image, c, s in prepared:
            make_crops(image, c, s, out=buf[row : row + len(c)])
            row += len(c)
        crops = buf[:row]
        raw, box_scores, kept = np.concatenate(raws), np.concatenate(all_scores), np.concatenate(kept_l)
        t1 = time.perf_counter()
        if len(crops) and (self.options.policy == "dyn" or self.options.budget_ms is not None):
            parts = self._enqueue("router", crops)
            router_scores = np.concatenate([p.wait()["score"].reshape(-1) for p, _ in parts])
        else:
            router_scores = np.full(len(crops), np.nan)
        t2 = time.perf_counter()
        large = route(self.options.policy, router_scores, self.k1, self.k2, self.fraction, self._rng)
        if self.options.budget_ms is not None and len(crops):
            cap = budget_max_large(
                self.options.budget_ms,
                len(crops),
                self._ms_per_crop["small"],
                self._ms_per_crop["large"],
                (t2 - t0) * 1e3,
            )
            large = self._budget(router_scores, large, cap, [len(c) for _, c, _ in prepared])
        # Boolean indexing copies: the nets own their batches, so the shared crop buffer is free
        # for frame t+1 while frame t's nets still run (run_many).
        pending = {
            "small": self._enqueue("small", crops[~large]) if (~large).any() else [],
            "large": self._enqueue("large", crops[large]) if large.any() else [],
        }
        timings = {"preprocess": (t1 - t0) * 1e3, "router": (t2 - t1) * 1e3}
        return _Job(
            raw, box_scores, kept, dropped, centers, scales, router_scores, large, pending, timings, t0, sizes
        )

    def _budget(self, scores: np.ndarray, large: np.ndarray, cap: int, rows: list[int]) -> np.ndarray:
        """The tick's large-net cap, shared fairly: each view (camera) gets a share of the cap
        in proportion to its crops wanting the large net, so a crowded camera cannot take every
        large-net slot from the others."""
        if len(rows) == 1 or int(large.sum()) <= cap:
            capped: np.ndarray = apply_budget(scores, large, self.k1, self.k2, cap)
            return capped
        bounds = np.cumsum([0, *rows])
        want = np.array([int(large[a:b].sum()) for a, b in zip(bounds[:-1], bounds[1:])])
        caps = fair_shares(cap, want)
        out: np.ndarray = large.copy()
        for (a, b), c in zip(zip(bounds[:-1], bounds[1:]), caps):
            out[a:b] = apply_budget(scores[a:b], large[a:b], self.k1, self.k2, int(c))
        return out

    def _collect(self, job: _Job) -> FrameResult:
        t_wait = time.perf_counter()
        frame = FrameRows(len(job.boxes), self.prob.masses)
        frame.router_score[job.kept] = job.scores
        decode_ms = 0.0
        for role, flag in (("small", False), ("large", True)):
            parts = job.pending[role]
            if not parts:
                continue
            outs_list = [p.wait() for p, _ in parts]
            self._update_cost(role, parts)
            td = time.perf_counter()
            outs = {k: np.concatenate([o[k] for o in outs_list]) for k in outs_list[0]}
            sel = np.flatnonzero(job.large == flag)
            people = decode_people(
                self.heads[role], outs, job.centers[sel], job.scales[sel], self.decode_ctx, self.prob
            )
            frame.put(job.kept[sel], people, flag)
            decode_ms += (time.perf_counter() - td) * 1e3
        t_end = time.perf_counter()
        timings = dict(
            job.timings,
            nets=(t_end - t_wait) * 1e3 - decode_ms,
            decode=decode_ms,
            total=(t_end - job.t0) * 1e3,
        )
        return frame.result(job.boxes, job.box_scores, job.dropped, timings)

    # -- budget mode -------------------------------------------------------------------
    def _update_cost(self, role: str, parts: list[tuple[Pending, int]]) -> None:
        ms: list[float] = [m for p, _ in parts if (m := getattr(p, "elapsed_ms", None)) is not None]
        if len(ms) < len(parts):
            return
        per = sum(ms) / max(1, sum(n for _, n in parts))
        old = self._ms_per_crop.get(role)
        self._ms_per_crop[role] = per if old is None else 0.8 * old + 0.2 * per

    def _measure_costs(self) -> None:
        """Budget mode needs per-crop costs before the first frame: the manifest's cost ratios
        for this backend and precision (runtime.pose.costs: they survive load, absolute figures
        do not), put in milliseconds by timing one small-net batch here; without ratios, each
        net is timed here."""
        ratios = cost_ratios(self.manifest, self.backend.name, self.options.precision)
        probe = np.zeros((4, 3, *INPUT_HW), np.float32)
        roles = ("small",) if ratios is not None else NET_ROLES
        for role in roles:
            self.runners[role].infer(probe, self.streams[role])  # first run allocates: not timed
            t = time.perf_counter()
            self.runners[role].infer(probe, self.streams[role])
            self._ms_per_crop[role] = (time.perf_counter() - t) * 1e3 / len(probe)
        if ratios is not None:
            self._ms_per_crop["large"] = ratios["large"] * self._ms_per_crop["small"]
        self.cost_source = "manifest" if ratios is not None else "probe"


def load_pipeline(root: str | Path, **options: Any) -> PosePipeline:
    """``load_pipeline('artifacts/dyn-r50-h32-cpu')(image_bgr, boxes_xywh)``. Keywords that are not
    :class:`PipelineOptions` fields are the backend's options (``threads=2``, ``url=...``): checked
    against what that backend takes, so a misspelt one is refused by name."""
    names = {f.name for f in fields(PipelineOptions)}
    extra = {k: options.pop(k) for k in list(options) if k not in names}
    if extra:
        options["backend_options"] = {**given(options.get("backend_options")), **extra}
    return PosePipeline(root, PipelineOptions(**options))
