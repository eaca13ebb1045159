"""Accuracy of each quantized / fp16 net against its fp32 original, in pose terms.

"Max abs error 0.03" says little about poses, so per net and precision we
decode both outputs exactly as the runtime does (runtime.heads.registry.decode_outputs)
and report: mean keypoint displacement in the net's input pixels (one unit for a heatmap head's
quarter-size grid and a SimCC head's full-size one), mean OKS between
the fp32 and the reduced-precision keypoints (fp32 as ground truth, object
area = the crop's box), max abs error per output, and for the router the
share of crops whose route (runtime.pose.routing.route_band with the manifest's
k1/k2) is unchanged. With random weights these numbers only show that the
graphs run and agree with fp32, not that poses are right.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runtime.heads.base import DecodeContext
from runtime.heads.decode import COCO_SIGMAS
from runtime.heads.registry import decoder_for
from runtime.pose.preprocess import INPUT_HW, PADDING, net_input_hw
from runtime.pose.routing import route_band

from .data import SizedCrops, crop_nets, role_crops

RANDOM_NOTE = (
    "RANDOM WEIGHTS: these numbers only show that the reduced-precision graphs run and "
    "track fp32; they say nothing about pose accuracy"
)


def run_onnx(
    path: Path,
    crops: np.ndarray,
    names: Sequence[str] | None = None,
    batch: int = 8,
    threads: int | None = None,
) -> dict[str, np.ndarray]:
    """All outputs of one ONNX over the crops, in batches (ONNX Runtime CPU)."""
    from runtime.backends.ort_session import open_session

    sess = open_session(path, threads)
    names = list(names) if names else [o.name for o in sess.get_outputs()]
    parts = [
        sess.run(names, {sess.get_inputs()[0].name: crops[i : i + batch]})
        for i in range(0, len(crops), batch)
    ]
    return {n: np.concatenate([p[k] for p in parts]).astype(np.float32) for k, n in enumerate(names)}


def oks_between(
    a: np.ndarray, b: np.ndarray, sigmas: np.ndarray = COCO_SIGMAS, hw: tuple[int, int] = INPUT_HW
) -> np.ndarray:
    """Per-crop OKS of keypoints ``b`` against ``a`` (both in pixels of an ``hw`` crop), all
    keypoints counted.

    The object area is the unpadded crop box, (W·H)/padding² in those pixels,
    so the number reads like COCO OKS for that person.
    """
    area = hw[0] * hw[1] / PADDING**2
    d2 = np.sum((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2, axis=-1)
    k2 = (2 * np.asarray(sigmas, np.float64)) ** 2
    e = np.exp(-d2 / (2 * area * k2))
    e = np.where(np.isfinite(e), e, 0.0)  # a NaN keypoint (broken output) scores 0
    return e.mean(axis=-1)


def _input_px(head: str, outs: dict[str, np.ndarray], ctx: DecodeContext) -> tuple[np.ndarray, np.ndarray]:
    """(keypoints in input pixels [n,K,2], presence [n,K]) as the runtime decodes them."""
    net = decoder_for(head, outs).decode(outs, ctx)
    h, w = ctx.input_hw
    scale = np.array([w / net.grid_hw[1], h / net.grid_hw[0]], np.float64)
    return np.asarray(net.coords, np.float64) * scale, np.asarray(net.presence)


def compare(
    head: str,
    ref: dict[str, np.ndarray],
    got: dict[str, np.ndarray],
    band: tuple[float, float] | None = None,
    presence_threshold: float = 0.5,
    input_hw: tuple[int, int] = INPUT_HW,
) -> dict[str, Any]:
    """Pose-level agreement of one reduced-precision net with fp32 on the same crops (``input_hw``:
    the net's crop size; displacements are in its pixels)."""
    out: dict[str, Any] = {
        "max_abs_err": {
            k: float(np.max(np.abs(ref[k] - got[k]))) if np.isfinite(got[k]).all() else float("inf")
            for k in ref
        },
        "finite": bool(all(np.isfinite(v).all() for v in got.values())),
    }
    if head == "score":
        k1, k2 = band if band is not None else (0.0, 1.0)
        a, b = route_band(ref["score"], k1, k2), route_band(got["score"], k1, k2)
        out["route_agreement"] = float((a == b).mean())
        out["score_mean_abs_err"] = float(np.mean(np.abs(ref["score"] - got["score"])))
        return out
    ctx = DecodeContext(presence_threshold=presence_threshold, input_hw=(int(input_hw[0]), int(input_hw[1])))
    c_ref, p_ref = _input_px(head, ref, ctx)
    c_got, p_got = _input_px(head, got, ctx)
    d = np.linalg.norm(c_ref - c_got, axis=-1)
    out["mean_disp_px"] = float(np.nanmean(d)) if np.isfinite(d).any() else float("inf")
    out["p95_disp_px"] = float(np.nanpercentile(d, 95)) if np.isfinite(d).any() else float("inf")
    out["mean_oks"] = float(oks_between(c_ref, c_got, hw=ctx.input_hw).mean())
    if "presence" in ref:
        out["presence_agreement"] = float(
            ((p_ref >= presence_threshold) == (p_got >= presence_threshold)).mean()
        )
    return out


def accuracy_report(
    out_dir: Path, manifest: dict[str, Any], crops: SizedCrops, variants: Sequence[str], batch: int = 8
) -> dict[str, Any]:
    """{role: {variant: metrics}} over ``crops`` (each net at its own input size) for every
    variant present in the manifest."""
    r = manifest.get("routing") or {}
    band = (r["k1"], r["k2"]) if "k1" in r else None
    thr = float(manifest.get("presence", {}).get("threshold", 0.5))
    nets: dict[str, Any] = {}
    for role, m in crop_nets(manifest):
        have = [v for v in variants if v in m.get("variants", {})]
        if not have:
            continue
        role_in = role_crops(crops, manifest, role)
        ref = run_onnx(out_dir / m["onnx"], role_in, batch=batch)
        nets[role] = {}
        for v in have:
            got = run_onnx(out_dir / m["variants"][v]["onnx"], role_in, list(ref), batch)
            nets[role][v] = compare(m["head"], ref, got, band, thr, net_input_hw(manifest, role))
    rep: dict[str, Any] = {"n_crops": int(len(next(iter(crops.values())))), "nets": nets}
    if manifest.get("weights") == "random":
        rep["note"] = RANDOM_NOTE
    return rep


def format_table(report: dict[str, Any]) -> str:
    """One line per net and precision; '-' where a metric does not apply."""
    lines = [
        f"accuracy vs fp32 on {report.get('n_crops', '?')} calibration crops",
        f"{'net':<7} {'precision':<9} {'disp px':>8} {'p95 px':>7} {'OKS':>6} {'route agr':>9} "
        f"{'pres agr':>8} {'max |err|':>10}",
    ]

    def f(x: Any, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    for role, per in report.get("nets", {}).items():
        for v, m in per.items():
            err = max(m["max_abs_err"].values())
            lines.append(
                f"{role:<7} {v:<9} {f(m.get('mean_disp_px'), '8.3f'):>8} "
                f"{f(m.get('p95_disp_px'), '7.2f'):>7} {f(m.get('mean_oks'), '6.3f'):>6} "
                f"{f(m.get('route_agreement'), '9.3f'):>9} {f(m.get('presence_agreement'), '8.3f'):>8} "
                f"{err:>10.3g}"
            )
    if "note" in report:
        lines.append(report["note"])
    return "\n".join(lines)
