"""Inference backends behind one interface: ONNX Runtime, TensorRT and Triton, each with its
typed options (runtime.backends.options).

Why a registry with lazy imports: one table instead of if/elif chains (a backend name maps to
``module:Class``), and TensorRT is only imported when asked for.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runtime.backends.base import Backend, BackendError, Pending, Runner, Stream
from runtime.backends.options import BackendOptions

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendError",
    "Pending",
    "Runner",
    "Stream",
    "backend_class",
    "open_backend",
    "resolve_backend_name",
]

BACKENDS: dict[str, str] = {
    "ort": "runtime.backends.ort:OrtBackend",
    "trt": "runtime.backends.trt:TrtBackend",
    "triton": "runtime.backends.triton:TritonBackend",  # pose nets served by Triton (gRPC)
}


def backend_class(name: str) -> type[Backend[Any]]:
    try:
        target = BACKENDS[name]
    except KeyError:
        raise BackendError(
            f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)} or 'auto'"
        ) from None
    module, cls = target.split(":")
    found: type[Backend[Any]] = getattr(importlib.import_module(module), cls)
    return found


def resolve_backend_name(name: str, manifest: Mapping[str, Any]) -> str:
    """'auto' picks TensorRT when the manifest has engines and tensorrt imports, else ORT."""
    if name != "auto":
        return name
    has_engines = any(m.get("engine") for m in manifest.get("models", {}).values())
    if has_engines and importlib.util.find_spec("tensorrt") is not None:
        return "trt"
    return "ort"


def open_backend(
    name: str,
    root: Path,
    manifest: Mapping[str, Any],
    options: BackendOptions | Mapping[str, Any] | None = None,
    **values: Any,
) -> Backend[Any]:
    """The backend ``name`` (auto resolved) with ``options`` and ``values`` on top (e.g. the
    pipeline's ``precision``), checked against what that backend takes."""
    backend = backend_class(resolve_backend_name(name, manifest))(root, manifest, options, **values)
    backend.check()
    return backend
