"""TensorRT engines for the exported nets, or a ``build_plan.sh`` where TensorRT is absent.

The CLI (build/engines.py) needs two calls::

    from build.trt import add_trt_arguments, build_or_plan
    add_trt_arguments(parser)                     # --target --require-trt --max-batch-* ...
    rc = build_or_plan(artifacts_dir, manifest, args)   # mutates manifest; 0 = fine

Modules: targets (devices and per-engine specs), compat (all TensorRT
version differences), builder (Python builder + sidecar records), plan
(trtexec script), record (records for trtexec-built engines).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from runtime.cli.args import output_file, positive_int

from .plan import PLAN_NAME, write_plan
from .targets import TARGETS, BuildOptions, engine_specs, get_target

log = logging.getLogger(__name__)


def add_trt_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("TensorRT engines")
    g.add_argument(
        "--target",
        default="cpu",
        choices=sorted(TARGETS),
        help="device to build engines for (cpu = ONNX Runtime only, no engines)",
    )
    g.add_argument(
        "--require-trt",
        action="store_true",
        help="fail (exit 3) instead of writing build_plan.sh when TensorRT or a GPU is missing",
    )
    g.add_argument(
        "--max-batch-router", type=positive_int, default=None, help="router profile max batch (default 128)"
    )
    g.add_argument(
        "--max-batch-pose",
        type=positive_int,
        default=None,
        help="pose-net profile max batch (default 64; 32 on orin-nano)",
    )
    g.add_argument(
        "--dla",
        default="auto",
        help="router on DLA: auto (orin: core 0 when the device has DLA), off, or a core index",
    )
    g.add_argument(
        "--dla-batch", type=positive_int, default=None, help="static router batch on DLA (default 32)"
    )
    g.add_argument(
        "--workspace-mb", type=positive_int, default=None, help="builder WORKSPACE pool limit in MiB"
    )
    g.add_argument(
        "--opt-level",
        type=int,
        default=None,
        choices=range(0, 6),
        help="builder optimisation level 0-5 (default 3)",
    )
    g.add_argument(
        "--timing-cache",
        default=None,
        type=output_file,
        help="timing cache file (default OUT/timing-cache/trt<ver>-sm<sm>.cache, reused across builds)",
    )
    # Not checked here: off the device the path names the .so on the Jetson, where build_plan.sh
    # runs (check_trt_flags checks it when this machine builds the engines itself).
    g.add_argument(
        "--plugin-lib",
        default=None,
        help="TensorRT plugin .so for ONNX files with plugin nodes (a path on the machine that builds "
        "the engines)",
    )


def _str_or_none(p: object) -> str | None:
    return None if p is None else str(p)  # paths go into JSON records as strings


def options_from_args(args: argparse.Namespace) -> BuildOptions:
    return BuildOptions(
        max_batch_router=getattr(args, "max_batch_router", None),
        max_batch_pose=getattr(args, "max_batch_pose", None),
        dla=str(getattr(args, "dla", "auto")),
        dla_batch=getattr(args, "dla_batch", None),
        workspace_mb=getattr(args, "workspace_mb", None),
        opt_level=getattr(args, "opt_level", None),
        timing_cache=_str_or_none(getattr(args, "timing_cache", None)),
        plugin_lib=_str_or_none(getattr(args, "plugin_lib", None)),
        precision=getattr(args, "precision", None) or "auto",
        require_trt=bool(getattr(args, "require_trt", False)),
    )


def check_trt_flags(args: argparse.Namespace) -> None:
    """The TensorRT flags that argparse cannot check alone (``--dla``), before any export."""
    from .targets import _dla_core

    _dla_core(get_target(args.target), options_from_args(args))
    lib = getattr(args, "plugin_lib", None)
    if (
        lib
        and get_target(args.target).name != "cpu"
        and probe_tensorrt()[0] is not None
        and not Path(lib).is_file()
    ):
        from runtime.errors import InputError

        raise InputError(
            "the plugin library does not exist on this machine, which builds the engines",
            f"--plugin-lib {lib}",
            "pass the path of libdynpose_plugins.so (kernels/plugin)",
        )


def no_trt_message(artifacts_dir: Path, manifest: MutableMapping[str, Any], target: str, reason: str) -> str:
    """The one line printed when engines cannot be built here."""
    d = Path(artifacts_dir)
    return (
        f"TensorRT engines not built ({reason}): engines must be built on the device - copy {d} there and run "
        f"`python -m build.engines --config {manifest.get('config', '<config>')} --target {target} "
        f"--out {d.parent}` or `bash {d / PLAN_NAME}` (trtexec)"
    )


def probe_tensorrt() -> tuple[Any, dict[str, Any] | None, str]:
    """(tensorrt module, device facts, '') when engines can be built here, else (None, None, reason)."""
    try:
        import tensorrt as trt
    except ImportError:
        return None, None, "no TensorRT Python bindings on this machine"
    except OSError as e:  # bindings present but libnvinfer missing or broken
        return None, None, f"TensorRT bindings present but their libraries do not load ({e})"
    from runtime.backends.base import BackendError

    from .builder import device_facts

    try:
        return trt, device_facts(trt), ""
    except BackendError as e:
        return None, None, f"TensorRT {trt.__version__} present but {e}"


def build_engines(
    artifacts_dir: Path,
    manifest: MutableMapping[str, Any],
    target: str,
    options: BuildOptions | None = None,
    trt: Any = None,
) -> MutableMapping[str, Any]:
    """Build every engine for ``target`` and record it under ``models.<role>.engine`` (``options``
    None: the target's defaults)."""
    from .builder import build_all

    options = options or BuildOptions()
    if trt is None:
        import tensorrt as trt
    root = Path(artifacts_dir)
    specs = engine_specs(root, manifest, get_target(target), options)
    records = build_all(trt, specs, root.parent, target, options.timing_cache)
    for role, record in records.items():
        manifest["models"][role]["engine"] = record
    return manifest


def build_or_plan(
    artifacts_dir: Path,
    manifest: MutableMapping[str, Any],
    args: argparse.Namespace,
    final_dir: Path | None = None,
) -> int:
    """Write build_plan.sh, then build engines if TensorRT and a GPU are here. Returns the exit code.

    Mutates ``manifest`` (``trt_plan`` always, ``models.<role>.engine`` when built);
    the caller writes it. Prints one line when engines could not be built, naming
    ``final_dir`` (where a staged build lands) instead of the staging folder.
    """
    root = Path(artifacts_dir)
    target = get_target(args.target)
    opts = options_from_args(args)
    if not target.builds_engines:
        return 0
    specs = engine_specs(root, manifest, target, opts)
    write_plan(specs, target, manifest.get("config", "?"), root)
    manifest["trt_plan"] = {
        "target": target.name,
        "script": PLAN_NAME,
        "engines": {s.role: s.to_dict() for s in specs},
    }
    trt, _facts, reason = probe_tensorrt()
    if trt is None:
        msg = no_trt_message(final_dir or root, manifest, target.name, reason)
        if opts.require_trt:
            print(f"error: {msg}", file=sys.stderr, flush=True)
            return 3
        print(msg, flush=True)
        return 0
    build_engines(root, manifest, target.name, opts, trt=trt)
    return 0


__all__ = [
    "add_trt_arguments",
    "build_engines",
    "check_trt_flags",
    "build_or_plan",
    "no_trt_message",
    "options_from_args",
    "probe_tensorrt",
    "BuildOptions",
]
