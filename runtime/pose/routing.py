"""Who goes to the large net: the DynPose band, budget mode and baseline policies.

Decisions only (numpy in, boolean masks out), so every policy is unit-tested
on the CPU and shared by every backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

POLICIES = ("dyn", "small", "large", "random")


@dataclass(frozen=True)
class Band:
    k1: float
    k2: float
    large_fraction: float  # achieved on the calibration scores
    theta: float
    p: float  # percent
    n: int


def fit_thresholds(scores: np.ndarray, theta: float, p: float) -> Band:
    """docs/DESIGN.md section 3: k1 = S_1 + theta (S_n - S_1); k2 = S_{j + ceil(n p)}, clamped.

    ``p`` is a percentage (Dyn-R50-H32/50 means p = 50). ``j`` is the index
    of the sorted score closest to k1 (0-based here), so the band [k1, k2]
    holds ceil(n p) crops of the calibration set, or one more when S_j >= k1.
    p = 0 gives an empty band.
    """
    s = np.sort(np.asarray(scores, np.float64).reshape(-1))
    if s.size == 0 or not np.isfinite(s).all():
        raise ValueError(
            "routing thresholds need at least one finite router score; "
            "check the calibration crops (--calib-data)"
        )
    if not 0.0 <= theta <= 1.0 or not 0.0 <= p <= 100.0:
        raise ValueError(f"theta must be in [0,1] and p in [0,100] (percent), got theta={theta}, p={p}")
    n = s.size
    k1 = float(s[0] + theta * (s[-1] - s[0]))
    j = int(np.argmin(np.abs(s - k1)))
    m = math.ceil(n * p / 100.0)
    if m == 0:
        k2 = float(np.nextafter(k1, -np.inf))  # empty band: nothing is "hard"
    else:
        k2 = float(s[min(j + m, n - 1)])
    frac = float(route_band(s, k1, k2).mean())
    return Band(k1=k1, k2=k2, large_fraction=frac, theta=float(theta), p=float(p), n=n)


def route_band(scores: np.ndarray, k1: float, k2: float) -> np.ndarray:
    """True where k1 <= s <= k2 (hard: large net)."""
    s = np.asarray(scores, np.float64).reshape(-1)
    return (s >= k1) & (s <= k2)


def route(
    policy: str,
    scores: np.ndarray,
    k1: float,
    k2: float,
    fraction: float,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Mask of crops for the large net under ``policy`` (see POLICIES).

    ``random`` sends the same share as the band did on calibration
    (``fraction``), the DynPose paper's baseline.
    """
    n = np.asarray(scores).reshape(-1).size
    if policy == "dyn":
        return route_band(scores, k1, k2)
    if policy == "small":
        return np.zeros(n, bool)
    if policy == "large":
        return np.ones(n, bool)
    if policy == "random":
        rng = rng or np.random.default_rng(0)
        mask = np.zeros(n, bool)
        mask[rng.permutation(n)[: int(round(fraction * n))]] = True
        return mask
    raise ValueError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")


def apply_budget(scores: np.ndarray, large: np.ndarray, k1: float, k2: float, max_large: int) -> np.ndarray:
    """Cap the large-net crops of one frame, keeping those nearest the band's centre.

    The band's middle is where the router is most sure the large net helps;
    crops near its edges lose least by going to the small net.
    """
    large = np.asarray(large, bool).copy()
    if max_large < 0 or large.sum() <= max_large:
        return large
    s = np.asarray(scores, np.float64).reshape(-1)
    centre = 0.5 * (k1 + k2)
    cand = np.flatnonzero(large)
    keep = cand[np.argsort(np.abs(s[cand] - centre), kind="stable")[:max_large]]
    large[:] = False
    large[keep] = True
    return large


def budget_max_large(
    budget_ms: float, n: int, ms_small: float, ms_large: float, ms_fixed: float = 0.0
) -> int:
    """How many of n crops can take the large net within ``budget_ms``.

    Per-crop costs come from measured latencies; the rest go to the small net.
    """
    extra = ms_large - ms_small
    room = budget_ms - ms_fixed - n * ms_small
    if extra <= 0:
        return n
    return int(max(0, min(n, math.floor(room / extra))))


def cost_ratios(manifest: dict[str, Any], backend: str, precision: str | None) -> dict[str, float] | None:
    """Per-crop cost of each role relative to the small net (small = 1) for this backend and
    precision, or None when the manifest has no usable record.

    ``manifest["routing"]["costs"]["entries"]``: ``ratios`` as build/costs.py and
    ``dynpose costs`` (runtime.pose.costs) measure them, side by side so that they survive
    load; an entry with absolute ``ms_per_crop`` only (trtexec timings for TensorRT, via
    build/trt/record.py: one device, one moment) gives its ratios. Budget mode turns them into
    milliseconds with one timed small-net batch on the device (pipeline ``_measure_costs``).
    """
    costs = (manifest.get("routing") or {}).get("costs") or {}
    entries = costs.get("entries") if isinstance(costs, dict) else None
    for e in entries if isinstance(entries, list) else []:
        if not isinstance(e, dict) or e.get("backend") != backend:
            continue
        if backend == "ort" and e.get("precision") != (precision or "fp32"):
            continue
        got = _ratios_of(e)
        if got is not None:
            return got
    return None


def _ratios_of(entry: dict[str, Any]) -> dict[str, float] | None:
    def ok(v: object) -> bool:
        return isinstance(v, (int, float)) and math.isfinite(v) and v > 0

    r = entry.get("ratios")
    if isinstance(r, dict) and ok(r.get("large")):
        return {
            "small": 1.0,
            "large": float(r["large"]),
            **({"router": float(r["router"])} if ok(r.get("router")) else {}),
        }
    ms = entry.get("ms_per_crop")
    if isinstance(ms, dict) and ok(ms.get("small")) and ok(ms.get("large")):
        small = float(ms["small"])
        return {role: float(ms[role]) / small for role in ("router", "small", "large") if ok(ms.get(role))}
    return None
