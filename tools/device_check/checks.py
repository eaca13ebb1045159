"""CPU-side logic of the device check: comparisons, skip rules, report assembly.

Kept free of CUDA and TensorRT so every rule here is unit-tested on machines
without a GPU (tests/test_device_check.py); the GPU modules only feed it arrays
and timings.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

SPARSEMAX_TOL = 1e-6  # the brief's bound, as the host-build tests use
LOGITS_KP_TOL = 1e-4  # fused sparsemax+decode: pixel identical, sub-pixel within 1e-4 (tests/test_kernels.py)
LOGITS_SCORE_TOL = 1e-6
CROP_TOL = 0.0  # the crop kernel replays warpAffine's fixed point: equal to make_crops (tests/test_kernels_gpu_path.py)
REGION_ELLIPSE_TOL = 1e-4  # heatmap px: float32 outputs of double moments

RUN, SKIP, FAIL = "run", "skip", "fail"


@dataclass
class Stage:
    """One part of the check: whether it runs and why not."""

    name: str
    status: str  # run | skip | fail
    reason: str = ""


def plan_stages(env: Mapping[str, Any]) -> list[Stage]:
    """Which stages run on this machine, from what was found (keys below); never guesses.

    env: nvcc (path or None), gpu (device info dict or None, with 'error' when the
    probe failed), tensorrt (version or None), pycuda (bool), trt_headers (path or
    None), cmake (path or None).
    """
    stages: list[Stage] = []
    if not env.get("nvcc"):
        stages.append(
            Stage("kernels", FAIL, "nvcc not found: install the CUDA toolkit (the check builds the kernels)")
        )
    elif not env.get("gpu") or env["gpu"].get("error"):
        why = (env.get("gpu") or {}).get("error", "no CUDA device")
        stages.append(Stage("kernels", FAIL, f"no usable NVIDIA GPU ({why})"))
    else:
        stages.append(Stage("kernels", RUN))
    gpu_ok = stages[0].status == RUN
    if not gpu_ok:
        why = "needs the GPU kernels stage"
    elif not env.get("tensorrt"):
        why = "tensorrt not importable: kernels-only check"
    elif not env.get("pycuda"):
        why = "pycuda not importable (pip install pycuda): kernels-only check"
    else:
        why = ""
    for name in ("trt_vs_ort", "stream_overlap"):
        stages.append(Stage(name, SKIP if why else RUN, why))
    if why:
        stages.append(Stage("fused_plugin", SKIP, why))
    elif not env.get("trt_headers"):
        stages.append(Stage("fused_plugin", SKIP, "no TensorRT headers found (pass --trt-include DIR)"))
    elif not env.get("cmake"):
        stages.append(Stage("fused_plugin", SKIP, "cmake not found (needed to build libdynpose_plugins.so)"))
    else:
        stages.append(Stage("fused_plugin", RUN))
    return stages


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    """Max |a-b| over entries finite in both; NaN in the same places counts as equal."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    both = np.isfinite(a) & np.isfinite(b)
    return float(np.abs(a[both] - b[both]).max()) if both.any() else 0.0


def _same_nan(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(np.isnan(a), np.isnan(b)))


def compare_sparsemax(got: np.ndarray, ref: np.ndarray, tol: float = SPARSEMAX_TOL) -> dict[str, Any]:
    err = _max_abs(got, ref)
    ok = got.shape == ref.shape and _same_nan(got, ref) and err <= tol
    return {"ok": bool(ok), "max_abs_err": err, "tol": tol}


def compare_decode(
    kp: np.ndarray, sc: np.ndarray, ref_kp: np.ndarray, ref_sc: np.ndarray, exact: bool
) -> dict[str, Any]:
    """Keypoints identical (exact) or pixel-identical within LOGITS_KP_TOL (fused logits path)."""
    shapes = kp.shape == ref_kp.shape and sc.shape == ref_sc.shape
    if not shapes:
        return {"ok": False, "why": f"shapes {kp.shape}/{sc.shape} != {ref_kp.shape}/{ref_sc.shape}"}
    with np.errstate(invalid="ignore"):
        pix = np.floor(kp + 0.5) != np.floor(ref_kp + 0.5)
    pixel_diff = int((pix & ~(np.isnan(kp) & np.isnan(ref_kp))).any(-1).sum())
    kp_err, sc_err = _max_abs(kp, ref_kp), _max_abs(sc, ref_sc)
    same_nan = _same_nan(kp, ref_kp) and _same_nan(sc, ref_sc)
    if exact:
        identical = bool(
            np.array_equal(kp, ref_kp, equal_nan=True) and np.array_equal(sc, ref_sc, equal_nan=True)
        )
        ok = identical
    else:
        identical = bool(np.array_equal(kp, ref_kp, equal_nan=True))
        ok = pixel_diff == 0 and same_nan and kp_err <= LOGITS_KP_TOL and sc_err <= LOGITS_SCORE_TOL
    return {
        "ok": bool(ok),
        "exact": exact,
        "identical": identical,
        "keypoints_off_pixel": pixel_diff,
        "max_abs_kp_err": kp_err,
        "max_abs_score_err": sc_err,
    }


def compare_crops(got: np.ndarray, ref: np.ndarray, tol: float = CROP_TOL) -> dict[str, Any]:
    """Crop kernel vs make_crops: max abs error in normalised units, and how many values differ."""
    if got.shape != ref.shape:
        return {"ok": False, "why": f"shape {got.shape} != {ref.shape}"}
    err = _max_abs(got, ref)
    return {"ok": bool(err <= tol), "max_abs_err": err, "values_off": int((got != ref).sum()), "tol": tol}


def compare_regions(
    pixels: np.ndarray, ellipses: np.ndarray, ref_pixels: np.ndarray, ref_ellipses: np.ndarray
) -> dict[str, Any]:
    """Plugin regions ([N,K,Q], [N,K,Q,5]) vs runtime.heads.credible ([Q,N,K], [Q,N,K,5]):
    pixel counts identical, ellipses within REGION_ELLIPSE_TOL (angles modulo pi), NaN (no region) in
    the same places."""
    got_pix, got_ell = np.moveaxis(pixels, 2, 0), np.moveaxis(ellipses, 2, 0)
    if got_pix.shape != ref_pixels.shape or got_ell.shape != ref_ellipses.shape:
        return {"ok": False, "why": f"shapes {pixels.shape}/{ellipses.shape} vs {ref_pixels.shape}"}
    count_off = int((got_pix != ref_pixels).sum())
    err = _max_abs(got_ell[..., :4], ref_ellipses[..., :4])
    # axis angles are equal modulo pi: a near-round ellipse may say +pi/2 on one side, -pi/2 on the other
    gap = np.abs(
        (np.asarray(got_ell[..., 4], np.float64) - ref_ellipses[..., 4] + np.pi / 2) % np.pi - np.pi / 2
    )
    err = max(err, float(np.nanmax(gap, initial=0.0)))
    ok = count_off == 0 and _same_nan(got_ell, ref_ellipses) and err <= REGION_ELLIPSE_TOL
    return {"ok": bool(ok), "counts_off": count_off, "max_abs_ellipse_err": err, "tol": REGION_ELLIPSE_TOL}


def compare_outputs(
    got: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray], rtol: float = 1e-3, atol: float = 1e-4
) -> dict[str, Any]:
    """TensorRT vs ONNX Runtime per output: max abs error against atol + rtol * max|ref|."""
    out: dict[str, Any] = {}
    ok = set(got) == set(ref)
    for name in sorted(set(got) & set(ref)):
        g, r = np.asarray(got[name]), np.asarray(ref[name])
        bound = atol + rtol * float(np.abs(r[np.isfinite(r)]).max() if np.isfinite(r).any() else 0.0)
        err = _max_abs(g, r) if g.shape == r.shape else math.inf
        out[name] = {"max_abs_err": err, "bound": bound, "ok": bool(err <= bound and _same_nan(g, r))}
        ok = ok and out[name]["ok"]
    if set(got) != set(ref):
        out["_names"] = {"trt": sorted(got), "ort": sorted(ref)}
    return {"ok": bool(ok), "outputs": out}


def overlap_ratio(serial_ms: float, concurrent_ms: float) -> float:
    """How much of the serial time the concurrent run saved: 0 = none, up to 1 - 1/streams."""
    if serial_ms <= 0:
        return 0.0
    return max(0.0, 1.0 - concurrent_ms / serial_ms)


@dataclass
class Report:
    machine: dict[str, Any]
    stages: list[Stage]
    results: dict[str, Any] = field(default_factory=dict)
    timings_ms: dict[str, Any] = field(default_factory=dict)

    def stage_ok(self, name: str) -> bool | None:
        res = self.results.get(name)
        if res is None:
            return None
        return all(v.get("ok", False) for v in res.values()) if isinstance(res, dict) else bool(res)

    def status(self) -> str:
        """'pass' when every stage that ran passed and none failed to start; else 'fail'."""
        for s in self.stages:
            if s.status == FAIL or (s.status == RUN and not self.stage_ok(s.name)):
                return "fail"
        return "pass"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status(),
            "machine": self.machine,
            "stages": [asdict(s) for s in self.stages],
            "results": self.results,
            "timings_ms": self.timings_ms,
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, default=float)

    def text(self) -> str:
        """The printed report: machine, each stage's verdict with its numbers, timings."""
        m = self.machine
        lines = [
            f"device check: {self.status().upper()}",
            f"  GPU {m.get('gpu', '?')} (sm {m.get('sm', '?')}), smem opt-in {m.get('smem_optin', '?')} B, "
            f"TensorRT {m.get('tensorrt') or 'absent'}, arch {m.get('arch', '?')}",
        ]
        for s in self.stages:
            if s.status != RUN:
                lines.append(f"  [{s.status}] {s.name}: {s.reason}")
                continue
            ok = self.stage_ok(s.name)
            lines.append(f"  [{'ok' if ok else 'FAIL'}] {s.name}")
            for case, r in (self.results.get(s.name) or {}).items():
                nums = ", ".join(
                    f"{k}={_fmt(v)}" for k, v in r.items() if k != "ok" and not isinstance(v, dict)
                )
                lines.append(f"      {'ok ' if r.get('ok') else 'BAD'} {case}: {nums}")
        for name, t in self.timings_ms.items():
            lines.append(f"  time {name}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in t.items()))
        return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)
