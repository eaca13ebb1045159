"""The DynPose scheduler: crops -> router -> split -> small || large -> decode -> merge.

It drives any backend through ``runtime.backends.base`` only, so ONNX
Runtime on a laptop and TensorRT on a Jetson run exactly this code.
Frames are pipelined: :meth:`PosePipeline.run_many` preprocesses and routes
frame t+1 while the pose nets of frame t are still running.

Each net gets crops at its own input size, read from the manifest (``models.<role>.inputs``):
the router's crops are made for every box, and a pose net whose size is the router's takes
its routed rows from them; a net of another size (RTMPose-l at 384x288 beside a 256x192
small net) gets crops made at its size for the rows routed to it only.

Where the crops are made is decided once, at load (``device_crops_plan``): when every runner
can take crops from the device (TensorRT engines with the crop kernel), each view's frame is
uploaded once and each net's crops are written by the kernel into its input buffer from their
2x3 affines, so the host does nothing else per crop; otherwise every crop is made on the host
(``CropMaker``) and the reason is logged once and kept in ``host_crops_reason``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from runtime.artifacts.manifest import load_manifest, verify_files
from runtime.backends import backend_class, open_backend, resolve_backend_name
from runtime.backends.base import Pending, Stream, device_crops_plan
from runtime.backends.options import BackendOptions, given
from runtime.heads import native
from runtime.heads.base import DecodeContext
from runtime.heads.credible import DEFAULT_MASSES
from runtime.heads.probfields import ProbFieldsDecoder
from runtime.pose.api_checks import ImageError, OptionError, check_image, check_masses, check_options  # noqa: F401 (the API's names)
from runtime.pose.assemble import FrameRows, decode_people
from runtime.pose.batching import BatchFiller, WriteRows, copy_rows
from runtime.pose.preprocess import (
    CROP_ROLES,
    DEFAULT_MAX_BOXES,
    HW,
    MEAN,
    STD,
    CropMaker,
    CropWindows,
    as_boxes,
    net_input_hw,
    sanitize_boxes,
)
from runtime.pose.results import FrameResult
from runtime.pose.routing import apply_budget, budget_max_large, cost_ratios, route

NET_ROLES = ("small", "large")
NORM = (MEAN, STD)  # the RGB normalisation make_crops applies, handed to the device crop kernel
log = logging.getLogger(__name__)


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
    # run_many / run_ticks: a net's rows that do not fill a batch wait for the next frame's
    # (runtime.pose.batching); False launches every frame's rows at once (lowest latency)
    fill_batches: bool = True


@dataclass
class _Job:
    """A frame between submission and collection."""

    boxes: np.ndarray
    box_scores: np.ndarray
    kept: np.ndarray
    dropped: dict[int, str]
    windows: CropWindows
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
        # None: crops on the device (one frame upload per view, the kernel writes each net's input)
        self.host_crops_reason = device_crops_plan(self.runners)
        self._frame_stream: Stream | None = None
        if self.host_crops_reason is None:
            self._frame_stream = self.backend.new_stream("frames")
        else:  # said once; loud only where the backend could have made them on its device
            say = log.warning if self.backend.device_crops else log.info
            say("crops are made on the host: %s", self.host_crops_reason)
        # the host decode and regions: the C++ build, else (slower, same results) numpy; loud only
        # where nobody asked for numpy
        where = native.status()
        (log.info if native.available() or native.ENV in where else log.warning)(
            "host decode and credible regions: %s", where
        )
        self.heads = {r: self.manifest["models"][r]["head"] for r in NET_ROLES}
        routing = self.manifest.get("routing") or {}
        self.k1, self.k2 = routing.get("k1", 0.0), routing.get("k2", 1.0)
        self.fraction = routing.get("large_fraction", 0.5)
        self.temperature = float(self.manifest.get("presence", {}).get("temperature", 1.0))
        self.prob = ProbFieldsDecoder(self.manifest, self.options.credible)
        # each net's crop (H, W) from its manifest entry; the default only where none is listed
        self.input_hw: dict[str, HW] = {r: net_input_hw(self.manifest, r) for r in CROP_ROLES}
        self.decode_ctx = {
            r: DecodeContext(self.temperature, self.prob.threshold, self.input_hw[r]) for r in NET_ROLES
        }
        self._rng = np.random.default_rng(self.options.seed)
        self._makers: dict[HW, CropMaker] = {}  # one per input size: its uint8 scratch is reused
        self._router_crops = np.empty((0, 3, *self.input_hw["router"]), np.float32)
        self._fillers = {
            r: BatchFiller(self._launcher(r), self._chunk(r), (3, *self.input_hw[r])) for r in NET_ROLES
        }
        self._ms_per_crop: dict[str, float] = {}
        self.cost_source: str | None = None  # budget mode: "manifest" (the stored ratios) or "probe"
        if self.options.refresh_costs:  # runtime.pose.costs: the ratios measured on this device
            from runtime.pose.costs import measure_runner_costs, store_entry

            entry = measure_runner_costs(
                self.runners, self.streams, self.backend.name, self.options.precision, input_hw=self.input_hw
            )
            store_entry(self.root, self.manifest, entry)
        if self.options.budget_ms is not None:
            self._measure_costs()

    # -- public API -------------------------------------------------------------------
    def __call__(self, image: np.ndarray, boxes: object, scores: object = None) -> FrameResult:
        return self._collect(self._submit_views([(image, boxes, scores)]))

    def run_many(self, frames: Iterable[tuple[np.ndarray, object, object]]) -> Iterator[FrameResult]:
        """Pipelined: frame t+1's crops and router overlap frame t's pose nets."""
        prev: _Job | None = None
        for image, boxes, scores in frames:
            job = self._submit_views([(image, boxes, scores)], hold=self.options.fill_batches)
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
            job = self._submit_views(views, hold=self.options.fill_batches)
            if prev is not None:
                yield self._collect(prev).split(prev.sizes)
            prev = job
        if prev is not None:
            yield self._collect(prev).split(prev.sizes)

    def close(self) -> None:
        for s in [*self.streams.values(), *([self._frame_stream] if self._frame_stream else [])]:
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

    def _launcher(self, role: str) -> Callable[[np.ndarray], Pending]:
        runner, stream = self.runners[role], self.streams[role]
        return lambda batch: runner.infer_async(batch, stream)

    def _enqueue(self, role: str, crops: np.ndarray) -> list[tuple[Pending, int]]:
        step = self._chunk(role)
        return [
            (
                self.runners[role].infer_async(crops[i : i + step], self.streams[role]),
                min(step, len(crops) - i),
            )
            for i in range(0, len(crops), step)
        ]

    def _router_buffer(self, n: int) -> np.ndarray:
        """The preallocated router input (every box's crop at the router's size), grown by doubling."""
        if len(self._router_crops) < n:
            hw = self.input_hw["router"]
            self._router_crops = np.empty((max(n, 2 * len(self._router_crops)), 3, *hw), np.float32)
        return self._router_crops

    def _make_crops(
        self,
        hw: HW,
        views: list[tuple[np.ndarray, int]],
        windows: CropWindows,
        rows: np.ndarray | None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Crops at ``hw`` of the boxes in ``rows`` (a bool mask over all kept boxes; None: all),
        view by view, into ``out`` (else a new array the net then owns)."""
        maker = self._makers.get(hw) or self._makers.setdefault(hw, CropMaker(hw))
        centers, scales = windows.at(hw)
        n = len(centers) if rows is None else int(rows.sum())
        if out is None:
            out = np.empty((n, 3, *hw), np.float32)
        start = done = 0
        for image, count in views:
            sel = (
                slice(start, start + count)
                if rows is None
                else np.flatnonzero(rows[start : start + count]) + start
            )
            c = centers[sel]
            maker(image, c, scales[sel], out=out[done : done + len(c)])
            done += len(c)
            start += count
        return out[:n]

    def _submit_views(self, views: list[tuple[np.ndarray, object, object]], hold: bool = False) -> _Job:
        """Crops of every view (a camera's frame) in one buffer, then one router/small/large
        submission for all of them; ``_Job.sizes`` remembers how to split the result back.
        ``hold``: a pose net's rows short of a full batch wait for the next submission's."""
        t0 = time.perf_counter()
        raws, all_scores, kept_l, dropped, box_l, sizes = [], [], [], {}, [], []
        offset = 0
        prepared: list[tuple[np.ndarray, int]] = []
        for image, boxes, scores in views:
            image = check_image(image)
            raw = as_boxes(boxes)
            n = len(raw)
            b, kept, rep = sanitize_boxes(
                raw, image.shape[:2], scores, self.options.score_thr, self.options.max_boxes
            )
            box_scores = np.ones(n) if scores is None else np.asarray(scores, np.float64).reshape(-1)
            dropped.update({offset + i: why for i, why in sorted(rep.reasons.items())})
            prepared.append((image, len(b)))
            raws.append(raw)
            all_scores.append(box_scores)
            kept_l.append(kept + offset)
            box_l.append(b)
            sizes.append(n)
            offset += n
        windows = CropWindows(np.concatenate(box_l))
        n_crops = len(windows.boxes)
        raw, box_scores, kept = np.concatenate(raws), np.concatenate(all_scores), np.concatenate(kept_l)
        routed = n_crops > 0 and (self.options.policy == "dyn" or self.options.budget_ms is not None)
        sources = self._crop_sources(prepared)
        router_crops = self._host_router_crops(sources, windows) if routed else None
        t1 = time.perf_counter()
        if routed:
            parts = self._net_parts("router", sources, windows, None, router_crops)
            router_scores = np.concatenate([p.wait()["score"].reshape(-1) for p, _ in parts])
        else:
            router_scores = np.full(n_crops, np.nan)
        t2 = time.perf_counter()
        large = route(self.options.policy, router_scores, self.k1, self.k2, self.fraction, self._rng)
        if self.options.budget_ms is not None and n_crops:
            cap = budget_max_large(
                self.options.budget_ms,
                n_crops,
                self._ms_per_crop["small"],
                self._ms_per_crop["large"],
                (t2 - t0) * 1e3,
            )
            large = self._budget(router_scores, large, cap, [n for _, n in prepared])
        pending = {
            role: self._net_parts(role, sources, windows, rows, router_crops, hold) if rows.any() else []
            for role, rows in (("small", ~large), ("large", large))
        }
        t3 = time.perf_counter()
        # preprocess: the crops (or frame uploads) before the router and the net-sized crops after
        # it (their enqueue returns at once: the nets run on their streams)
        timings = {"preprocess": (t1 - t0 + t3 - t2) * 1e3, "router": (t2 - t1) * 1e3}
        return _Job(
            raw, box_scores, kept, dropped, windows, router_scores, large, pending, timings, t0, sizes
        )

    def _crop_sources(self, prepared: list[tuple[np.ndarray, int]]) -> list[tuple[Any, int]]:
        """What the crops of each view are made from: the host image, or (device crops) the
        view's frame uploaded once, whatever the number of its crops and nets. Every view of a
        submission keeps its own device frame until its last net's crops are launched."""
        if self._frame_stream is None:
            return list(prepared)
        stream, ring = self._frame_stream, max(2, len(prepared))
        return [(self.backend.upload_frame(img, stream, ring) if n else None, n) for img, n in prepared]

    def _host_router_crops(self, sources: list[tuple[Any, int]], windows: CropWindows) -> np.ndarray | None:
        """The router's host crops into its preallocated buffer (None on the device path)."""
        if self._frame_stream is not None:
            return None
        buf = self._router_buffer(len(windows.boxes))
        return self._make_crops(self.input_hw["router"], sources, windows, None, buf)

    def _net_parts(
        self,
        role: str,
        sources: list[tuple[Any, int]],
        windows: CropWindows,
        rows: np.ndarray | None,
        router_crops: np.ndarray | None,
        hold: bool = False,
    ) -> list[tuple[Pending, int]]:
        """Enqueue ``role``'s net on the boxes in ``rows`` (None: all), on its stream; a pose
        net's host crops go through its :class:`BatchFiller` (``hold``: keep a remainder back)."""
        if self._frame_stream is not None:
            return self._device_parts(role, sources, windows, rows)
        hw = self.input_hw[role]
        if role in self._fillers and rows is not None:
            # the rows are written once, into the filler's pooled batch buffers: copied from the
            # router's crops when the net shares its input size, else cropped there directly
            idx = np.flatnonzero(rows)
            if router_crops is not None and hw == self.input_hw["router"]:
                write = copy_rows(router_crops, idx)
            else:
                write = self._crop_writer(hw, sources, windows, idx)
            return self._fillers[role].add(len(idx), write, hold)
        batch = router_crops if router_crops is not None and rows is None else None
        if batch is None:
            batch = self._make_crops(hw, sources, windows, rows)
        return self._enqueue(role, batch)

    def _crop_writer(
        self, hw: HW, sources: list[tuple[Any, int]], windows: CropWindows, idx: np.ndarray
    ) -> WriteRows:
        """Writes the crops at ``hw`` of the kept boxes ``idx[a:b]`` into a filler's buffer."""

        def write(out: np.ndarray, a: int, b: int) -> None:
            mask = np.zeros(len(windows.boxes), bool)
            mask[idx[a:b]] = True
            self._make_crops(hw, sources, windows, mask, out)

        return write

    def _device_parts(
        self, role: str, frames: list[tuple[Any, int]], windows: CropWindows, rows: np.ndarray | None
    ) -> list[tuple[Pending, int]]:
        """Crops made by the device's crop kernel from each view's uploaded frame straight into
        the net's input, view by view in chunks of the net's batch: only the 2x3 affines at the
        net's input size leave the host."""
        mats, step = windows.affines(self.input_hw[role]), self._chunk(role)
        runner, stream = self.runners[role], self.streams[role]
        parts: list[tuple[Pending, int]] = []
        start = 0
        for frame, count in frames:
            idx = np.arange(start, start + count)
            if rows is not None:
                idx = idx[rows[start : start + count]]
            start += count
            for i in range(0, len(idx), step):
                part = idx[i : i + step]
                parts.append((runner.infer_crops_async(frame, mats[part], NORM, stream), len(part)))
        return parts

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
        for role in NET_ROLES:  # this frame's held rows start now, both nets before either is waited on
            if self._fillers[role].holds(job.pending[role]):
                self._fillers[role].flush()
        for role, flag in (("small", False), ("large", True)):
            parts = job.pending[role]
            if not parts:
                continue
            outs_list = [p.wait() for p, _ in parts]
            self._update_cost(role, parts)
            td = time.perf_counter()
            outs = {k: np.concatenate([o[k] for o in outs_list]) for k in outs_list[0]}
            sel = np.flatnonzero(job.large == flag)
            centers, scales = job.windows.at(self.input_hw[role])
            people = decode_people(
                self.heads[role], outs, centers[sel], scales[sel], self.decode_ctx[role], self.prob
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
        roles = ("small",) if ratios is not None else NET_ROLES
        for role in roles:
            probe = np.zeros((4, 3, *self.input_hw[role]), np.float32)
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
