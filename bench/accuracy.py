"""``python -m bench.accuracy``: AP/AR of small, large and dyn at fp32, fp16, int8_cpu and int8_trt.

On the held-out synthetic test split of the trained fixtures (``build.train.fixtures``:
the same ``build.synth`` seed, so its first ``--test-images`` images are the files
the fixture report scores), through the pipeline's own preprocessing, runners
(ONNX Runtime CPU: it runs the fp16 graph and executes the TensorRT-flavour
Q/DQ graph as quantize-dequantize) and decode. Without ``--engines`` it
builds the fixture config once for the CPU (reused when present), calibrated on
the fixtures' synthetic calibration split (INT8 ranges, routing band, presence),
with all four precisions; the build's calibration report then holds the same
table on the calibration split (manifest ``calibration.report.labelled``).
Prints the table (markdown) and writes it as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from measure.precision_table import PERSON_SCORES, PRECISIONS, available, format_markdown, measure, to_dict
from measure.workload import load_frames
from runtime.cli.args import OneLineParser, existing_dir, nonneg_int, number, output_dir, output_file
from runtime.errors import InputError, guarded
from runtime.io.records import read_json
from runtime.safe_io import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
CONFIG = "fixture-dyn"
WORK = REPO / ".benchmarks" / "accuracy"


def synthetic_split(work: Path, split: str, n_images: int, seed: int = 0) -> Path:
    """The first ``n_images`` of a fixture split as a COCO folder under ``work`` (build.synth.coco.write_split)."""
    from build.synth.coco import write_split

    return write_split(work / f"{split}-seed{seed}-n{n_images}", split, n_images, seed)


def build_all_precisions(
    build_root: Path,
    calib_dir: Path,
    config: str = CONFIG,
    method: str = "entropy",
    drift_px: float | None = None,
) -> Path:
    """``config`` for the CPU with int8_cpu, int8_trt and fp16 beside fp32, built once.

    ``build.engines`` makes one precision per build; this builds fp32 (routing band, presence) and
    then runs the same calibration stage functions for both INT8 flavours (one set of ranges) and
    fp16, and the calibration report over all three, so the manifest holds the whole table.
    ``drift_px`` is the pose nets' INT8 keypoint drift budget (``--pose-drift-px``, calib.fallback).
    """
    from build.engines import main as build_main
    from calib.data import load_calib, subset_crops
    from calib.stage import DEFAULT_MAX_CROPS, make_fp16, make_int8, refresh_report
    from runtime.artifacts.manifest import load_manifest, save_manifest
    from runtime.pose.preprocess import net_sizes

    out = build_root / f"{config}-cpu"
    m = load_manifest(out, verify=False) if (out / "manifest.json").is_file() else None
    if (
        m
        and all(v in m["models"]["small"].get("variants", {}) for v in PRECISIONS[1:])
        and m.get("calibration", {}).get("source", "").startswith(f"{calib_dir} ")
        and m["models"]["small"]["variants"]["int8_cpu"].get("fallback", {}).get("budget_px") == drift_px
    ):
        return out
    print(f"building {config} for the CPU target into {build_root} (once) ...", file=sys.stderr)
    rc = build_main(
        ["--config", config, "--target", "cpu", "--out", str(build_root), "--calib-data", str(calib_dir)]
    )
    if rc != 0:
        raise SystemExit(f"error: building {config} failed (exit {rc})")
    m = load_manifest(out, verify=False)
    calib = load_calib(calib_dir, sizes=net_sizes(m))
    crops = subset_crops(calib.by_hw, DEFAULT_MAX_CROPS)

    def log(s: str) -> None:
        print(f"calibration: {s}", file=sys.stderr)

    make_int8(out, m, crops, method, ("int8_cpu", "int8_trt"), log=log, drift_px=drift_px)
    make_fp16(out, m, log=log)
    m["calibration"].update(precision="int8+fp16", method=method, n_crops=len(crops[net_sizes(m)[0]]))
    refresh_report(out, m, calib, PRECISIONS[1:], calib_dir)
    save_manifest(out, m)
    return out


def _fixture_config(name: str) -> str:
    """argparse type of --config: a registered config whose bundled weights know the synthetic
    figures (the test split means nothing to other weights)."""
    import argparse

    from build.configs import get_config, list_configs

    if name not in list_configs() or get_config(name).calib_domain != "synthetic":
        fixtures = [c for c in list_configs() if get_config(c).calib_domain == "synthetic"]
        raise argparse.ArgumentTypeError(f"{name!r}: pick a fixture config ({', '.join(fixtures)})")
    return name


def main(argv: Sequence[str] | None = None) -> int:
    return guarded(_main, argv, prog="bench.accuracy")


def _main(argv: Sequence[str]) -> int:
    ap = OneLineParser(prog="python -m bench.accuracy", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--engines",
        type=existing_dir,
        default=None,
        help="a built artifacts folder of the fixture config (default: build one under --work)",
    )
    ap.add_argument(
        "--config",
        default=CONFIG,
        type=_fixture_config,
        help=f"a config with weights trained on the synthetic figures (default {CONFIG})",
    )
    ap.add_argument(
        "--pose-drift-px",
        type=number(float, lo=0),
        default=None,
        help="INT8 keypoint drift budget of the pose nets for the build (calib.fallback; default: none)",
    )
    ap.add_argument("--work", type=output_dir, default=WORK, help="synthetic sets, the build and the JSON")
    ap.add_argument("--test-images", type=number(int, lo=1), default=400, help="held-out test images (400)")
    ap.add_argument(
        "--calib-images",
        type=number(int, lo=1),
        default=200,
        help="calibration-split images for the build (ignored with --engines)",
    )
    ap.add_argument(
        "--seed", type=nonneg_int, default=0, help="the fixtures' seed (build.train.fixtures --seed)"
    )
    ap.add_argument(
        "--precisions",
        default=None,
        help=f"comma list (default {','.join(PRECISIONS)}: those the artifacts hold); fp32 always "
        "runs; a named precision the artifacts lack is refused",
    )
    ap.add_argument(
        "--person-score",
        default="box",
        choices=PERSON_SCORES,
        help="rank people by the box score (as the fixture report) or the runtime's "
        "box x mean keypoint score (see bench/precision_table.py)",
    )
    ap.add_argument(
        "--json", type=output_file, default=None, help="where the table goes (default WORK/accuracy.json)"
    )
    a = ap.parse_args(argv)
    precisions = [p for p in (a.precisions or ",".join(PRECISIONS)).split(",") if p]
    bad = sorted(set(precisions) - set(PRECISIONS))
    if bad:
        raise InputError(
            f"unknown precision {','.join(bad)}",
            f"--precisions {a.precisions}",
            f"pick from {','.join(PRECISIONS)}",
        )
    t0 = time.perf_counter()
    work = Path(a.work)
    if a.engines is not None:
        m = read_json(a.engines / "manifest.json", "the manifest", "--engines")
        if not isinstance(m, dict) or m.get("config") != a.config:
            raise InputError(
                f"holds config {m.get('config') if isinstance(m, dict) else None!r}, not {a.config}",
                f"--engines {a.engines}",
                "the synthetic test set only means something to the "
                "fixture weights; build them with python -m bench.accuracy (no --engines)",
            )
        engines = a.engines
        lacking = (
            sorted(set(precisions) - set(available(m, precisions)))
            if isinstance(m.get("models"), dict)
            else []
        )
        if a.precisions is not None and lacking:
            raise InputError(
                f"{engines} has no {','.join(lacking)} models",
                f"--precisions {a.precisions}",
                "build them (python -m bench.accuracy without --engines builds all four) or leave them out",
            )
    else:
        engines = build_all_precisions(
            work / "artifacts",
            synthetic_split(work, "calib", a.calib_images, a.seed),
            a.config,
            drift_px=a.pose_drift_px,
        )
    test = synthetic_split(work, "test", a.test_images, a.seed)
    rows, info = measure(
        engines, load_frames(test), test / "person_keypoints.json", precisions, person_score=a.person_score
    )
    out = Path(a.json) if a.json else work / "accuracy.json"
    atomic_write_text(
        out,
        json.dumps(
            {"engines": str(engines), "test": str(test), **info, "rows": [to_dict(r) for r in rows]}, indent=1
        ),
    )
    print(
        f"held-out synthetic test split: {info['n_images']} images, {info['n_crops']} crops; "
        f"ONNX Runtime CPU; dyn band k1={info['k1']:.4f} k2={info['k2']:.4f} (manifest); "
        f"people ranked by {a.person_score} score"
    )
    print(format_markdown(rows))
    if info["skipped"]:
        print(
            f"not in {engines}: {', '.join(info['skipped'])} (build them with python -m build.engines --precision ...)"
        )
    missed = [
        f"{r.policy} {r.precision} ({100 * r.drop:+.2f} AP, target <= {100 * r.max_drop:.1f})"
        for r in rows
        if r.met is False
    ]
    measured = sorted({r.precision for r in rows if r.met is not None})
    verdict = (
        "missed by " + "; ".join(missed)
        if missed
        else (f"met for {', '.join(measured)}" if measured else "none measured (fp32 only)")
    )
    unmeasured = [p for p in PRECISIONS[1:] if p not in measured]
    print(
        "targets (AP points below fp32: INT8 <= 0.5, FP16 <= 0.1): "
        + verdict
        + (f"; NOT MEASURED: {', '.join(unmeasured)}" if unmeasured else "")
    )
    print(f"in {time.perf_counter() - t0:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
