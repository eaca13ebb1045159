"""Throughput of every stage and of the whole pipeline on coco-mini's 118 detector boxes.

One entry per stage (preprocessing, router, small net, large net) and per
pipeline policy (``small``, ``large``, ``dyn`` at p = 25 and p = 50), each on
the same 118 crops, in one pytest run, for every backend this machine has
(ONNX Runtime CPU always, TensorRT where it imports and a GPU is present).
``extra_info`` carries crops/s, the achieved large fraction and the run's
conditions; ``bench/gates.py`` turns the run's JSON into the gated figures
(dyn/large, dyn's share of its ideal mixture, time outside the networks).

p = 25 and p = 50 reuse one artifacts folder: k1/k2 are refitted with
``runtime.routing.fit_thresholds`` on the router's scores for these crops
(as ``build.engines`` does on its calibration crops) and set on the pipeline,
which is far cheaper than exporting the networks twice.

Artifacts: DYNPOSE_BENCH_ENGINES=DIR reuses a built folder (required for the
TensorRT backend: engines built with ``--target orin`` etc.); otherwise the
default config is built once for the CPU target.
Rounds: DYNPOSE_BENCH_ROUNDS (default 1; the min over rounds is reported).

Run: python -m pytest bench/test_bench_pipeline.py -m bench -q --benchmark-json=bench.json
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from bench.conditions import collect_conditions, gpu_model
from bench.workload import CropSet, Frame, load_frames, make_cropset, n_boxes
from runtime.pipeline import PipelineOptions, PosePipeline
from runtime.routing import fit_thresholds
from tests.conftest import artifacts_from_env, shared_data_dir

pytestmark = pytest.mark.bench

ROUNDS = int(os.environ.get("DYNPOSE_BENCH_ROUNDS", "1"))
MAX_BATCH = 32
PIPELINES = {"small": ("small", None), "large": ("large", None), "dyn-p25": ("dyn", 25.0), "dyn-p50": ("dyn", 50.0)}


def _backends() -> list[str]:
    """ORT always; TensorRT only where its runtime and a GPU really exist (never via stubs)."""
    have_trt = all(importlib.util.find_spec(m) is not None for m in ("tensorrt", "pycuda")) and gpu_model() is not None
    return ["ort", "trt"] if have_trt else ["ort"]


BACKENDS = _backends()


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if "trt" in BACKENDS and not os.environ.get("DYNPOSE_BENCH_ENGINES"):
        raise RuntimeError("TensorRT is present: set DYNPOSE_BENCH_ENGINES to an artifacts folder with engines "
                           "(python -m build.engines --target orin --out artifacts)")
    return artifacts_from_env("DYNPOSE_BENCH_ENGINES", tmp_path_factory.mktemp("bench_artifacts"))


@pytest.fixture(scope="module")
def frames() -> list[Frame]:
    fr = load_frames(shared_data_dir() / "coco-mini")
    assert n_boxes(fr) == 118, "coco-mini must hold its 118 detector boxes"
    return fr


@pytest.fixture(scope="module")
def cropset(frames: list[Frame]) -> CropSet:
    cs = make_cropset(frames)
    assert len(cs) == 118
    return cs


@pytest.fixture(scope="module", params=BACKENDS)
def pipe(request: pytest.FixtureRequest, engines: Path, cropset: CropSet):
    """One pipeline per backend, warmed up (first ORT/TRT runs allocate and autotune)."""
    p = PosePipeline(engines, PipelineOptions(policy="dyn", backend=request.param, max_batch=MAX_BATCH))
    p.backend_name = request.param
    for role in p.runners:
        p.runners[role].infer(cropset.crops[:4], p.streams[role])
    yield p
    p.close()


@pytest.fixture(scope="module")
def router_scores(pipe: PosePipeline, cropset: CropSet, frames: list[Frame]) -> np.ndarray:
    """Scored frame by frame, batched as the scheduler batches them, so a score sitting
    exactly on k2 comes out bit-identical inside the pipeline."""
    return np.concatenate([_run_net(pipe, "router", cropset.crops[cropset.frame_slice(i)])["score"].reshape(-1)
                           for i in range(len(frames))])


def _run_net(pipe: PosePipeline, role: str, crops: np.ndarray) -> dict[str, np.ndarray]:
    """The net alone, chunked as the scheduler chunks it."""
    cap = pipe.runners[role].max_batch or MAX_BATCH
    step = max(1, min(MAX_BATCH, cap))
    outs = [pipe.runners[role].infer_async(crops[i:i + step], pipe.streams[role]) for i in range(0, len(crops), step)]
    parts = [o.wait() for o in outs]
    return {k: np.concatenate([x[k] for x in parts]) for k in parts[0]}


def _conditions(pipe: PosePipeline) -> dict:
    m = pipe.manifest
    return collect_conditions(backend=pipe.backend_name, precision=pipe.options.precision, batch=MAX_BATCH,
                              threads=pipe.options.backend_options.get("threads") or os.cpu_count(),
                              config=m.get("config"), weights=m.get("weights"))


def _bench(benchmark, fn: Callable[[], object], crops: int, **info: object) -> object:
    out = benchmark.pedantic(fn, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    best = benchmark.stats.stats.min
    benchmark.extra_info.update({"crops": crops, "crops_per_s": crops / best, "rounds": ROUNDS, **info})
    print(f"\n{benchmark.name}: {crops / best:.2f} crops/s ({best:.2f} s for {crops} crops)")
    return out


def test_preprocess(benchmark, frames: list[Frame], pipe: PosePipeline) -> None:
    """Box hygiene + affine crops + normalisation for all 118 boxes (host side, any backend)."""
    cs = _bench(benchmark, lambda: make_cropset(frames), n_boxes(frames), stage="preprocess",
                conditions=_conditions(pipe))
    assert len(cs) == 118 and np.isfinite(cs.crops).all()


@pytest.mark.parametrize("role", ["small", "large"])
def test_net(benchmark, role: str, pipe: PosePipeline, cropset: CropSet) -> None:
    """One pose net alone on all crops (inference only): T_small / T_large of the ideal mixture."""
    m = pipe.manifest["models"][role]
    outs = _bench(benchmark, lambda: _run_net(pipe, role, cropset.crops), len(cropset), stage="net", role=role,
                  arch=m["arch"], gmacs=m["gmacs"], conditions=_conditions(pipe))
    first = next(iter(outs.values()))
    assert len(first) == len(cropset) and np.isfinite(first).all()


def test_router(benchmark, pipe: PosePipeline, cropset: CropSet) -> None:
    scores = _bench(benchmark, lambda: _run_net(pipe, "router", cropset.crops)["score"], len(cropset),
                    stage="router", gmacs=pipe.manifest["models"]["router"]["gmacs"], conditions=_conditions(pipe))
    assert scores.shape[0] == len(cropset) and np.isfinite(scores).all()


@pytest.mark.parametrize("name", list(PIPELINES))
def test_pipeline(benchmark, name: str, pipe: PosePipeline, frames: list[Frame], router_scores: np.ndarray) -> None:
    """The whole scheduler (``run_many``: frame t+1's crops and router overlap frame t's nets)."""
    policy, p = PIPELINES[name]
    saved = (pipe.options.policy, pipe.k1, pipe.k2, pipe.fraction)
    band = None
    if p is not None:
        band = fit_thresholds(router_scores, float(pipe.manifest.get("routing", {}).get("theta", 0.1)), p)
        pipe.k1, pipe.k2, pipe.fraction = band.k1, band.k2, band.large_fraction
    pipe.options.policy = policy
    try:
        results = _bench(benchmark, lambda: list(pipe.run_many((f.image, f.boxes, f.scores) for f in frames)),
                         n_boxes(frames), stage="pipeline", policy=policy, p=p,
                         k1=None if band is None else band.k1, k2=None if band is None else band.k2,
                         conditions=_conditions(pipe))
    finally:
        pipe.options.policy, pipe.k1, pipe.k2, pipe.fraction = saved
    routed = np.concatenate([r.route for r in results])
    n_large = int((routed == 1).sum())
    timers = {k: round(sum(r.timings_ms.get(k, 0.0) for r in results), 2)
              for k in ("preprocess", "router", "nets", "decode", "total")}
    benchmark.extra_info.update({"large_fraction": n_large / len(routed), "n_large": n_large,
                                 "timers_ms_last_round": timers})
    assert len(routed) == 118 and (routed >= 0).all()
    if band is not None:  # the refitted band routes these crops as fitted (within one crop)
        assert abs(n_large - round(band.large_fraction * len(routed))) <= 1
