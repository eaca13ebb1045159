"""ONNX -> serialized TensorRT engine, strongly typed, plus the sidecar record.

Precision is never a builder flag (TensorRT 11 has none): the ONNX chosen by
:mod:`build.trt.targets` (Q/DQ INT8, FP16 or fp32) fixes the tensor types.
Everything version-specific goes through :mod:`build.trt.compat`.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from runtime.backends.trt import JETPACK_BY_L4T, gpu_identity, load_plugin_library, read_l4t
from runtime.errors import EXIT_INPUT, register_expected
from runtime.manifest import sha256_file

from . import compat
from .targets import EngineSpec, without_dla

log = logging.getLogger(__name__)


class EngineBuildError(RuntimeError):
    """TensorRT could not build an engine; the message names the ONNX and TensorRT's reason."""


register_expected(EngineBuildError, EXIT_INPUT)


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
    return {"trt_version": trt.__version__, "gpu": gpu, "sm": sm, "l4t": l4t,
            "jetpack": JETPACK_BY_L4T.get(l4t or "")}


class EngineBuilder:
    """Builds the engines of one artifacts dir with one TensorRT builder and one timing cache."""

    def __init__(self, trt: ModuleType, cache_path: Path, verbose: bool = False) -> None:
        compat.check_supported(trt)
        self.trt = trt
        self.logger = trt.Logger(trt.Logger.INFO if verbose else trt.Logger.WARNING)
        self.builder = trt.Builder(self.logger)
        self.cache_path = Path(cache_path)
        self.dla_cores = compat.num_dla_cores(self.builder)
        self._cache: Any = None  # one ITimingCache shared by every build of this run

    # -- pieces --------------------------------------------------------------------
    def _parse(self, spec: EngineSpec) -> tuple[Any, Any]:
        trt = self.trt
        if spec.plugin_ops:
            if not spec.plugin_lib:
                raise EngineBuildError(f"{spec.onnx.name} holds plugin nodes {spec.plugin_ops}; pass "
                                       "--plugin-lib PATH to the built plugin library (kernels/)")
            load_plugin_library(trt, Path(spec.plugin_lib), spec.role)
        network = self.builder.create_network(compat.network_flags(trt))
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
        if not config.set_timing_cache(self._cache, False):
            raise EngineBuildError(f"timing cache {self.cache_path} does not match this device; delete it")
        return config

    def _save_cache(self, config: Any) -> None:
        """Persist the (now richer) cache so the next build, of any config, skips known tactics."""
        cache = config.get_timing_cache()
        if cache is not None:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            self.cache_path.write_bytes(bytes(cache.serialize()))

    def _io(self, plan: bytes, dla_core: int | None) -> list[dict[str, Any]]:
        """Deserialize once to record the engine's real I/O (and prove it loads)."""
        trt = self.trt
        runtime = trt.Runtime(self.logger)
        if dla_core is not None:
            runtime.DLA_core = dla_core
        engine = runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise EngineBuildError("TensorRT built an engine it cannot deserialize")
        io = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            io.append({"name": name,
                       "mode": "input" if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "output",
                       "dtype": str(engine.get_tensor_dtype(name)).split(".")[-1].lower(),
                       "shape": list(engine.get_tensor_shape(name))})
        return io

    # -- one engine ----------------------------------------------------------------
    def build(self, spec: EngineSpec) -> tuple[bytes, EngineSpec]:
        """Serialized plan for ``spec``; DLA falls back to the GPU when absent or failing."""
        if spec.dla_core is not None and spec.dla_core >= self.dla_cores:
            log.warning("%s: no DLA core %d on this device (%d cores): building for the GPU",
                        spec.role, spec.dla_core, self.dla_cores)
            spec = without_dla(spec)
        network, _parser = self._parse(spec)  # the parser must outlive the build
        config = self._config(network, spec)
        plan = self.builder.build_serialized_network(network, config)
        if plan is None and spec.dla_core is not None:
            log.warning("%s: DLA build failed: retrying on the GPU", spec.role)
            return self.build(without_dla(spec))
        if plan is None:
            raise EngineBuildError(f"TensorRT failed to build {spec.onnx.name} (run with --verbose for the log)")
        self._save_cache(config)
        return bytes(plan), spec

    def build_and_record(self, spec: EngineSpec, facts: dict[str, Any], target: str) -> dict[str, Any]:
        """Build, write ``<role>.engine`` and ``<role>.engine.json``; return the manifest record."""
        t0 = time.perf_counter()
        plan, spec = self.build(spec)
        io = self._io(plan, spec.dla_core)
        spec.engine.write_bytes(plan)
        record = {
            "path": spec.engine.name, "sha256": sha256_file(spec.engine),   # the runtime checks it at load
            "precision": spec.precision, "target": target,
            **facts,
            "onnx": spec.onnx.name, "onnx_sha256": sha256_file(spec.onnx),
            "profiles": [{"min": spec.profile.min, "opt": spec.profile.opt, "max": spec.profile.max}],
            "dla_core": spec.dla_core, "workspace_mb": spec.workspace_mb,
            "builder_optimization_level": spec.opt_level,
            "plugin_library": spec.plugin_lib, "plugin_ops": spec.plugin_ops,
            "timing_cache": str(self.cache_path), "io": io, "built_with": "python",
            "build_time_s": round(time.perf_counter() - t0, 2),
        }
        spec.engine.with_suffix(".engine.json").write_text(json.dumps(record, indent=2) + "\n")
        return record


def build_all(trt: ModuleType, specs: list[EngineSpec], out_dir: Path, target: str,
              timing_cache: str | None = None, verbose: bool = False) -> dict[str, dict[str, Any]]:
    """role -> engine record for every spec."""
    facts = device_facts(trt)
    cache = timing_cache_path(out_dir, facts["trt_version"], facts["sm"], timing_cache)
    builder = EngineBuilder(trt, cache, verbose=verbose)
    records = {}
    for spec in specs:
        log.info("building %s (%s, batch %s)", spec.engine.name, spec.precision, spec.profile)
        records[spec.role] = builder.build_and_record(spec, facts, target)
    return records


