"""The host decode's speed as ratios that do not move with the CPU model or the load.

The runtime decodes and takes the credible regions in C++ (runtime/heads/native.py, built at
install; the numpy code in runtime/heads/decode.py and credible.py is its reference and the
fallback where no compiler was found). The gates time the C++ against a frozen copy of itself
(``bench/native_frozen.py``), and the numpy references against their own frozen copies (INFO).

Parts timed in interleaved rounds (``measure.rounds``; ``DYNPOSE_BENCH_DECODE_ROUNDS``,
default 40, after one warm-up round); every ratio below is taken over pairs of consecutive
rounds (``measure.rounds.ratio_round_pairs``: the order ABC, CBA alternates, and the decode ran
~30 % slower right after its frozen copy than after the probe, so per-round ratios fell in two
bands and their median jumped between them; a planted scheduler regression once read 1.241
against the 1.24 limit that way):

* ``decode``: ``runtime.heads.decode.decode_probmaps`` (the C++) on 24 crops x 17 maps x 64x48
  (synthetic sparsemax maps, ~5 % live rows, like a trained ProbPose head);
* ``frozen``: the same maps through ``bench/rowmath_frozen.cpp``, the C++ as it stood when the
  gate was set: the yardstick, so a faster or slower core, memory bus or compiler, and a
  neighbour's cache pollution, move both sides alike;
* ``decode_reference`` / ``frozen_reference``: the numpy decode and ``bench/decode_frozen.py``
  (the numpy decode as it stood when its gate was set), INFO since the C++ took over;
* ``probe``: a fixed unit of numpy work, ``PROBE_LOOPS`` float32 multiply +
  add ufunc pairs over a 256 KiB block (INFO);
* ``copy``: a memory-bandwidth probe, ``np.copyto`` of a buffer the size of
  those maps, ``COPY_REPEATS`` times (INFO);
* ``naive`` and ``decode_naive_set``: the per-keypoint 2-D convolution loop
  (ProbPose's reference decode written plainly) and the numpy decode, both on
  4 crops: an INFO figure only (the loop runs in the interpreter and scipy, and its speed
  relative to numpy moves with the CPU model: 17x on an Intel Xeon, 22-31x on an AMD EPYC).

Gated (``bench/baseline.json``): ``decode_over_frozen``, the decode's time for the 24 crops
divided by the same round pair's frozen time, median over round pairs (lower is better; ~1.0
on any healthy machine, a 30 % slower decode gives ~1.3), read with the **thread CPU clock**
(``time.thread_time``), which does not advance while another process holds the core, so a CPU
hog barely touches either side. INFO: ``decode_reference_over_frozen`` (the numpy fallback over
its frozen copy), ``decode_reference_over_decode`` (numpy over C++: what the C++ saves),
``decode_in_probe_units`` and ``decode_bandwidth_share`` (achieved bytes/s of map input over the
copy probe's bytes/s). (The decode's share of the small net's time, wall clock, is gated from
the pipeline rounds in bench/test_bench_pipeline.py.)

Credible regions, timed in the same rounds on the same clock, on the calibrated path a
probability-map manifest runs by default (blur with ``REGION_SIGMA``, then the regions for the
nominal masses ``REGION_MASSES``, what ``--credible 0.5,0.9`` asks of the fixture's coverage map):

* ``regions``: ``runtime.heads.credible.calibrated_regions`` (the C++);
* ``regions_frozen``: the same through the frozen C++ (the yardstick);
* ``regions_reference`` / ``regions_reference_frozen``: the numpy blur + ``credible_regions`` and
  ``bench/credible_frozen.py`` (INFO, as for the decode);
* ``regions_sorted``: the code before issue #29 (``bench/credible_sorted.py``, a sort per map):
  INFO, the before/after figure (``regions_sorted_over_regions``).

Gated: ``regions_over_frozen``, median over round pairs of regions / frozen (~1.0 healthy, a 30 %
slower regions gives ~1.3; ``DYNPOSE_PLANT=regions`` proves it, tests/test_gates.py).

The GPU kernel's memory traffic per crop and the resulting bandwidth-bound
time on Orin AGX are recorded as a stated estimate (no GPU here to time it).

Run: python -m pytest bench/bench_decode.py -m bench -q -s
"""

from __future__ import annotations

import os
from math import ceil

import numpy as np
import pytest
from scipy.ndimage import convolve

from bench.credible_frozen import frozen_blur_maps, frozen_regions
from bench.credible_sorted import sorted_blur_maps, sorted_regions
from bench.decode_frozen import frozen_decode
from bench.native_frozen import frozen_library
from measure.rounds import Spread, interleaved, ratio_round_pairs
from measure.workload import synthetic_probmaps
from runtime.heads import credible as CR
from runtime.heads import decode as D
from runtime.heads import native

N_CROPS, K, H, W = 24, 17, 64, 48
NAIVE_CROPS = 4
COPY_REPEATS = 4
PROBE_LOOPS = 400
ROUNDS = int(os.environ.get("DYNPOSE_BENCH_DECODE_ROUNDS", "40"))
ORIN_AGX_BW = 204.8e9  # bytes/s, LPDDR5 peak
# the fixture manifest's calibration (sigma 8, nominal masses for 0.5 and 0.9: fixture-dyn's
# coverage map), so the regions are timed on the path a calibrated manifest runs
REGION_SIGMA = 8.0
REGION_MASSES = (0.0505, 0.8509)


def numpy_calibrated_regions(pm: np.ndarray) -> CR.Regions:
    """The numpy references' calibrated regions (the fallback): the blur, then the regions."""
    cm = CR.CoverageMap(np.array([0.5, 1.0]), np.array([0.5, 1.0]), REGION_SIGMA)
    return CR.credible_regions(cm.prepare(pm), REGION_MASSES)


_FROZEN_TAPS = D.oks_half_taps(D.oks_variances(D.COCO_SIGMAS, (H, W)))  # made once, as the runtime caches its


def frozen_native_decode(pm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The decode through the frozen C++ (same taps as the runtime's)."""
    return native.decode_probmaps(pm, *_FROZEN_TAPS, lib=frozen_library())


def frozen_native_regions(pm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The calibrated regions through the frozen C++."""
    return native.regions(pm, REGION_MASSES, REGION_SIGMA, lib=frozen_library())


def kernel_bytes_per_crop(in_bytes: int = 4) -> int:
    """Global memory traffic of the fused decode kernel per crop.

    The map is read once into shared memory (sparsemax, both Gaussian passes and the
    argmax work there); only keypoints (2 floats) and a score leave per keypoint.
    """
    return K * H * W * in_bytes + K * (2 + 1) * 4


def _loop_decode(pm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-keypoint 2-D convolution, argmax and Newton step (the slow reference)."""
    sig = np.asarray(D.COCO_SIGMAS, dtype=np.float32).astype(np.float64)
    var = np.clip((2 * sig) ** 2 * np.sqrt((H / 1.25) * (W / 1.25)) * 2, 0.55, 3.0)
    kernels = []
    for s in var:
        r = ceil(3 * s)
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        g = np.exp(-(xx**2 + yy**2) / (2 * s))
        kernels.append(g / g.sum())
    coords = np.zeros((pm.shape[0], K, 2), np.float32)
    scores = np.zeros((pm.shape[0], K), np.float32)
    for n in range(pm.shape[0]):
        for k in range(K):
            e = convolve(pm[n, k], kernels[k], mode="reflect")
            y, x = np.unravel_index(e.argmax(), e.shape)
            dx = dy = 0.0
            if 0 < x < W - 1 and e[y, x + 1] + e[y, x - 1] - 2 * e[y, x] < 0:
                dx = -0.5 * (e[y, x + 1] - e[y, x - 1]) / (e[y, x + 1] + e[y, x - 1] - 2 * e[y, x])
            if 0 < y < H - 1 and e[y + 1, x] + e[y - 1, x] - 2 * e[y, x] < 0:
                dy = -0.5 * (e[y + 1, x] - e[y - 1, x]) / (e[y + 1, x] + e[y - 1, x] - 2 * e[y, x])
            coords[n, k] = (x + dx, y + dy)
            scores[n, k] = e[y, x]
    return coords, scores


def _copy_probe(src: np.ndarray, dst: np.ndarray) -> None:
    for _ in range(COPY_REPEATS):
        np.copyto(dst, src)


def numpy_probe(block: np.ndarray, acc: np.ndarray) -> None:
    """The unit of numpy work the decode is measured in (float32 multiply-add over an L2-sized block)."""
    half = np.float32(0.5)
    for _ in range(PROBE_LOOPS):
        np.multiply(block, half, out=acc)
        np.add(acc, block, out=acc)


@pytest.mark.bench
def test_decode_speed(benchmark):
    pm = synthetic_probmaps(N_CROPS)
    small_set = np.ascontiguousarray(pm[:NAIVE_CROPS])
    assert native.available(), f"the decode benchmarks time the C++ build, but: {native.status()}"
    # Same answer as the loop (away from float32/float64 near-ties) before any timing; the C++,
    # its frozen copy and the numpy reference bit for bit.
    ref_coords, _ = _loop_decode(pm)
    coords, scores = D.decode_probmaps(pm)
    assert np.mean(np.abs(coords - ref_coords).max(-1) < 1e-3) > 0.98
    for other in (frozen_native_decode(pm), D.decode_probmaps_reference(pm)):
        assert np.array_equal(coords, other[0], equal_nan=True) and np.array_equal(scores, other[1])
    got = CR.calibrated_regions(pm, REGION_MASSES, REGION_SIGMA)
    np.testing.assert_array_equal(got.n_pixels, frozen_native_regions(pm)[0])
    for ref in (
        frozen_regions(frozen_blur_maps(pm, REGION_SIGMA), REGION_MASSES),
        sorted_regions(sorted_blur_maps(pm, REGION_SIGMA), REGION_MASSES),
    ):
        assert np.abs(got.n_pixels - ref[0]).max() <= 1  # C++ against numpy: within one pixel

    dst = np.empty_like(pm)
    block = np.random.default_rng(1).random((64, 1024), dtype=np.float32)
    acc = np.empty_like(block)
    parts = {
        "frozen": lambda: frozen_native_decode(pm),
        "decode": lambda: D.decode_probmaps(pm),
        "frozen_reference": lambda: frozen_decode(pm),
        "decode_reference": lambda: D.decode_probmaps_reference(pm),
        "probe": lambda: numpy_probe(block, acc),
        "copy": lambda: _copy_probe(pm, dst),
        "naive": lambda: _loop_decode(small_set),
        "decode_naive_set": lambda: D.decode_probmaps_reference(small_set),
        "regions": lambda: CR.calibrated_regions(pm, REGION_MASSES, REGION_SIGMA),
        "regions_frozen": lambda: frozen_native_regions(pm),
        "regions_reference": lambda: numpy_calibrated_regions(pm),
        "regions_reference_frozen": lambda: frozen_regions(frozen_blur_maps(pm, REGION_SIGMA), REGION_MASSES),
        "regions_sorted": lambda: sorted_regions(sorted_blur_maps(pm, REGION_SIGMA), REGION_MASSES),
    }
    times = benchmark.pedantic(lambda: interleaved(parts, ROUNDS, 1, "thread"), rounds=1, iterations=1)
    paired = {
        "decode_over_frozen": ratio_round_pairs(times["decode"], times["frozen"]),
        "decode_reference_over_frozen": ratio_round_pairs(
            times["decode_reference"], times["frozen_reference"]
        ),
        "decode_reference_over_decode": ratio_round_pairs(times["decode_reference"], times["decode"]),
        "decode_in_probe_units": ratio_round_pairs(times["decode"], times["probe"]),
        "decode_bandwidth_share": [c / (COPY_REPEATS * d) for c, d in zip(times["copy"], times["decode"])],
        "decode_numpy_over_naive": ratio_round_pairs(times["naive"], times["decode_naive_set"]),
        "regions_over_frozen": ratio_round_pairs(times["regions"], times["regions_frozen"]),
        "regions_reference_over_frozen": ratio_round_pairs(
            times["regions_reference"], times["regions_reference_frozen"]
        ),
        "regions_sorted_over_regions": ratio_round_pairs(times["regions_sorted"], times["regions"]),
    }
    figures = {k: Spread.of(v) for k, v in paired.items()}
    nbytes = pm.nbytes
    dec, cpy = float(np.median(times["decode"])), float(np.median(times["copy"])) / COPY_REPEATS
    b32, b16 = kernel_bytes_per_crop(4), kernel_bytes_per_crop(2)
    benchmark.extra_info.update(
        {
            "crops": N_CROPS,
            "rounds": ROUNDS,
            "warmup_rounds": 1,
            "clock": "thread",
            "seconds": times,
            "paired": paired,
            "figures": {k: v.as_dict() for k, v in figures.items()},
            "map_bytes": nbytes,
            "decode_ms_per_crop": dec / N_CROPS * 1e3,
            "regions_ms_per_crop": float(np.median(times["regions"])) / N_CROPS * 1e3,
            "regions_sorted_ms_per_crop": float(np.median(times["regions_sorted"])) / N_CROPS * 1e3,
            "decode_gb_per_s": nbytes / dec / 1e9,
            "copy_gb_per_s": nbytes / cpy / 1e9,
            "kernel_bytes_per_crop_fp32": b32,
            "kernel_bytes_per_crop_fp16": b16,
            "orin_agx_bw_bound_us_per_crop_fp32 (estimate)": b32 / ORIN_AGX_BW * 1e6,
            "orin_agx_bw_bound_us_118_crops_fp32 (estimate)": 118 * b32 / ORIN_AGX_BW * 1e6,
            "orin_agx_bw_bound_us_118_crops_fp16 (estimate)": 118 * b16 / ORIN_AGX_BW * 1e6,
        }
    )
    bw, units, fro = (
        figures["decode_bandwidth_share"],
        figures["decode_in_probe_units"],
        figures["decode_over_frozen"],
    )
    reg, before = figures["regions_over_frozen"], figures["regions_sorted_over_regions"]
    print(
        f"\nnumpy references over their frozen copies (info): decode "
        f"{figures['decode_reference_over_frozen'].median:.3f}, regions "
        f"{figures['regions_reference_over_frozen'].median:.3f}; the numpy decode takes "
        f"{figures['decode_reference_over_decode'].median:.2f}x the C++'s time"
    )
    print(
        f"\nregions over their frozen copy {reg.median:.3f} ({reg.text('.3f')}); "
        f"{float(np.median(times['regions'])) / N_CROPS * 1e3:.3f} ms/crop, the sorted code "
        f"{before.median:.2f}x that ({before.text('.2f')}, info; calibrated: sigma {REGION_SIGMA:g})"
    )
    print(
        f"\ndecode over its frozen copy {fro.median:.3f} ({fro.text('.3f')}); in numpy probe units "
        f"{units.median:.3f} ({units.text('.3f')}, info)"
        f"\ndecode {dec / N_CROPS * 1e3:.3f} ms/crop ({nbytes / dec / 1e9:.2f} GB/s of maps) vs copy "
        f"{nbytes / cpy / 1e9:.2f} GB/s: share {bw.median:.4f} ({bw.text('.4f')}); numpy over naive loop "
        f"{figures['decode_numpy_over_naive'].median:.1f}x (info); kernel {b32} B/crop fp32 -> "
        f"{118 * b32 / ORIN_AGX_BW * 1e6:.0f} us for 118 crops on Orin AGX (bandwidth-bound estimate)"
    )
