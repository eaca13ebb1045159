"""Sparsemax and both decodes on the GPU against the numpy reference, random and real maps.

Cases mirror tests/test_kernels.py (which checks the same source on the CPU):
heatmap and probability-map decodes must give identical keypoints and scores,
the fused logits path (sparsemax inside) the same pixel within 1e-4, sparsemax
within 1e-6. A 96x72 case exercises the >48 KB shared-memory opt-in where the
device allows it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from runtime.heads import decode as D
from runtime.heads.registry import HEATMAP, PROBMAP, plugin_mode

from .checks import compare_crops, compare_decode, compare_regions, compare_sparsemax
from .gpu import GpuKernels

F32 = np.float32
HM, PM = plugin_mode(HEATMAP), plugin_mode(PROBMAP)  # the kernels' modes for the two map heads
SMEM_SCRATCH, MAX_PIXELS = 2048, 8192  # kernels/dynpose_kernels.h: kScratchBytes, kMaxDecodePixels


def decode_smem_bytes(h: int, w: int) -> int:
    """kernels/dynpose_kernels.h decode_smem_bytes, for choosing which sizes this device can run."""
    return SMEM_SCRATCH + 8 * h * w


def random_logits(seed: int, n: int = 8, hw: tuple[int, int] = (64, 48)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 17, *hw)) * rng.uniform(0.3, 8.0, size=(n, 17, 1, 1))).astype(F32)


def gt_heatmaps(coco_mini: Path, hw: tuple[int, int] = (64, 48), sigma: float = 2.0) -> np.ndarray:
    """MSRA-style Gaussian maps at the annotated keypoints of coco-mini's people (real poses).

    Used when no built artifacts are given: the geometry (peaks, visibility, crowding of
    17 joints in a box) is real, only the network is missing.
    """
    ann = json.loads((coco_mini / "person_keypoints.json").read_text())
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    maps = []
    for a in ann["annotations"]:
        x0, y0, bw, bh = a["bbox"]
        k = np.asarray(a["keypoints"], np.float64).reshape(17, 3)
        m = np.zeros((17, h, w), np.float64)
        for j, (x, y, v) in enumerate(k):
            if v > 0 and bw > 0 and bh > 0:
                cx, cy = (x - x0) / bw * w, (y - y0) / bh * h
                m[j] = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma * sigma))
        maps.append(m)
    return np.stack(maps).astype(F32)


def _decode_cases(gk: GpuKernels, z: np.ndarray, tag: str) -> tuple[dict[str, Any], dict[str, Any]]:
    res, t = {}, {}
    n = z.shape[0]
    kp, sc, ms = gk.decode(z, HM)
    res[f"{tag}/heatmap"] = compare_decode(kp, sc, *D.decode_heatmaps(z), exact=True)
    t[f"{tag}/heatmap"] = {"ms": ms, "us_per_crop": 1e3 * ms / n}
    rows = z.reshape(n * 17, -1)
    p, ms = gk.sparsemax(rows)
    res[f"{tag}/sparsemax"] = compare_sparsemax(p, D.sparsemax(rows))
    t[f"{tag}/sparsemax"] = {"ms": ms, "us_per_crop": 1e3 * ms / n}
    pm = D.sparsemax(rows).reshape(z.shape)
    kp, sc, ms = gk.decode(pm, PM, D.COCO_SIGMAS)
    res[f"{tag}/probmap"] = compare_decode(kp, sc, *D.decode_probmaps(pm), exact=True)
    t[f"{tag}/probmap"] = {"ms": ms, "us_per_crop": 1e3 * ms / n}
    kp, sc, ms = gk.decode(z, PM, D.COCO_SIGMAS, normalize=True, temperature=0.5)
    res[f"{tag}/logits"] = compare_decode(kp, sc, *D.decode_logits(z, temperature=0.5), exact=False)
    t[f"{tag}/logits"] = {"ms": ms, "us_per_crop": 1e3 * ms / n}
    return res, t


def gpu_path_cases(gk: GpuKernels, maps: np.ndarray, coco_mini: Path | None) -> tuple[dict, dict]:
    """The TensorRT path's kernels: decode with credible regions (random sparsemax maps and the
    real-pose maps normalised to probabilities) against runtime.heads.credible, and the crop
    kernel against make_crops on coco-mini's photos (skipped without them)."""
    from runtime.heads.credible import credible_regions

    res: dict[str, Any] = {}
    t: dict[str, Any] = {}
    z = random_logits(6, n=8)
    pm = D.sparsemax(z.reshape(8 * 17, -1)).reshape(z.shape)
    tot = maps.sum((2, 3), keepdims=True)
    real = np.divide(maps, tot, out=np.zeros_like(maps), where=tot > 0).astype(F32)
    for tag, m in (("random", pm), ("real", real)):
        qs = (0.5, 0.9)
        _, _, pix, ell, ms = gk.decode_regions(m, qs, D.COCO_SIGMAS)
        ref = credible_regions(m, qs)
        res[f"{tag}/regions"] = compare_regions(pix, ell, ref.n_pixels, ref.ellipse)
        t[f"{tag}/regions"] = {"ms": ms, "us_per_crop": 1e3 * ms / len(m)}
    if coco_mini is not None:
        import cv2

        from runtime.pose.preprocess import MEAN, STD, boxes_to_center_scale, crop_affines, make_crops

        ann = json.loads((coco_mini / "person_keypoints.json").read_text())
        for im in ann["images"][:2]:
            frame = cv2.imread(str(coco_mini / im["file_name"]))
            boxes = np.asarray([a["bbox"] for a in ann["annotations"] if a["image_id"] == im["id"]], F32)
            c, sc = boxes_to_center_scale(boxes)
            ref_c = make_crops(frame, c, sc)
            got, ms = gk.crops(frame, crop_affines(c, sc), ref_c.shape[2:], MEAN, STD)
            res[f"crops/{im['file_name']}"] = compare_crops(got, ref_c)
            t[f"crops/{im['file_name']}"] = {"ms": ms, "us_per_crop": 1e3 * ms / len(boxes)}
    return res, t


def run_kernel_stage(
    gk: GpuKernels,
    smem_optin: int,
    real_maps: Callable[[], tuple[str, np.ndarray]],
    coco_mini: Path | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """All kernel cases; returns (results by case, timings by case)."""
    results, timings = _decode_cases(gk, random_logits(2, n=16), "random")
    z16 = random_logits(3, n=4).astype(np.float16)
    kp, sc, _ = gk.decode(z16, HM)
    results["random/heatmap_fp16"] = compare_decode(kp, sc, *D.decode_heatmaps(z16.astype(F32)), exact=True)
    bad = random_logits(4, n=2)
    bad[0, 3, 5, 5] = np.nan
    bad[1, 0, 0, 0] = np.inf
    kp, sc, _ = gk.decode(bad, HM)
    results["random/invalid_maps"] = compare_decode(kp, sc, *D.decode_heatmaps(bad), exact=True)
    big = (96, 72)
    if decode_smem_bytes(*big) <= smem_optin:  # 57,344 B: needs the opt-in the launcher makes
        zb = random_logits(5, n=4, hw=big)
        kp, sc, ms = gk.decode(zb, HM)
        results["random/heatmap_96x72"] = compare_decode(kp, sc, *D.decode_heatmaps(zb), exact=True)
        pmb = D.sparsemax(zb.reshape(4 * 17, -1)).reshape(zb.shape)
        kp, sc, ms = gk.decode(pmb, PM, D.COCO_SIGMAS)
        results["random/probmap_96x72"] = compare_decode(kp, sc, *D.decode_probmaps(pmb), exact=True)
        timings["random/probmap_96x72"] = {"ms": ms, "us_per_crop": 1e3 * ms / 4}
    tag, maps = real_maps()
    res, t = _decode_cases(gk, maps, tag)
    results.update(res)
    timings.update(t)
    res, t = gpu_path_cases(gk, maps, coco_mini)
    results.update(res)
    timings.update(t)
    return results, timings
