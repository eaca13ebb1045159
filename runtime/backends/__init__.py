"""Backend registry with lazy imports: TensorRT is only imported when asked for.

One table instead of if/elif chains: a backend name maps to ``module:Class``.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runtime.backends.base import Backend, BackendError, Pending, Runner, Stream  # noqa: F401

BACKENDS: dict[str, str] = {
    "ort": "runtime.backends.ort:OrtBackend",
    "trt": "runtime.backends.trt:TrtBackend",
    "triton": "runtime.backends.triton:TritonBackend",  # pose nets served by Triton (gRPC)
}


def backend_class(name: str) -> type[Backend]:
    try:
        target = BACKENDS[name]
    except KeyError:
        raise BackendError(
            f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)} or 'auto'"
        ) from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


def resolve_backend_name(name: str, manifest: Mapping[str, Any]) -> str:
    """'auto' picks TensorRT when the manifest has engines and tensorrt imports, else ORT."""
    if name != "auto":
        return name
    has_engines = any(m.get("engine") for m in manifest.get("models", {}).values())
    if has_engines and importlib.util.find_spec("tensorrt") is not None:
        return "trt"
    return "ort"


def open_backend(name: str, root: Path, manifest: Mapping[str, Any], **options: Any) -> Backend:
    backend = backend_class(resolve_backend_name(name, manifest))(root, manifest, **options)
    backend.check()
    return backend
