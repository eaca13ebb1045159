"""Batching across cameras: aggregate pose crops/s with 1, 2 and 4 copies of one clip.

What multi-camera mode changes is the pose stage: each tick sends every camera's
crops as ONE router / small / large submission (``PosePipeline.run_ticks``)
instead of one submission per camera frame. This benchmark measures exactly
that on the real clip ``street.mp4`` (5 frames, 960x540) with its people found
once by HOG (detection is per camera either way, so it is left out): C "cameras"
play the same frames in lockstep, and a tick holds C views of frame t.

Interleaved rounds inside one process (measure.rounds: C = 1, 2, 4, then 4, 2, 1,
...; one warm-up round dropped), the same crops in every round. The gated
figure ``multicam4_over_1`` is the median over rounds of the paired ratio of
the per-crop cost with one camera to that with four, on the process CPU clock
(the work per crop, all ORT threads counted, nearly blind to other processes'
load, as bench/baseline.json explains for the scheduler's share); the wall-clock
ratio is stored beside it (INFO). 1.0 means batching bought nothing on this
backend, below 1 that it costs.

Run: python -m pytest bench/bench_multicam.py -m bench -q -s
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.conditions import collect_conditions
from bench.data import artifacts_from_env, shared_data_dir
from measure.rounds import Spread, interleaved_clocks
from runtime.detectors.factory import HogDetector
from runtime.io.sources import Frame
from runtime.pose.pipeline import PipelineOptions, PosePipeline

CAMERAS = (1, 2, 4)
ROUNDS = int(os.environ.get("DYNPOSE_BENCH_MULTICAM_ROUNDS", "5"))
REPEAT = 1  # the clip once per round: 5 ticks


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


def _crops(pipe: PosePipeline, views: list, cams: int) -> int:
    """One round: the clip as ``cams`` cameras in lockstep, one submission per tick; crops posed."""
    ticks = [[v] * cams for v in views] * REPEAT
    return sum(len(r) for results in pipe.run_ticks(ticks) for r in results)


@pytest.mark.bench
def test_batching_across_cameras(benchmark, engines: Path) -> None:
    threads = int(os.environ.get("DYNPOSE_BENCH_THREADS", "2"))
    views = clip_views()
    n_view = sum(len(v[1]) for v in views)
    pipe = PosePipeline(
        engines, PipelineOptions(policy="dyn", backend="ort", backend_options={"threads": threads})
    )
    counts: dict[str, int] = {}

    def part(cams: int):
        def run() -> int:
            counts[str(cams)] = _crops(pipe, views, cams)
            return counts[str(cams)]

        return run

    try:
        times = interleaved_clocks(
            {str(c): part(c) for c in CAMERAS}, rounds=ROUNDS, warmup=1, clocks=("wall", "process")
        )
        benchmark.pedantic(part(4), rounds=1, iterations=1)
    finally:
        pipe.close()
    for c in CAMERAS:
        assert counts[str(c)] == c * n_view * REPEAT, "every camera's crops must come back"
    # per round: work (or time) per crop with one camera / with C cameras in one batch
    per_crop = {
        clk: {c: [t / (c * n_view * REPEAT) for t in times[clk][str(c)]] for c in CAMERAS}
        for clk in ("wall", "process")
    }
    paired = {}
    for c in CAMERAS[1:]:
        paired[f"multicam{c}_over_1"] = [
            a / b for a, b in zip(per_crop["process"][1], per_crop["process"][c])
        ]
        paired[f"multicam{c}_over_1_wall"] = [a / b for a, b in zip(per_crop["wall"][1], per_crop["wall"][c])]
    figures = {k: Spread.of(v).as_dict() for k, v in paired.items()}
    rate = {str(c): round(1.0 / statistics.median(per_crop["wall"][c]), 2) for c in CAMERAS}
    benchmark.extra_info.update(
        {
            "clip": "street.mp4 (5 frames) per round, HOG boxes found once",
            "rounds": ROUNDS,
            "repeat": REPEAT,
            "crops_per_tick": {str(c): c * n_view / len(views) for c in CAMERAS},
            "crops_per_s_wall_median": rate,
            "paired": paired,
            "figures": figures,
            "conditions": collect_conditions(backend="ort", precision="fp32", threads=threads),
        }
    )
    print(
        "\ncameras  crops/tick  crops/s (wall, median)  per-crop cost vs 1 camera: process CPU | wall "
        "(median [min, max] of paired rounds)"
    )
    for c in CAMERAS:
        rel = (
            "1.00 | 1.00"
            if c == 1
            else (
                f"{figures[f'multicam{c}_over_1']['median']:.2f} [{figures[f'multicam{c}_over_1']['min']:.2f}, "
                f"{figures[f'multicam{c}_over_1']['max']:.2f}] | {figures[f'multicam{c}_over_1_wall']['median']:.2f}"
            )
        )
        print(f"{c:7d}  {c * n_view / len(views):10.1f}  {rate[str(c)]:22.2f}  {rel}")
