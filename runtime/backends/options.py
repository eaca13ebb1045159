"""Typed options, one dataclass per backend, checked when they are built.

Why: backend options used to travel as an untyped ``**options`` bag, so ``--threads`` was
silently ignored on TensorRT and a misspelled Triton option (``triton_ulr=``) was accepted.
Each backend now names the options it takes; anything else is refused in one line naming it
(exit 2), when the options are built: at the CLI edge (runtime.cli.args.backend_options), in
``load_pipeline`` and in a backend's constructor, before a net, an engine or a server is touched.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeAlias

from runtime.errors import InputError

# ONNX Runtime execution providers per ``providers`` option, in preference order.
PROVIDERS: dict[str, list[str]] = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
DEFAULT_TIMEOUT_S = (
    30.0  # per Triton request: generous for an overloaded CPU server; a dead one fails at once
)


class BackendOptionError(InputError, ValueError):
    """A backend option this backend does not take, or a value out of range (exit 2 in a CLI)."""


def _positive_int(name: str, v: object, allow_none: bool = False) -> None:
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise BackendOptionError(f"backend option {name} must be an integer >= 1, got {v!r}", name)


def _name(name: str, v: object, hint: str) -> None:
    if not isinstance(v, str) or not v:
        raise BackendOptionError(f"backend option {name} must be a non-empty string, got {v!r}", name, hint)


def _flag(name: str, v: object) -> None:
    if not isinstance(v, bool):
        raise BackendOptionError(f"backend option {name} must be True or False, got {v!r}", name)


@dataclass(frozen=True)
class OrtOptions:
    """ONNX Runtime: ``precision`` (a variant in the manifest: fp32, int8_cpu, fp16 ...),
    ``providers`` (cpu | cuda | tensorrt), ``threads`` per session (None: all cores),
    ``quantize_router`` (run the int8 router too), ``overlap_nets`` (a worker per pose net on CPU)."""

    precision: str = "fp32"
    providers: str = "cpu"
    threads: int | None = None
    quantize_router: bool = False
    overlap_nets: bool = False

    def __post_init__(self) -> None:
        _name("precision", self.precision, "pass e.g. 'fp32' or 'int8_cpu'")
        if self.providers not in PROVIDERS:
            raise BackendOptionError(
                f"unknown providers {self.providers!r}", "providers", f"choose one of {', '.join(PROVIDERS)}"
            )
        _positive_int("threads", self.threads, allow_none=True)
        _flag("quantize_router", self.quantize_router)
        _flag("overlap_nets", self.overlap_nets)


@dataclass(frozen=True)
class TrtOptions:
    """TensorRT: the manifest's engines on device 0. ``precision`` is the pipeline's (the engines
    were built at theirs); ``plugin_lib`` overrides the manifest's plugin library path; ``slots``
    is the number of buffer sets per runner (requests in flight)."""

    precision: str = "fp32"
    plugin_lib: str | Path | None = None
    slots: int = 2

    def __post_init__(self) -> None:
        _name("precision", self.precision, "pass e.g. 'fp32'")
        if self.plugin_lib is not None:
            _name("plugin_lib", str(self.plugin_lib), "pass the path of the plugin library (.so)")
        _positive_int("slots", self.slots)


@dataclass(frozen=True)
class TritonOptions:
    """Triton: ``url`` (HOST:PORT of the gRPC endpoint, required), ``timeout_s`` per request,
    ``models`` ({role: served model name}, default the role names)."""

    url: str = ""
    precision: str = "fp32"
    timeout_s: float = DEFAULT_TIMEOUT_S
    models: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        host, sep, port = self.url.rpartition(":") if isinstance(self.url, str) else ("", "", "")
        if not (sep and host and port.isdigit() and "://" not in self.url):
            raise BackendOptionError(
                f"the triton backend needs the server's gRPC address, got {self.url!r}",
                "url",
                "pass --triton-url HOST:PORT (url='HOST:PORT' in the API), e.g. 127.0.0.1:8001, no scheme",
            )
        _name("precision", self.precision, "pass e.g. 'fp32'")
        t = self.timeout_s
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise BackendOptionError(
                f"backend option timeout_s must be a finite number > 0, got {t!r}", "timeout_s"
            )
        if not isinstance(self.models, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in self.models.items()
        ):
            raise BackendOptionError(
                f"backend option models must map roles to served model names, got {self.models!r}",
                "models",
                "pass e.g. {'small': 'small_fp16'}",
            )


BackendOptions: TypeAlias = OrtOptions | TrtOptions | TritonOptions

# backend name -> its options; "auto" picks ort or trt (runtime.backends.resolve_backend_name).
OPTIONS: dict[str, type[BackendOptions]] = {"ort": OrtOptions, "trt": TrtOptions, "triton": TritonOptions}
TITLES = {"ort": "ONNX Runtime", "trt": "TensorRT", "triton": "Triton", "auto": "--backend auto"}
AUTO = ("ort", "trt")


def names(backend: str) -> tuple[str, ...]:
    """The option names ``backend`` takes (for auto: those of either backend it may pick)."""
    kinds = AUTO if backend == "auto" else (backend,)
    return tuple(dict.fromkeys(f.name for k in kinds for f in fields(OPTIONS[k])))


def given(options: BackendOptions | Mapping[str, Any] | None) -> dict[str, Any]:
    """The values a caller set: a mapping as is; a dataclass's fields that differ from their defaults."""
    if options is None:
        return {}
    if isinstance(options, Mapping):
        return dict(options)
    if not isinstance(options, (OrtOptions, TrtOptions, TritonOptions)):
        raise BackendOptionError(
            f"backend_options must be a dict or a backend's options, got {type(options).__name__}",
            "backend_options",
            "pass e.g. {'threads': 2} or runtime.backends.options.OrtOptions(threads=2)",
        )
    out: dict[str, Any] = {}
    for f in fields(options):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if getattr(options, f.name) != default:
            out[f.name] = getattr(options, f.name)
    return out


def _refuse_unknown(backend: str, values: Mapping[str, Any]) -> None:
    known = names(backend)
    unknown = [k for k in values if k not in known]
    if unknown:
        many = len(unknown) > 1
        raise BackendOptionError(
            f"{TITLES.get(backend, backend)} does not take the option{'s' if many else ''} {', '.join(unknown)}",
            f"--backend {backend}",
            f"its options are {', '.join(known)}; drop {'them' if many else 'it'}, or pick the backend "
            f"{'they belong' if many else 'it belongs'} to",
        )


def make_options(
    backend: str, options: BackendOptions | Mapping[str, Any] | None = None, **values: Any
) -> BackendOptions:
    """``backend``'s typed options from ``options`` (typed or a mapping) with ``values`` on top;
    an option ``backend`` does not take is refused, naming it.

    For ``auto`` the options go to ONNX Runtime unless they name TensorRT-only options; the
    backend auto finally picks builds its own from them (and refuses what it does not take).
    """
    if backend not in OPTIONS and backend != "auto":
        raise BackendOptionError(
            f"unknown backend {backend!r}", "--backend", f"choose one of auto, {', '.join(OPTIONS)}"
        )
    if backend in OPTIONS and isinstance(options, OPTIONS[backend]) and not values:
        return options
    set_before = given(options)
    twice = [k for k in values if k in set_before and set_before[k] != values[k]]
    if twice:  # e.g. backend_options={"precision": ...} beside the pipeline's own precision
        k = twice[0]
        raise BackendOptionError(
            f"backend option {k} given twice: {set_before[k]!r} in the options, {values[k]!r} beside them",
            k,
            f"set {k} in one place (the pipeline's {k} option)",
        )
    merged = {**set_before, **values}
    _refuse_unknown(backend, merged)
    if backend == "auto":
        ort_names = names("ort")
        backend = "ort" if all(k in ort_names for k in merged) else "trt"
        _refuse_unknown(backend, merged)  # ONNX Runtime and TensorRT options together
    try:
        return OPTIONS[backend](**merged)
    except TypeError as e:  # a required option missing (Triton's url)
        raise BackendOptionError(str(e), f"--backend {backend}") from None
