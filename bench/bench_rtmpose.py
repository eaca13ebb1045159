"""RTMPose in our pipeline against the same nets run raw in ONNX Runtime (issue #28 item 6).

The question: what does our pipeline (box hygiene, crops, scheduler, batching,
SimCC decode, merge) cost on top of the nets a user could run themselves, as
rtmlib does? One config, ``dyn-rtm-t-m`` (RTMPose-t routed to RTMPose-m, the
cheapest RTMPose pair to build), on the same boxes: the first ``BATCH`` (8)
detector boxes of each of coco-mini's 4 frames, so every batch on both sides
holds 8 crops.

Each round (``measure.rounds``: one discarded warm-up round, the order
reversed every round) times:

* ``raw:small`` / ``raw:large``: what a user running the net raw does (``RawNet``):
  the crops of those boxes with the runtime's own preprocessing, then a plain
  ``onnxruntime`` session (the same ONNX file and thread count the pipeline
  uses, opened outside it) in batches of 8: no scheduler, no decode, no merge;
* ``router``: the router on ready crops, frame by frame (dyn's ideal includes it);
* ``pipeline:small`` / ``pipeline:large`` / ``pipeline:dyn-p50``: the whole
  scheduler (``run_many``) from frames and boxes to decoded keypoints.

**Preprocessing is on both sides.** A raw user must make crops too, and on
RTMPose-t (about 0.36 GFLOPs a crop) the crops are a large share of the work,
so leaving them out of the raw side would gate the cost of warping images, not
our scheduling, batching, SimCC decode and merge. Both sides make them with the
same code (``CropMaker``, one reused buffer), so what differs is exactly what the
pipeline adds. The gated figures are, per round, on the process CPU clock (the
work done, blind to a neighbour's load; see bench/test_bench_pipeline.py):

* ``rtm-small_over_raw`` = raw small / pipeline small, and the same for the
  large net (``rtm-large_over_raw``): limit 0.93, target 0.95 (bench/baseline.json);
* ``rtm-dyn-p50_share_of_ideal`` = ((1-f) raw small + f raw large + router) /
  pipeline dyn-p50, f the fraction routed large (each raw side makes its
  crops, so the mixture counts them once): the same limit and target.

The same figures on the wall clock (``..._wall``) are INFO.

Artifacts: ``DYNPOSE_BENCH_RTM=DIR`` reuses a folder built by ``make
bench-engines`` (``python -m build.engines --config dyn-rtm-t-m --target cpu``);
otherwise the config is built once for the CPU target (fp32 only). The
pipeline and the raw sessions run the ``fp32`` models.

Run: python -m pytest bench/bench_rtmpose.py -m bench -q -s --benchmark-json=bench.json
"""

from __future__ import annotations

import dataclasses
import os
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bench.conditions import collect_conditions
from bench.data import build_artifacts, shared_data_dir
from bench.test_bench_pipeline import _policy_runner
from measure.rounds import Spread, interleaved_clocks, ratio_rounds
from measure.workload import Frame, load_frames, make_cropset
from runtime.artifacts.manifest import load_manifest, model_file
from runtime.backends.ort_session import open_session
from runtime.pose.pipeline import PipelineOptions, PosePipeline
from runtime.pose.preprocess import DEFAULT_MAX_BOXES, CropMaker, boxes_to_center_scale, sanitize_boxes

pytestmark = pytest.mark.bench

CONFIG = "dyn-rtm-t-m"
PRECISION = "fp32"
BATCH = 8
ROUNDS = int(os.environ.get("DYNPOSE_BENCH_RTM_ROUNDS", "21"))
WARMUP = 1
POLICIES = ("small", "large", "dyn-p50")


@pytest.fixture(scope="module")
def rtm_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("DYNPOSE_BENCH_RTM")
    if given:
        if not (Path(given) / "manifest.json").is_file():
            raise RuntimeError(
                f"DYNPOSE_BENCH_RTM={given} has no manifest.json; point it at a folder written by "
                f"python -m build.engines --config {CONFIG} --target cpu (OUT/{CONFIG}-cpu)"
            )
        return Path(given)
    return build_artifacts(
        tmp_path_factory.mktemp("rtm"),
        CONFIG,
        extra=("--calib-data", str(shared_data_dir() / "coco-mini")),
    )


@pytest.fixture(scope="module")
def frames() -> list[Frame]:
    """coco-mini's 4 frames with their first BATCH boxes each: every batch is a full batch of 8."""
    fr = load_frames(shared_data_dir() / "coco-mini")
    assert all(len(f.boxes) >= BATCH for f in fr), "coco-mini must hold >= 8 boxes per frame"
    return [dataclasses.replace(f, boxes=f.boxes[:BATCH], scores=f.scores[:BATCH]) for f in fr]


class RawNet:
    """What a user running the net raw does per frame: box hygiene and crops with the runtime's
    own preprocessing (``sanitize_boxes``, ``boxes_to_center_scale``, one reused ``CropMaker``
    writing into one reused buffer, as the scheduler does), then a plain ORT session on the
    ready crops in batches of BATCH. No scheduler, no decode, no merge."""

    def __init__(self, model: Path, threads: int, input_hw: tuple[int, int]) -> None:
        self.session = open_session(model, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.input_hw = input_hw
        self.maker = CropMaker(input_hw)
        self.buffer = np.empty((BATCH, 3, *input_hw), np.float32)

    def __call__(self, frames: list[Frame]) -> list[np.ndarray]:
        outs: list[np.ndarray] = []
        for f in frames:
            boxes, _, _ = sanitize_boxes(f.boxes, f.image.shape[:2], f.scores, None, DEFAULT_MAX_BOXES)
            centers, scales = boxes_to_center_scale(boxes, input_hw=self.input_hw)
            for j in range(0, len(boxes), BATCH):
                crops = self.maker(f.image, centers[j : j + BATCH], scales[j : j + BATCH], self.buffer)
                outs += self.session.run(None, {self.input_name: crops})
        return outs


def rtm_paired(secs: dict[str, list[float]], f_large: float, suffix: str = "") -> dict[str, list[float]]:
    """Per-round figures on one clock's seconds (see the module docstring)."""
    out: dict[str, list[float]] = {}
    for role in ("small", "large"):
        out[f"rtm-{role}_over_raw{suffix}"] = ratio_rounds(secs[f"raw:{role}"], secs[f"pipeline:{role}"])
    # each raw side makes its crops, so (1-f) raw small + f raw large counts the crops once
    ideal = [
        (1.0 - f_large) * s + f_large * lg + r
        for s, lg, r in zip(secs["raw:small"], secs["raw:large"], secs["router"])
    ]
    out[f"rtm-dyn-p50_share_of_ideal{suffix}"] = ratio_rounds(ideal, secs["pipeline:dyn-p50"])
    return out


def test_rtmpose_pipeline_against_raw_ort(benchmark, rtm_artifacts: Path, frames: list[Frame]) -> None:
    m = load_manifest(rtm_artifacts)
    threads = os.cpu_count() or 1  # what the pipeline's ORT backend uses by default
    pipe = PosePipeline(
        rtm_artifacts, PipelineOptions(policy="dyn", backend="ort", precision=PRECISION, max_batch=BATCH)
    )
    try:
        assert pipe.input_hw["small"] == pipe.input_hw["large"] == (256, 192)
        cropset = make_cropset(frames)
        n = len(cropset)
        assert n == BATCH * len(frames), "every kept box makes one crop"
        raw = {
            role: RawNet(model_file(rtm_artifacts, m, role, PRECISION), threads, pipe.input_hw[role])
            for role in ("small", "large")
        }
        scores = np.concatenate(
            [
                pipe.runners["router"]
                .infer(cropset.crops[cropset.frame_slice(i)], pipe.streams["router"])["score"]
                .reshape(-1)
                for i in range(len(frames))
            ]
        )
        # the policy runner of bench/test_bench_pipeline.py: k1/k2 refitted for p = 50 on these crops
        runs = {name: _policy_runner(pipe, frames, name, scores) for name in POLICIES}
        # Each gated ratio's parts sit next to each other: the raw net beside its pipeline, dyn
        # between the raw small net and the raw large net its ideal mixes.
        parts: dict[str, Callable[[], object]] = {
            "pipeline:small": runs["small"],
            "raw:small": lambda: raw["small"](frames),
            "router": lambda: [
                pipe.runners["router"].infer(cropset.crops[cropset.frame_slice(i)], pipe.streams["router"])
                for i in range(len(frames))
            ],
            "pipeline:dyn-p50": runs["dyn-p50"],
            "raw:large": lambda: raw["large"](frames),
            "pipeline:large": runs["large"],
        }
        fractions: list[float] = []

        def check(part: str, out: object) -> None:
            """Every timed result is a complete answer: all crops, finite keypoints and logits."""
            if part.startswith("pipeline:"):
                results = list(out)  # type: ignore[call-overload]
                routed = np.concatenate([r.route for r in results])
                assert len(routed) == n and (routed >= 0).all(), part
                kp = np.concatenate([r.keypoints for r in results])
                assert kp.shape[:2] == (n, 17) and np.isfinite(kp).all(), part
                if part == "pipeline:dyn-p50":
                    fractions.append(float((routed == 1).mean()))
            elif part.startswith("raw:"):
                outs = out  # per batch of 8: the net's outputs in order (simcc_x, simcc_y)
                assert sum(len(o) for o in outs[::2]) == n, part  # type: ignore[index]
                assert all(np.isfinite(o).all() for o in outs), part  # type: ignore[union-attr]

        clocks = benchmark.pedantic(
            lambda: interleaved_clocks(parts, ROUNDS, WARMUP, ("wall", "process"), check),
            rounds=1,
            iterations=1,
            warmup_rounds=0,
        )
        f_large = float(np.median(fractions))
        band = runs["dyn-p50"].band  # type: ignore[attr-defined]
        assert abs(f_large * n - round(band.large_fraction * n)) <= 1, "dyn-p50 routes as fitted"
        paired = rtm_paired(clocks["process"], f_large)
        paired.update(rtm_paired(clocks["wall"], f_large, "_wall"))
        rates = {k: n / statistics.median(v) for k, v in clocks["wall"].items()}
        benchmark.extra_info.update(
            {
                "stage": "rtm-rounds",
                "config": CONFIG,
                "nets": {role: m["models"][role]["arch"] for role in ("small", "large", "router")},
                "crops": n,
                "batch": BATCH,
                "rounds": ROUNDS,
                "warmup_rounds": WARMUP,
                "large_fraction": f_large,
                "seconds": clocks["wall"],
                "cpu_seconds": clocks["process"],
                "crops_per_s_wall": {k: round(v, 2) for k, v in rates.items()},
                "paired": paired,
                "figures": {k: Spread.of(v).as_dict() for k, v in paired.items()},
                "conditions": collect_conditions(
                    backend="ort", precision=PRECISION, batch=BATCH, threads=threads, config=CONFIG
                ),
            }
        )
    finally:
        pipe.close()
    print(
        f"\n[{CONFIG} {PRECISION}] {n} crops, batch {BATCH}, {ROUNDS} paired rounds; wall crops/s (median):"
    )
    print("  " + ", ".join(f"{k} {v:.1f}" for k, v in rates.items()))
    for k in sorted(paired):
        print(f"  {k:<34} {Spread.of(paired[k]).median:7.3f}  ({Spread.of(paired[k]).text()})")
