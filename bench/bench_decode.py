"""Gate: the vectorised numpy decode vs a per-keypoint 2-D convolution loop.

118 crops x 17 keypoints x 64x48 is the real box count of coco-mini's detections. The
loop is the decode as ProbPose's reference code writes it (one scipy 2-D convolution
per keypoint map). The vectorised decode must be >= 20x faster. The GPU kernel's
memory traffic per crop and the resulting bandwidth-bound time on Orin AGX are recorded
as a stated estimate (no GPU here to time it).

Run: python -m pytest bench/bench_decode.py -m bench -q
"""
from __future__ import annotations

import time
from math import ceil

import numpy as np
import pytest
from scipy.ndimage import convolve

from runtime import decode as D

N_CROPS, K, H, W = 118, 17, 64, 48
MIN_SPEEDUP = 20.0
ORIN_AGX_BW = 204.8e9  # bytes/s, LPDDR5 peak


def kernel_bytes_per_crop(in_bytes: int = 4) -> int:
    """Global memory traffic of the fused decode kernel per crop.

    The map is read once into shared memory (sparsemax, both Gaussian passes and the
    argmax work there); only keypoints (2 floats) and a score leave per keypoint.
    """
    return K * H * W * in_bytes + K * (2 + 1) * 4


def _loop_decode(pm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-keypoint 2-D convolution, argmax and Newton step (the slow baseline)."""
    sig = np.asarray(D.COCO_SIGMAS, dtype=np.float32).astype(np.float64)
    var = np.clip((2 * sig) ** 2 * np.sqrt((H / 1.25) * (W / 1.25)) * 2, 0.55, 3.0)
    kernels = []
    for s in var:
        r = ceil(3 * s)
        yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
        g = np.exp(-(xx ** 2 + yy ** 2) / (2 * s))
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


@pytest.mark.bench
def test_vectorised_decode_beats_loop(benchmark):
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(N_CROPS, K, H * W)) * rng.uniform(0.05, 8.0, size=(N_CROPS, K, 1))).astype(np.float32)
    pm = D.sparsemax(logits).reshape(N_CROPS, K, H, W)

    loop_times = []
    for _ in range(2):
        t0 = time.perf_counter()
        ref_coords, _ = _loop_decode(pm)
        loop_times.append(time.perf_counter() - t0)
    coords, _ = benchmark.pedantic(D.decode_probmaps, args=(pm,), rounds=7, iterations=1, warmup_rounds=1)

    # Same answer (away from float32/float64 near-ties) before comparing speed.
    assert np.mean(np.abs(coords - ref_coords).max(-1) < 1e-3) > 0.98

    vec = benchmark.stats.stats.min
    speedup = min(loop_times) / vec
    b32, b16 = kernel_bytes_per_crop(4), kernel_bytes_per_crop(2)
    benchmark.extra_info.update({
        "crops": N_CROPS,
        "loop_min_s": min(loop_times),
        "vectorised_min_s": vec,
        "speedup": speedup,
        "kernel_bytes_per_crop_fp32": b32,
        "kernel_bytes_per_crop_fp16": b16,
        "orin_agx_bw_bound_us_per_crop_fp32 (estimate)": b32 / ORIN_AGX_BW * 1e6,
        "orin_agx_bw_bound_us_118_crops_fp32 (estimate)": N_CROPS * b32 / ORIN_AGX_BW * 1e6,
        "orin_agx_bw_bound_us_118_crops_fp16 (estimate)": N_CROPS * b16 / ORIN_AGX_BW * 1e6,
    })
    print(f"\nloop {min(loop_times) * 1e3:.0f} ms, vectorised {vec * 1e3:.1f} ms, speedup {speedup:.1f}x; "
          f"kernel {b32} B/crop fp32 -> {N_CROPS * b32 / ORIN_AGX_BW * 1e6:.0f} us for {N_CROPS} crops on Orin AGX "
          f"(bandwidth-bound estimate)")
    assert speedup >= MIN_SPEEDUP, f"vectorised decode only {speedup:.1f}x faster than the loop (gate {MIN_SPEEDUP}x)"
