"""``python -m tools.device_check --out DIR``: validate the GPU path here, write one JSON.

Exit codes (runtime/errors.py): 0 every stage that ran passed; 1 a GPU result
differs from the reference (a bug: the JSON says which case); 3 no GPU or no
nvcc (nothing could run; the JSON still records why). Stages that cannot run
on this machine (TensorRT or pycuda absent, no TensorRT headers) are skipped
with their reason: the check is then kernels-only.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from runtime.cli.args import OneLineParser, existing_dir, output_dir
from runtime.errors import IncompleteRun, guarded
from runtime.safe_io import atomic_write_text

from .checks import FAIL, RUN, Report, plan_stages

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
HEADER_DIRS = (
    "/usr/include/aarch64-linux-gnu",
    "/usr/include/x86_64-linux-gnu",
    "/usr/local/TensorRT/include",
)


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m tools.device_check", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=output_dir, required=True, help="folder for device_check.json and builds")
    p.add_argument(
        "--arch", default=None, help="nvcc -arch (default: nvidia-smi's compute capability, else native)"
    )
    p.add_argument(
        "--trt-include",
        type=existing_dir,
        default=None,
        help="TensorRT include dir for the fused-plugin stage (default: the system's, if any)",
    )
    p.add_argument(
        "--coco-mini",
        type=existing_dir,
        default=SHARED / "data" / "coco-mini" if (SHARED / "data" / "coco-mini").is_dir() else None,
        help="coco-mini folder for the real-pose maps",
    )
    return p


def _trt_version() -> str | None:
    try:
        import tensorrt

        return str(tensorrt.__version__)
    except Exception:  # absent, or present without its libraries: kernels-only
        return None


def _trt_headers(given: Path | None) -> Path | None:
    if given:
        return given
    return next((Path(d) for d in HEADER_DIRS if (Path(d) / "NvInferRuntime.h").is_file()), None)


def _real_maps(coco_mini: Path | None) -> Callable[[], tuple[str, np.ndarray]]:
    def load() -> tuple[str, np.ndarray]:
        from .kernel_stage import gt_heatmaps

        if coco_mini is None:
            raise IncompleteRun(
                "no real maps", "--coco-mini", "pass the coco-mini folder (../shared/data/coco-mini)"
            )
        return "coco-mini", gt_heatmaps(coco_mini)

    return load


def _stage(report: Report, name: str, fn: Callable[[], Any]) -> Any:
    """Run one stage; an exception marks it failed with its one-line reason, the rest goes on."""
    stage = next(s for s in report.stages if s.name == name)
    try:
        return fn()
    except Exception as e:  # recorded, not raised: earlier results stay in the report
        stage.status, stage.reason = FAIL, f"{type(e).__name__}: {e}".splitlines()[0][:400]
        return None


def run(args: argparse.Namespace) -> Report:
    from .gpu import GpuKernels, arch_flag, build_gpu_lib

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    machine: dict[str, Any] = {"tensorrt": _trt_version(), "arch": arch_flag(args.arch)}
    env: dict[str, Any] = {
        "nvcc": shutil.which("nvcc"),
        "cmake": shutil.which("cmake"),
        "tensorrt": machine["tensorrt"],
        "pycuda": importlib.util.find_spec("pycuda") is not None,
        "trt_headers": _trt_headers(args.trt_include),
        "gpu": None,
    }
    gk = None
    if env["nvcc"]:
        t0 = time.perf_counter()
        try:
            gk = GpuKernels(build_gpu_lib(out / "build", machine["arch"]))
            machine["nvcc_build_s"] = round(time.perf_counter() - t0, 1)
            env["gpu"] = gk.device_info()
            machine.update(env["gpu"])
        except Exception as e:
            env["gpu"] = {"error": str(e).splitlines()[0][:300]}
    report = Report(machine, plan_stages(env))
    if report.stages[0].status == RUN:
        got = _stage(
            report,
            "kernels",
            lambda: __import__("tools.device_check.kernel_stage", fromlist=["x"]).run_kernel_stage(
                gk, int(machine["smem_optin"]), _real_maps(args.coco_mini), args.coco_mini
            ),
        )
        if got:
            report.results["kernels"], t = got
            report.timings_ms.update({f"kernels/{k}": v for k, v in t.items()})
    state = {s.name: s.status for s in report.stages}
    if state.get("trt_vs_ort") == RUN:
        from . import trt_stage

        got = _stage(report, "trt_vs_ort", lambda: trt_stage.run_trt_vs_ort(out))
        if got:
            report.results["trt_vs_ort"], t, (root, manifest, be) = got
            report.timings_ms.update(t)
            ov = _stage(report, "stream_overlap", lambda: trt_stage.run_stream_overlap(root, manifest, be))
            if ov:
                report.results["stream_overlap"] = {"router+small+large": ov}
            be.close()
        else:
            next(s for s in report.stages if s.name == "stream_overlap").__dict__.update(
                status=FAIL, reason="needs the trt_vs_ort fixture engines"
            )
        if state.get("fused_plugin") == RUN:
            got = _stage(
                report,
                "fused_plugin",
                lambda: trt_stage.run_fused_plugin(out, env["trt_headers"], machine["sm"]),
            )
            if got:
                report.results["fused_plugin"] = got
    return report


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    t0 = time.perf_counter()
    report = run(args)
    report.machine["wall_s"] = round(time.perf_counter() - t0, 1)
    path = args.out / "device_check.json"
    atomic_write_text(path, report.dumps())
    print(report.text())
    print(f"wrote {path}")
    if report.stages[0].status == FAIL and "kernels" not in report.results:
        raise IncompleteRun(
            f"the device check could not run: {report.stages[0].reason}",
            "this machine",
            f"run it where an NVIDIA GPU and the CUDA toolkit are; details in {path}",
        )
    if report.status() != "pass":
        print(
            f"error: a GPU result differs from the reference ({path}): see the BAD/FAIL lines above",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main, prog="python -m tools.device_check"))
