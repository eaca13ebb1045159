"""The calibration stage of ``python -m build.engines``: variants, report, presence.

Runs after the fp32 export and the routing band. Everything here uses ONNX
Runtime on the CPU, so a workstation calibrates and a Jetson only builds.

Which variants a precision makes:
  int8 -> ``int8_cpu`` always (ORT CPU runs anywhere, the Jetson included) and
          ``int8_trt`` for TensorRT targets; one calibration serves both.
  fp16 -> ``fp16`` (strongly typed TensorRT engines; ORT CPU runs it slowly).
  fp32 -> nothing extra (the default for --target cpu, so a CPU build stays fast).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from runtime.artifacts.manifest import save_manifest, sha256_file
from runtime.cli.args import number, positive_int

from .data import DEFAULT_CALIB, CalibSet, SizedCrops, crop_nets, role_crops, subset_crops
from .quantize import METHODS, check_trt_qdq, float_tail, name_nodes, qdq_counts, quantize_onnx

PRECISIONS = ("int8", "fp16", "fp32")
DEFAULT_MAX_CROPS = 64


def add_calib_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="reduced-precision models to make: int8 (Q/DQ ONNX: int8_cpu, plus int8_trt for "
        "TensorRT targets), fp16, or fp32 only (default: int8 for TensorRT targets, "
        "fp32 for --target cpu)",
    )
    p.add_argument(
        "--calib-method",
        choices=METHODS,
        default="entropy",
        help="INT8 range calibration (onnxruntime.quantization CalibrationMethod)",
    )
    p.add_argument(
        "--calib-max-crops",
        type=positive_int,
        default=DEFAULT_MAX_CROPS,
        help="at most this many calibration crops (evenly spaced) for INT8 ranges; the routing "
        "band and the accuracy report use all crops",
    )
    p.add_argument(
        "--pose-drift-px",
        type=number(float, lo=0),
        default=None,
        metavar="PX",
        help="INT8 keypoint drift budget of each pose net vs fp32, input px on the calibration crops: "
        "keep whole blocks float, fewest first, until within it (calib.fallback; the drift is "
        "measured and recorded in the manifest either way)",
    )


def default_precision(target: str) -> str:
    return "fp32" if target == "cpu" else "int8"


def _entry(out_dir: Path, path: Path, **info: Any) -> dict[str, Any]:
    return {"onnx": path.relative_to(out_dir).as_posix(), "sha256": sha256_file(path), **info}


def make_int8(
    out_dir: Path,
    manifest: dict,
    crops: SizedCrops,
    method: str,
    flavours: tuple[str, ...],
    log=print,
    drift_px: float | None = None,
) -> None:
    """Quantize every role in the given flavours; the TensorRT flavour must pass check_trt_qdq.

    Each net is calibrated on ``crops`` at its own input size (calib.data.role_crops).
    Every pose net's keypoint drift against fp32 on them (input px, calib.fallback.keypoint_drift)
    goes into its variant's ``fallback``; with ``drift_px`` the measured float fallback keeps whole
    blocks float, fewest first, until the drift is within it (the detector's search, applied to
    pose nets: which blocks cannot take INT8 is a property of the trained weights, not of op types).
    """
    with tempfile.TemporaryDirectory(prefix="dynpose-calib-") as tmp:
        for role, m in crop_nets(manifest):
            role_in = role_crops(crops, manifest, role)
            _int8_role(out_dir, role, m, role_in, method, flavours, Path(tmp), log, drift_px)


def _int8_role(
    out_dir: Path,
    role: str,
    m: dict,
    crops: np.ndarray,
    method: str,
    flavours: tuple[str, ...],
    tmp: Path,
    log,
    drift_px: float | None,
) -> None:
    import onnx

    from runtime.heads.registry import manifest_kinds

    from .fallback import keypoint_drift, module_groups, quantize_within
    from .report import run_onnx

    src = out_dir / m["onnx"]
    fp32 = name_nodes(onnx.load(str(src)))
    tail_nodes = float_tail(fp32)
    tail = len(tail_nodes)
    ref = run_onnx(src, crops) if m["head"] in manifest_kinds() else None  # the router has no keypoints
    hw = (int(crops.shape[-2]), int(crops.shape[-1]))
    # int8_cpu first: it calibrates every tensor, int8_trt then reuses the ranges
    for fl in sorted(flavours, key=lambda f: f != "int8_cpu"):
        t = time.perf_counter()

        def quantize(extra: set[str], fl: str = fl) -> Path:
            return quantize_onnx(
                src,
                out_dir / f"{role}.{fl}.onnx",
                crops,
                fl,
                method,
                cache=tmp / f"{role}.{method}.json",
                extra_float=extra,
            )

        fb, dst = quantize_within(
            quantize,
            module_groups(fp32, skip=tail_nodes),
            None
            if ref is None
            else lambda p, ref=ref: keypoint_drift(m["head"], ref, run_onnx(p, crops, list(ref)), hw),
            math.inf if drift_px is None else drift_px,
            "--pose-drift-px",
            log=lambda msg, fl=fl: log(f"{role}: {fl}: {msg}"),
            what="keypoint drift",
        )
        q = onnx.load(str(dst))
        if fl == "int8_trt":
            problems = check_trt_qdq(q)
            if problems:
                raise RuntimeError(f"{dst.name}: Q/DQ graph TensorRT cannot fuse: {problems[:3]}")
        m.setdefault("variants", {})[fl] = _entry(
            out_dir,
            dst,
            precision="int8",
            flavour=fl,
            method=method,
            n_calib_crops=int(len(crops)),
            qdq=qdq_counts(q),
            float_tail_nodes=tail,
            **({"fallback": fb.as_dict()} if fb else {}),
        )
        drift = f", keypoint drift {fb.drift:.3f} px" if fb else ""
        log(f"{role}: {fl} ({method}, {len(crops)} crops{drift}) in {time.perf_counter() - t:.0f} s")


def make_fp16(out_dir: Path, manifest: dict, log=print) -> None:
    from .fp16 import convert_fp16

    for role, m in crop_nets(manifest):
        t = time.perf_counter()
        dst = convert_fp16(out_dir / m["onnx"], out_dir / f"{role}.fp16.onnx")
        m.setdefault("variants", {})["fp16"] = _entry(
            out_dir,
            dst,
            precision="fp16",
            io="float32",
            fp32_nodes="float tail (sparsemax/decode/sigmoid heads)",
        )
        log(f"{role}: fp16 in {time.perf_counter() - t:.0f} s")


def run_calibration(out_dir: Path, manifest: dict, calib: CalibSet, args: argparse.Namespace) -> None:
    """Write the variant ONNX files and fill manifest models.*.variants, calibration and presence."""
    from .data import calibration_domain, presence_folder
    from .presence import calibrate_presence

    def log(msg: str) -> None:
        print(f"calibration: {msg}", file=sys.stderr)

    t0 = time.perf_counter()
    target = getattr(args, "target", "cpu")
    precision = getattr(args, "precision", None) or default_precision(target)
    method = getattr(args, "calib_method", "entropy")
    manifest["presence"] = calibrate_presence(
        out_dir,
        manifest,
        presence_folder(args),
        getattr(args, "seed", 0),
        domain=calibration_domain(manifest),
    )
    from .coverage import calibrate_coverage

    manifest["credible"] = calibrate_coverage(out_dir, manifest, args)
    pres = manifest["presence"]
    if pres.get("fitted"):
        log(
            f"presence T={pres['temperature']:.3f} (ECE {pres['ece_before']:.3f} -> {pres['ece_after']:.3f}), "
            f"Ex-OKS threshold {pres['threshold']:.2f} on {pres['n_crops']} CropCOCO-style {pres['domain']} crops"
            + (
                " (T at the search bound: the presence head carries little signal)"
                if pres.get("temperature_at_bound")
                else ""
            )
        )
    variants: tuple[str, ...] = ()
    crops = subset_crops(calib.by_hw, getattr(args, "calib_max_crops", DEFAULT_MAX_CROPS))
    n_crops = len(next(iter(crops.values())))
    if precision == "int8":
        variants = ("int8_cpu",) if target == "cpu" else ("int8_cpu", "int8_trt")
        at = ", ".join(f"{h}x{w}" for h, w in crops)
        log(f"INT8 ranges from {n_crops} of {calib.describe()} (each net at its size: {at})")
        make_int8(out_dir, manifest, crops, method, variants, log, getattr(args, "pose_drift_px", None))
    elif precision == "fp16":
        variants = ("fp16",)
        make_fp16(out_dir, manifest, log)
    manifest["calibration"] = {
        "precision": precision,
        "method": method if precision == "int8" else None,
        "variants": list(variants),
        "n_crops": int(n_crops) if precision == "int8" else 0,
        "source": calib.source,
        "tool": _tool(),
        "report": {},
    }
    if variants:  # random weights score AP 0 whatever the precision: no labelled table then
        refresh_report(
            out_dir,
            manifest,
            calib,
            variants,
            None if manifest.get("weights") == "random" else _labelled_folder(args),
        )
    manifest["calibration"]["seconds"] = round(time.perf_counter() - t0, 1)


def _labelled_folder(args: argparse.Namespace) -> Path | None:
    """The --calib-data folder when it is a labelled COCO folder with detector boxes, else None."""
    data = Path(getattr(args, "calib_data", None) or DEFAULT_CALIB)
    return (
        data
        if all((data / f).is_file() for f in ("person_keypoints.json", "person_detections.json"))
        else None
    )


def refresh_report(
    out_dir: Path,
    manifest: dict,
    calib: CalibSet,
    variants: tuple[str, ...] | list[str],
    labelled: Path | None,
) -> dict[str, Any]:
    """``calibration.report`` over ``variants``: agreement with fp32 on the calibration crops and,
    when the calibration set is labelled, AP/AR of small, large and dyn per precision on it
    (``report.labelled``, measure.precision_table; ~5 s per precision on coco-mini's 118 boxes
    here). Random weights skip it: their AP is 0 at every precision."""
    from .report import accuracy_report, format_table

    report = accuracy_report(out_dir, manifest, calib.by_hw, variants)
    if labelled is not None:
        from measure.precision_table import format_markdown, labelled_report

        save_manifest(out_dir, manifest)  # the pipeline reads the folder's manifest; the build saves it again
        report["labelled"] = labelled_report(out_dir, labelled, ("fp32", *variants))
    manifest["calibration"].update(variants=list(variants), report=report)
    print(format_table(report))
    if report.get("labelled"):
        lab = report["labelled"]
        print(f"AP per precision on the labelled calibration set ({lab['n_crops']} crops, {lab['data']}):")
        print(format_markdown(lab["rows"]))
    return report


def _tool() -> str:
    import onnxruntime

    return f"onnxruntime.quantization {onnxruntime.__version__}"
