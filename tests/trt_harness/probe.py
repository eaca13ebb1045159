"""Run the builder and runtime under one TensorRT version's harness; print JSON results.

``python -m tests.trt_harness.probe --major 11`` builds and runs a small
artifacts dir normally ("ok") and with deliberately wrong TensorRT calls
injected into the builder, one scenario each. The meta-test asserts that the
harness fails exactly the calls the given version lacks. A subprocess per
version is needed because two TensorRT versions cannot share one process.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import world as harness

# scenario -> extra call made on the builder config after the normal configuration
BAD_CALLS: dict[str, Callable[[Any, Any], None]] = {
    # (read, not set: setting them on a strongly typed network is a build error on 10.x too)
    "weak_typing_fp16": lambda trt, cfg: cfg.get_flag(trt.BuilderFlag.FP16),  # removed in 11
    "int8_flag": lambda trt, cfg: cfg.get_flag(trt.BuilderFlag.INT8),  # removed in 11
    "explicit_batch": lambda trt, cfg: trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH,  # removed in 11
    "int8_calibrator": lambda trt, cfg: setattr(cfg, "int8_calibrator", None),  # removed in 11
    "tiling_level": lambda trt, cfg: setattr(
        cfg,
        "tiling_optimization_level",  # absent in 10.3
        trt.TilingOptimizationLevel.FAST,
    ),
    "broken_name": lambda trt, cfg: cfg.set_memory_pool_limt(trt.MemoryPoolType.WORKSPACE, 1 << 20),
    "misspelt_property": lambda trt, cfg: setattr(cfg, "builder_optimisation_level", 3),
    "wrong_arg_type": lambda trt, cfg: cfg.set_memory_pool_limit("workspace", 1 << 20),
}


def _run(world: harness.TrtWorld, bad: Callable[[Any, Any], None] | None) -> str:
    from build.trt import build_engines
    from build.trt.builder import EngineBuilder
    from runtime.backends.trt import TrtBackend
    from tools.device_check.tiny_artifacts import make_artifacts

    original = EngineBuilder._config

    def patched(self: EngineBuilder, network: Any, spec: Any) -> Any:
        config = original(self, network, spec)
        if bad is not None:
            bad(self.trt, config)
        return config

    EngineBuilder._config = patched
    try:
        root = Path(tempfile.mkdtemp()) / "dyn-test-orin"
        manifest = make_artifacts(root)
        build_engines(root, manifest, "orin")
        backend = TrtBackend(root, manifest)
        backend.check()
        x = np.random.default_rng(0).normal(size=(3, 3, 256, 192)).astype(np.float32)
        with backend.open_runner("small") as runner:
            out = runner.infer(x, backend.new_stream("small"))["heatmaps"]
        assert out.shape == (3, 17, 64, 48)
        return "ok"
    except AttributeError as e:  # HarnessApiError and the real enums' AttributeError
        return f"{type(e).__name__}: {e}"
    finally:
        EngineBuilder._config = original


def main(argv: list[str] | None = None) -> int:
    from runtime.errors import guarded

    return guarded(_main, argv, prog="python -m tests.trt_harness.probe")


def _main(argv: list[str]) -> None:
    from runtime.cli.args import OneLineParser

    ap = OneLineParser(prog="python -m tests.trt_harness.probe", description=__doc__.splitlines()[0])
    ap.add_argument("--major", required=True, choices=("10", "11"))
    ap.add_argument(
        "--scenarios",
        default="ok," + ",".join(BAD_CALLS),
        type=lambda t: _scenarios(t),
        help="comma list of 'ok' and the BAD_CALLS names",
    )
    args = ap.parse_args(argv)
    results = {}
    for name in args.scenarios:
        world = harness.install(args.major)
        world.dla_cores = 2
        results[name] = _run(world, None if name == "ok" else BAD_CALLS[name])
    print(json.dumps({"version": world.spec.version, "results": results}))


def _scenarios(text: str) -> list[str]:
    names = [t for t in text.split(",") if t]
    unknown = [n for n in names if n != "ok" and n not in BAD_CALLS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown scenario(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from ok, {', '.join(BAD_CALLS)}"
        )
    return names


if __name__ == "__main__":
    raise SystemExit(main())
