"""Batching across cameras: aggregate pose crops/s with 1, 2 and 4 copies of one clip.

What multi-camera mode changes is the pose stage: each tick sends every camera's
crops as ONE router / small / large submission (``PosePipeline.run_ticks``)
instead of one submission per camera frame. This benchmark measures exactly
that on the real clip ``street.mp4`` (5 frames, 960x540) with its people found
once by HOG (detection is per camera either way, so it is left out): C "cameras"
play the same frames in lockstep, and a tick holds C views of frame t.

Interleaved rounds inside one process (C = 1, 2, 4, 1, 2, 4, ...; one warm-up
round dropped), wall clock (the pipeline runs the nets on worker threads, so
process CPU time would count both nets' threads and miss waits), the same crops
in every round. The gated figure is the median over rounds of the paired ratio
crops/s(C=4) / crops/s(C=1) with its min/max; 1.0 means batching bought
nothing, below 1 that it costs (bench/baseline.json: ``multicam4_over_1``).

Run: python -m pytest bench/bench_multicam.py -m bench -q -s
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.conditions import collect_conditions
from runtime.detectors import HogDetector
from runtime.pipeline import PipelineOptions, PosePipeline
from runtime.sources import Frame
from tests.conftest import artifacts_from_env, shared_data_dir

CAMERAS = (1, 2, 4)
ROUNDS = int(os.environ.get("DYNPOSE_BENCH_MULTICAM_ROUNDS", "6"))
REPEAT = 2     # the clip twice per round: 10 ticks


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return artifacts_from_env("DYNPOSE_BENCH_ENGINES", tmp_path_factory.mktemp("mc_artifacts"))


def clip_views() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    cap = cv2.VideoCapture(str(shared_data_dir() / "video" / "street.mp4"))
    hog, views = HogDetector(), []
    i = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        boxes, scores = hog(Frame(i, 0.0, 0.0, img))
        views.append((img, boxes, scores))
        i += 1
    cap.release()
    assert len(views) == 5 and sum(len(v[1]) for v in views) > 0
    return views


def _one_round(pipe: PosePipeline, views: list, cams: int) -> tuple[float, int]:
    ticks = [[v] * cams for v in views] * REPEAT
    t = time.perf_counter()
    n = sum(len(r) for results in pipe.run_ticks(ticks) for r in results)
    return time.perf_counter() - t, n


@pytest.mark.bench
def test_batching_across_cameras(benchmark, engines: Path) -> None:
    threads = int(os.environ.get("DYNPOSE_BENCH_THREADS", "2"))
    views = clip_views()
    pipe = PosePipeline(engines, PipelineOptions(policy="dyn", backend="ort", backend_options={"threads": threads}))
    try:
        for c in CAMERAS:                                    # warm-up: allocations, first-run kernels
            _one_round(pipe, views, c)
        rates: dict[int, list[float]] = {c: [] for c in CAMERAS}
        for _ in range(ROUNDS):
            for c in CAMERAS:
                sec, n = _one_round(pipe, views, c)
                rates[c].append(n / sec)
        benchmark.pedantic(lambda: _one_round(pipe, views, 4), rounds=1, iterations=1)
    finally:
        pipe.close()
    paired = {c: [r / r1 for r, r1 in zip(rates[c], rates[1])] for c in CAMERAS[1:]}
    med = {c: statistics.median(rates[c]) for c in CAMERAS}
    crops_per_tick = {c: c * sum(len(v[1]) for v in views) / len(views) for c in CAMERAS}
    benchmark.extra_info.update({
        "clip": "street.mp4 (5 frames) x2 per round, HOG boxes", "rounds": ROUNDS, "clock": "wall",
        "crops_per_tick": crops_per_tick,
        "crops_per_s_median": {str(c): round(v, 2) for c, v in med.items()},
        **{f"ratio_{c}_over_1": round(statistics.median(p), 4) for c, p in paired.items()},
        **{f"ratio_{c}_over_1_min": round(min(p), 4) for c, p in paired.items()},
        **{f"ratio_{c}_over_1_max": round(max(p), 4) for c, p in paired.items()},
        "conditions": collect_conditions(backend="ort", precision="fp32", threads=threads),
    })
    print("\ncameras  crops/tick  crops/s (median)  vs 1 camera (median [min, max] of paired rounds)")
    for c in CAMERAS:
        rel = "1.00" if c == 1 else (f"{statistics.median(paired[c]):.2f} "
                                     f"[{min(paired[c]):.2f}, {max(paired[c]):.2f}]")
        print(f"{c:7d}  {crops_per_tick[c]:10.1f}  {med[c]:16.1f}  {rel}")
