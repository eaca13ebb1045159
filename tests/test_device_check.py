"""tools.device_check's CPU-side logic: skip rules, comparisons, report; and its no-GPU path.

The GPU stages cannot run here (no GPU); the kernel stage is driven end-to-end by the
kernels' own source built for the host (kernels.host_build), which has the same calls as
the GPU shim, so case selection, references and verdicts are exercised for real.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kernels.host_build import HostKernels
from runtime.heads import decode as D
from tools.device_check import checks as C
from tools.device_check.kernel_stage import decode_smem_bytes, gt_heatmaps, random_logits, run_kernel_stage

REPO = Path(__file__).resolve().parents[1]
ALL = {
    "nvcc": "/usr/bin/nvcc",
    "gpu": {"gpu": "X", "sm": "8.7", "smem_optin": 166912},
    "tensorrt": "10.3.0",
    "pycuda": True,
    "trt_headers": "/usr/include",
    "cmake": "/usr/bin/cmake",
}


def _status(env) -> dict[str, str]:
    return {s.name: s.status for s in C.plan_stages(env)}


def test_skip_rules():
    assert _status(ALL) == dict.fromkeys(("kernels", "trt_vs_ort", "stream_overlap", "fused_plugin"), "run")
    assert _status({**ALL, "nvcc": None})["kernels"] == "fail"
    st = C.plan_stages({**ALL, "gpu": {"error": "CUDA error 100"}})
    assert st[0].status == "fail" and "CUDA error 100" in st[0].reason
    assert {s.status for s in st[1:]} == {"skip"}
    st = C.plan_stages({**ALL, "tensorrt": None})
    assert st[0].status == "run" and all(s.status == "skip" and "kernels-only" in s.reason for s in st[1:])
    assert "pycuda" in C.plan_stages({**ALL, "pycuda": False})[1].reason
    st = {s.name: s for s in C.plan_stages({**ALL, "trt_headers": None})}
    assert st["trt_vs_ort"].status == "run" and st["fused_plugin"].status == "skip"
    assert "--trt-include" in st["fused_plugin"].reason
    assert _status({**ALL, "cmake": None})["fused_plugin"] == "skip"


def test_decode_comparison():
    kp = np.array([[[1.0, 2.0], [np.nan, np.nan]]], np.float32)
    sc = np.array([[0.5, 0.0]], np.float32)
    assert C.compare_decode(kp, sc, kp.copy(), sc.copy(), exact=True)["ok"]
    off = kp.copy()
    off[0, 0, 0] = np.nextafter(np.float32(1.0), np.float32(2.0))
    r = C.compare_decode(off, sc, kp, sc, exact=True)
    assert not r["ok"] and not r["identical"]
    assert C.compare_decode(off, sc, kp, sc, exact=False)["ok"]  # sub-pixel, within 1e-4
    far = kp.copy()
    far[0, 0, 0] = 2.0
    r = C.compare_decode(far, sc, kp, sc, exact=False)
    assert not r["ok"] and r["keypoints_off_pixel"] == 1
    nan = kp.copy()
    nan[0, 0] = np.nan
    assert not C.compare_decode(nan, sc, kp, sc, exact=False)["ok"]  # NaN where the reference has none
    assert not C.compare_decode(kp[:, :1], sc, kp, sc, exact=True)["ok"]  # shape


def test_sparsemax_and_output_comparisons():
    ref = np.array([0.75, 0.25, 0.0], np.float32)
    assert C.compare_sparsemax(ref + np.float32(9e-7), ref)["ok"]
    assert not C.compare_sparsemax(ref + np.float32(2e-6), ref)["ok"]
    got = {"heatmaps": np.full((2, 3), 10.0, np.float32)}
    assert C.compare_outputs(got, {"heatmaps": got["heatmaps"] + 0.005})["ok"]  # 1e-4 + 1e-3 * 10
    assert not C.compare_outputs(got, {"heatmaps": got["heatmaps"] + 0.02})["ok"]
    assert not C.compare_outputs(got, {"score": got["heatmaps"]})["ok"]
    assert (
        C.overlap_ratio(30.0, 15.0) == 0.5
        and C.overlap_ratio(10.0, 12.0) == 0.0
        and C.overlap_ratio(0, 1) == 0
    )


def test_report_verdicts_and_output():
    stages = C.plan_stages({**ALL, "tensorrt": None})
    rep = C.Report(
        {"gpu": "X", "sm": "8.7"},
        stages,
        {"kernels": {"a": {"ok": True, "max_abs_err": 1e-8}}},
        {"kernels/a": {"ms": 0.1}},
    )
    assert rep.status() == "pass"
    doc = json.loads(rep.dumps())
    assert doc["status"] == "pass" and [s["status"] for s in doc["stages"]] == ["run", "skip", "skip", "skip"]
    text = rep.text()
    assert (
        "PASS" in text and "[skip] trt_vs_ort: tensorrt not importable" in text and "time kernels/a" in text
    )
    rep.results["kernels"]["b"] = {"ok": False, "max_abs_err": 1.0}
    assert rep.status() == "fail" and "BAD b" in rep.text()
    rep.results["kernels"].pop("b")
    rep.stages[1] = C.Stage("trt_vs_ort", C.RUN)  # ran, but produced nothing: a failure
    assert rep.status() == "fail"


class _HostAsGpu:
    """The kernels' source on the CPU behind the GPU shim's call shape (kernel time 0)."""

    def __init__(self) -> None:
        self.hk = HostKernels()

    def sparsemax(self, z, scale=1.0, iters=20):
        return self.hk.sparsemax(z, scale), 0.0

    def decode(self, maps, mode, sigmas=None, normalize=False, temperature=1.0, iters=20):
        return (*self.hk.decode(maps, mode, sigmas, normalize, temperature), 0.0)

    def decode_regions(self, maps, masses, sigmas, normalize=False, blur_sigma=0.0, iters=20):
        return (*self.hk.decode_regions(maps, masses, sigmas, normalize, 1.0, blur_sigma), 0.0)

    def crops(self, frame, affines, out_hw, mean, std, iters=20):
        return self.hk.crops(frame, affines, out_hw, mean, std), 0.0


def test_kernel_stage_end_to_end_on_the_host_build(coco_mini: Path):
    maps = gt_heatmaps(coco_mini)
    assert maps.shape[1:] == (17, 64, 48) and len(maps) > 0 and maps.max() == pytest.approx(1.0, abs=0.2)
    results, timings = run_kernel_stage(_HostAsGpu(), 166912, lambda: ("coco-mini", maps), coco_mini)
    assert {
        "random/regions",
        "real/regions",
        "crops/000000000785.jpg",
        "random/heatmap",
        "random/sparsemax",
        "random/probmap",
        "random/logits",
        "random/heatmap_96x72",
        "coco-mini/heatmap",
        "coco-mini/logits",
        "random/invalid_maps",
    } <= set(results)
    bad = {k: v for k, v in results.items() if not v["ok"]}
    assert not bad, bad
    assert results["random/heatmap"]["identical"] and results["coco-mini/probmap"]["identical"]
    small, _ = run_kernel_stage(_HostAsGpu(), 49152, lambda: ("coco-mini", maps[:2]))
    assert "random/heatmap_96x72" not in small  # 57,344 B does not fit a 48 KB device
    assert decode_smem_bytes(96, 72) == 57344


def test_gpu_path_comparisons():
    """The crop and region verdicts: exact crops, identical counts, ellipses within 1e-4, NaN
    (no region) in the same places; a one-level crop error or one pixel of area fails."""
    ref = np.zeros((2, 3, 4, 4), np.float32)
    assert C.compare_crops(ref.copy(), ref)["ok"]
    off = ref.copy()
    off[1, 2, 3, 3] = 1 / 57.375  # one uint8 level in normalised units
    r = C.compare_crops(off, ref)
    assert not r["ok"] and r["values_off"] == 1
    assert not C.compare_crops(ref[:1], ref)["ok"]
    pix = np.ones((2, 17, 2), np.float32)
    ell = np.zeros((2, 17, 2, 5), np.float32)
    ell[0, 3] = np.nan
    ref_pix, ref_ell = np.moveaxis(pix, 2, 0).astype(np.int64), np.moveaxis(ell, 2, 0).astype(np.float64)
    assert C.compare_regions(pix, ell, ref_pix, ref_ell)["ok"]
    assert C.compare_regions(pix, ell + 5e-5, ref_pix, ref_ell)["ok"]
    assert not C.compare_regions(pix, ell + 2e-4, ref_pix, ref_ell)["ok"]
    bumped = pix.copy()
    bumped[1, 0, 1] += 1
    assert C.compare_regions(bumped, ell, ref_pix, ref_ell)["counts_off"] == 1
    assert not C.compare_regions(pix, np.nan_to_num(ell), ref_pix, ref_ell)["ok"]
    flipped = ell.copy()
    flipped[1, 2, 0, 4], ref_flip = np.pi / 2, ref_ell.copy()
    ref_flip[0, 1, 2, 4] = -np.pi / 2  # the same axis
    assert C.compare_regions(pix, flipped, ref_pix, ref_flip)["ok"]


def test_trt_stage_imports_without_tensorrt():
    from tools.device_check import trt_stage  # TensorRT / pycuda are imported inside the stages

    assert trt_stage.target_name() in {"orin", "x86-gpu"} and trt_stage.ROLES == ("router", "small", "large")


def test_random_maps_are_seeded():
    np.testing.assert_array_equal(random_logits(1, n=2), random_logits(1, n=2))
    assert D.decode_heatmaps(random_logits(1, n=2))[0].shape == (2, 17, 2)


@pytest.mark.cuda
def test_cli_without_a_gpu_writes_the_report_and_exits_3(tmp_path: Path):
    """Real run: nvcc builds the shim, CUDA says there is no device; the JSON says so."""
    res = subprocess.run(
        [sys.executable, "-m", "tools.device_check", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    doc = json.loads((tmp_path / "device_check.json").read_text())
    kernels = doc["stages"][0]
    if kernels["status"] == "fail":  # this machine: no GPU
        assert res.returncode == 3, res.stderr
        assert "no usable NVIDIA GPU" in kernels["reason"] and "Traceback" not in res.stderr
        assert res.stderr.startswith("error: the device check could not run") and res.stderr.count("\n") == 1
        assert {s["status"] for s in doc["stages"][1:]} == {"skip"}
    else:  # a GPU machine: every case must match
        assert res.returncode == 0 and doc["status"] == "pass", res.stdout
