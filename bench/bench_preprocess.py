"""Preprocessing's speed as a ratio to its frozen per-crop version (issue #29 item 5).

Parts timed in interleaved rounds (``measure.rounds``; ``DYNPOSE_BENCH_PREPROCESS_ROUNDS``,
default 25, after one warm-up round), each part ``REPEATS`` calls on the same input:

* ``preprocess``: ``runtime.pose.preprocess.CropMaker`` (what the pipeline runs) making
  ``N_CROPS`` 256x192 crops of one 640x480 frame (a real coco-mini photo, resized) into a
  preallocated [N,3,256,192] float32 buffer;
* ``frozen``: ``bench.preprocess_frozen.frozen_make_crops``, make_crops as it stood before
  the one-pass rewrite (per crop: warp, float copy, normalise, transpose), same frame, same
  boxes, same buffer: the yardstick. Both warp with OpenCV alike, so a faster or slower CPU or
  OpenCV build moves both sides.

Gated (``bench/baseline.json``): ``preprocess_over_frozen``, the median over rounds of the
per-round ratio preprocess / frozen, **process CPU clock** (OpenCV may warp on its worker
threads, which the thread clock would not see; the process clock counts all of it and does
not advance while another process holds the cores). Limit <= 0.5: the issue's target, half of
the old per-crop cost. ``DYNPOSE_PLANT=preprocess`` (bench/plant.py) adds CPU work to every
``CropMaker`` call and must fail it (tests/test_gates.py). Per-crop milliseconds of both
sides, wall and CPU, are stored as INFO.

Run: python -m pytest bench/bench_preprocess.py -m bench -q -s
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from bench.data import shared_data_dir
from bench.preprocess_frozen import frozen_make_crops
from measure.rounds import Spread, interleaved_clocks, ratio_rounds
from runtime.pose.preprocess import CropMaker, boxes_to_center_scale

N_CROPS = 8
REPEATS = 4
FRAME_HW = (480, 640)
ROUNDS = int(os.environ.get("DYNPOSE_BENCH_PREPROCESS_ROUNDS", "25"))


def frame_and_boxes() -> tuple[np.ndarray, np.ndarray]:
    """A 640x480 real photo and N_CROPS person-sized boxes on it, some across the border."""
    img = cv2.imread(str(shared_data_dir() / "coco-mini" / "000000000785.jpg"))
    img = cv2.resize(img, (FRAME_HW[1], FRAME_HW[0]), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(29)
    wh = rng.uniform([40, 100], [220, 420], size=(N_CROPS, 2))
    xy = rng.uniform([-30, -30], [FRAME_HW[1] - 40, FRAME_HW[0] - 60], size=(N_CROPS, 2))
    return img, np.concatenate([xy, wh], axis=1).astype(np.float32)


@pytest.mark.bench
def test_preprocess_speed(benchmark):
    img, boxes = frame_and_boxes()
    centers, scales = boxes_to_center_scale(boxes)
    maker = CropMaker((256, 192))
    out = np.empty((N_CROPS, 3, 256, 192), np.float32)
    ref = np.empty_like(out)
    frozen_make_crops(img, centers, scales, out=ref)
    np.testing.assert_array_equal(maker(img, centers, scales, out=out), ref)  # same tensor first

    def live() -> None:
        for _ in range(REPEATS):
            maker(img, centers, scales, out=out)

    def frozen() -> None:
        for _ in range(REPEATS):
            frozen_make_crops(img, centers, scales, out=ref)

    parts = {"preprocess": live, "frozen": frozen}
    clocks = benchmark.pedantic(
        lambda: interleaved_clocks(parts, ROUNDS, 1, ("process", "wall")), rounds=1, iterations=1
    )
    cpu, wall = clocks["process"], clocks["wall"]
    paired = {
        "preprocess_over_frozen": ratio_rounds(cpu["preprocess"], cpu["frozen"]),
        "preprocess_over_frozen_wall": ratio_rounds(wall["preprocess"], wall["frozen"]),
    }
    figures = {k: Spread.of(v) for k, v in paired.items()}
    per_crop = N_CROPS * REPEATS

    def ms(x: list[float]) -> float:
        return float(np.median(x)) / per_crop * 1e3

    info = {
        "ms_per_crop_cpu": {k: ms(v) for k, v in cpu.items()},
        "ms_per_crop_wall": {k: ms(v) for k, v in wall.items()},
    }
    benchmark.extra_info.update(
        {
            "crops": N_CROPS,
            "repeats": REPEATS,
            "rounds": ROUNDS,
            "warmup_rounds": 1,
            "clock": "process",
            "cv2_threads": cv2.getNumThreads(),
            "seconds": cpu,
            "seconds_wall": wall,
            "paired": paired,
            "figures": {k: v.as_dict() for k, v in figures.items()},
            **info,
        }
    )
    g, w = figures["preprocess_over_frozen"], figures["preprocess_over_frozen_wall"]
    print(
        f"\npreprocess over its frozen per-crop copy {g.median:.3f} ({g.text('.3f')}), wall {w.median:.3f} "
        f"({w.text('.3f')}, info); ms/crop cpu {info['ms_per_crop_cpu']['preprocess']:.3f} vs "
        f"{info['ms_per_crop_cpu']['frozen']:.3f}, wall {info['ms_per_crop_wall']['preprocess']:.3f} vs "
        f"{info['ms_per_crop_wall']['frozen']:.3f} ({N_CROPS} crops of a 640x480 frame, cv2 threads "
        f"{cv2.getNumThreads()})"
    )
