"""ONNX -> serialized TensorRT engine, plus the sidecar record.

GPU engines are strongly typed and precision is never a builder flag (TensorRT 11
has none): the ONNX chosen by :mod:`build.trt.targets` (Q/DQ INT8, FP16 or fp32)
fixes the tensor types. The one exception is DLA on 10.x, which only takes
weakly typed networks (:func:`build.trt.compat.dla_typing`). Everything
version-specific goes through :mod:`build.trt.compat`.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from runtime.artifacts.manifest import sha256_file
from runtime.backends.trt import JETPACK_BY_L4T, gpu_identity, load_plugin_library, read_l4t
from runtime.errors import EXIT_INPUT, register_expected

from . import compat
from .targets import EngineSpec, int8_fallback, without_dla

log = logging.getLogger(__name__)


class EngineBuildError(RuntimeError):
    """TensorRT could not build an engine; the message names the ONNX and TensorRT's reason."""


register_expected(EngineBuildError, EXIT_INPUT)  # one line at the CLI boundary, exit 2


def _check_deconv_axis(path: Path) -> None:
    """Refuse a Q/DQ ConvTranspose whose weight scales sit on ONNX Runtime's axis (1): TensorRT
    reads them on axis 0 (:data:`compat.DECONV_WEIGHT_AXIS`) and would build an engine that
    computes the wrong deconvolution. Our int8_trt variants are written on axis 0; this catches
    a Q/DQ ONNX quantized elsewhere or by an older build, before TensorRT parses it."""
    import onnx

    from calib.quantize import deconv_axis_problems

    problems = deconv_axis_problems(onnx.load(str(path), load_external_data=False))
    if problems:
        raise EngineBuildError(
            f"{path.name}: {problems[0]}"
            + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")
            + "; rebuild the variant with python -m build.engines (int8_trt "
            "quantizes deconvolution weights on axis 0)"
        )


def timing_cache_path(out_dir: Path, trt_version: str, sm: str, override: str | None) -> Path:
    """One cache per TensorRT version and SM, beside the artifacts so every config reuses it."""
    if override:
        return Path(override)
    return Path(out_dir) / "timing-cache" / f"trt{trt_version}-sm{sm}.cache"


def device_facts(trt: ModuleType) -> dict[str, Any]:
    """TensorRT version, GPU name/SM (pycuda if present, else the driver) and L4T/JetPack."""
    try:
        import pycuda.driver as cuda

        cuda.init()
    except Exception:  # no pycuda, or pycuda without a usable driver: ask the driver directly
        cuda = None
    gpu, sm = gpu_identity(cuda)
    l4t = read_l4t()
    return {
        "trt_version": trt.__version__,
        "gpu": gpu,
        "sm": sm,
        "l4t": l4t,
        "jetpack": JETPACK_BY_L4T.get(l4t or ""),
    }


class EngineBuilder:
    """Builds the engines of one artifacts dir with one TensorRT builder and one timing cache."""

    def __init__(self, trt: ModuleType, cache_path: Path, verbose: bool = False) -> None:
        compat.check_supported(trt)
        self.trt = trt
        self.logger = trt.Logger(trt.Logger.INFO if verbose else trt.Logger.WARNING)
        self.builder = trt.Builder(self.logger)
        # TensorRT's own reason for a failed build goes to the recorder, then into our error line
        self.recorder = compat.make_error_recorder(trt)
        self.builder.error_recorder = self.recorder
        self.cache_path = Path(cache_path)
        self.dla_typing = compat.dla_typing(compat.version_tuple(trt))
        self.dla_cores = compat.num_dla_cores(self.builder)
        self._cache: Any = None  # one ITimingCache shared by every build of this run

    # -- pieces --------------------------------------------------------------------
    def _parse(self, spec: EngineSpec) -> tuple[Any, Any]:
        trt = self.trt
        if spec.precision == "int8":
            _check_deconv_axis(spec.onnx)
        if spec.plugin_ops:
            if not spec.plugin_lib:
                raise EngineBuildError(
                    f"{spec.onnx.name} holds plugin nodes {spec.plugin_ops}; pass "
                    "--plugin-lib PATH to the built plugin library (kernels/)"
                )
            load_plugin_library(trt, Path(spec.plugin_lib), spec.role)
        weak = spec.dla_core is not None and self.dla_typing == "weak"
        network = self.builder.create_network(compat.network_flags(trt, weakly_typed=weak))
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(str(spec.onnx)):
            errors = "; ".join(compat.parser_errors(parser)) or "no details"
            raise EngineBuildError(f"TensorRT could not parse {spec.onnx}: {errors}")
        return network, parser

    def _config(self, network: Any, spec: EngineSpec) -> Any:
        trt = self.trt
        config = self.builder.create_builder_config()
        if self._cache is None:
            data = self.cache_path.read_bytes() if self.cache_path.is_file() else b""
            self._cache = config.create_timing_cache(data)
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_mb << 20)
        config.builder_optimization_level = spec.opt_level
        profile = self.builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            chw = tuple(tensor.shape)[1:]
            lo, opt, hi = spec.profile.shapes(chw)
            profile.set_shape(tensor.name, lo, opt, hi)
        if config.add_optimization_profile(profile) < 0:
            raise EngineBuildError(f"{spec.role}: TensorRT rejected the profile {spec.profile}")
        if spec.dla_core is not None:
            config.default_device_type = trt.DeviceType.DLA
            config.DLA_core = spec.dla_core
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
            for flag in compat.dla_precision_flags(spec.precision, self.dla_typing):
                config.set_flag(getattr(trt.BuilderFlag, flag))
            config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # per-layer placement readable
        if not config.set_timing_cache(self._cache, False):
            raise EngineBuildError(f"timing cache {self.cache_path} does not match this device; delete it")
        return config

    def _save_cache(self, config: Any) -> None:
        """Persist the (now richer) cache so the next build, of any config, skips known tactics."""
        cache = config.get_timing_cache()
        if cache is not None:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            self.cache_path.write_bytes(bytes(cache.serialize()))

    def _deserialize(self, plan: bytes, dla_core: int | None) -> Any:
        runtime = self.trt.Runtime(self.logger)
        runtime.error_recorder = self.recorder
        if dla_core is not None:
            runtime.DLA_core = dla_core
        self.recorder.clear()
        engine = runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise EngineBuildError(
                "TensorRT built an engine it cannot deserialize: "
                + (self.recorder.summary() or "no reason reported")
            )
        return engine

    def _io(self, engine: Any) -> list[dict[str, Any]]:
        """The engine's real I/O (a variant such as the fused decode differs from the fp32 net)."""
        trt = self.trt
        io = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            io.append(
                {
                    "name": name,
                    "mode": "input" if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "output",
                    "dtype": str(engine.get_tensor_dtype(name)).split(".")[-1].lower(),
                    "shape": list(engine.get_tensor_shape(name)),
                }
            )
        return io

    def dla_layers(self, engine: Any) -> int | None:
        """How many engine layers run on DLA (engine inspector); None when unreadable."""
        info = engine.create_engine_inspector().get_engine_information(self.trt.LayerInformationFormat.JSON)
        return compat.count_dla_layers(info)

    # -- one engine ----------------------------------------------------------------
    def _serialize(self, spec: EngineSpec) -> tuple[bytes | None, str]:
        """(plan, '') or (None, TensorRT's reason)."""
        network, _parser = self._parse(spec)  # the parser must outlive the build
        config = self._config(network, spec)
        self.recorder.clear()
        plan = self.builder.build_serialized_network(network, config)
        if plan is None:
            return (
                None,
                self.recorder.summary() or "TensorRT reported no reason; run with --verbose for the log",
            )
        self._save_cache(config)
        return bytes(plan), ""

    def _where(self, spec: EngineSpec) -> EngineSpec:
        """Drop DLA where this TensorRT release or device has none."""
        if spec.dla_core is None:
            return spec
        if self.dla_typing is None:
            log.warning(
                "%s: TensorRT %s has no DLA (11.0-11.4.0; DLA returns in 11.4.1): building for the GPU",
                spec.role,
                self.trt.__version__,
            )
            return without_dla(spec)
        if spec.dla_core >= self.dla_cores:
            log.warning(
                "%s: no DLA core %d on this device (%d cores): building for the GPU",
                spec.role,
                spec.dla_core,
                self.dla_cores,
            )
            return without_dla(spec)
        return spec

    def build(self, spec: EngineSpec) -> tuple[bytes, EngineSpec, dict[str, Any]]:
        """(plan, the spec actually built, notes for the record).

        DLA falls back to the GPU when absent, failing, or when the built engine has no
        layer on DLA; a failed INT8 build falls back to the FP16 (else fp32) ONNX of the
        same net with one printed line and a ``fallback`` note, instead of aborting.
        """
        notes: dict[str, Any] = {}
        spec = first = self._where(spec)
        plan, reason = self._serialize(spec)
        if plan is None and spec.dla_core is not None:
            log.warning("%s: DLA build failed (%s): retrying on the GPU", spec.role, reason)
            notes["dla_fallback"] = f"DLA build failed: {reason}"
            spec = without_dla(spec)
            plan, reason = self._serialize(spec)
        if plan is None and spec.precision == "int8" and spec.fallback_onnx:
            notes.pop("dla_fallback", None)  # INT8 was the problem: the FP16 engine may still use DLA
            fb = int8_fallback(first)
            print(
                f"{spec.role}: INT8 engine build failed ({reason}); building {fb.precision.upper()} "
                f"from {fb.onnx.name} instead",
                flush=True,
            )
            notes["fallback"] = {"from": "int8", "to": fb.precision, "onnx": spec.onnx.name, "reason": reason}
            return self._finish(fb, notes)
        if plan is None:
            raise EngineBuildError(f"TensorRT failed to build {spec.onnx.name}: {reason}")
        return self._placed(plan, spec, notes)

    def _finish(self, spec: EngineSpec, notes: dict[str, Any]) -> tuple[bytes, EngineSpec, dict[str, Any]]:
        spec = self._where(spec)
        plan, reason = self._serialize(spec)
        if plan is None and spec.dla_core is not None:
            spec = without_dla(spec)
            plan, reason = self._serialize(spec)
        if plan is None:
            raise EngineBuildError(f"TensorRT failed to build {spec.onnx.name}: {reason}")
        return self._placed(plan, spec, notes)

    def _placed(
        self, plan: bytes, spec: EngineSpec, notes: dict[str, Any]
    ) -> tuple[bytes, EngineSpec, dict[str, Any]]:
        """Record DLA only if layers really run there; else rebuild with the dynamic GPU profile
        (a static DLA batch on an all-GPU engine would pad every call for nothing)."""
        if spec.dla_core is None:
            return plan, spec, notes
        n = self.dla_layers(self._deserialize(plan, spec.dla_core))
        if n:
            notes["dla_layers"] = n
            return plan, spec, notes
        why = "no layer runs on DLA" if n == 0 else "the engine does not say where its layers run"
        log.warning(
            "%s: %s (TensorRT placed it on the GPU): rebuilding for the GPU with a dynamic profile",
            spec.role,
            why,
        )
        notes["dla_fallback"] = why
        spec = without_dla(spec)
        plan2, reason = self._serialize(spec)
        if plan2 is None:
            raise EngineBuildError(f"TensorRT failed to build {spec.onnx.name} for the GPU: {reason}")
        return plan2, spec, notes

    def build_and_record(self, spec: EngineSpec, facts: dict[str, Any], target: str) -> dict[str, Any]:
        """Build, write ``<role>.engine`` and ``<role>.engine.json``; return the manifest record."""
        t0 = time.perf_counter()
        plan, spec, notes = self.build(spec)
        io = self._io(self._deserialize(plan, spec.dla_core))
        spec.engine.write_bytes(plan)
        record = {
            "path": spec.engine.name,
            "sha256": sha256_file(spec.engine),  # the runtime checks it at load
            "precision": spec.precision,
            "target": target,
            **facts,
            "onnx": spec.onnx.name,
            "onnx_sha256": sha256_file(spec.onnx),
            "profiles": [{"min": spec.profile.min, "opt": spec.profile.opt, "max": spec.profile.max}],
            "dla_core": spec.dla_core,
            "workspace_mb": spec.workspace_mb,
            # a static profile (DLA) pads every call to this batch: the runtime reports the padding
            "static_batch": spec.profile.max if spec.profile.min == spec.profile.max else None,
            "builder_optimization_level": spec.opt_level,
            "plugin_library": spec.plugin_lib,
            "plugin_ops": spec.plugin_ops,
            "timing_cache": str(self.cache_path),
            "io": io,
            "built_with": "python",
            "build_time_s": round(time.perf_counter() - t0, 2),
            **notes,
        }
        spec.engine.with_suffix(".engine.json").write_text(json.dumps(record, indent=2) + "\n")
        return record


def build_all(
    trt: ModuleType,
    specs: list[EngineSpec],
    out_dir: Path,
    target: str,
    timing_cache: str | None = None,
    verbose: bool = False,
) -> dict[str, dict[str, Any]]:
    """role -> engine record for every spec."""
    facts = device_facts(trt)
    cache = timing_cache_path(out_dir, facts["trt_version"], facts["sm"], timing_cache)
    builder = EngineBuilder(trt, cache, verbose=verbose)
    records = {}
    for spec in specs:
        log.info("building %s (%s, batch %s)", spec.engine.name, spec.precision, spec.profile)
        records[spec.role] = builder.build_and_record(spec, facts, target)
    return records
