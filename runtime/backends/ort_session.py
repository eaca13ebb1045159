"""Opening an ONNX Runtime session with the runtime's options: the one place any code does it.

The build times the nets for budget routing (``build/costs.py``), calibrates and
checks them with sessions opened here, so what it measures is what the runtime
runs. A module of its own that imports nothing of the project, because the
Triton python model (``build/triton_models/onnx_model.py``) runs it from a model
repository, where ``build.triton_repo`` copies it beside the model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from onnxruntime import InferenceSession  # untyped: pyproject [tool.mypy] lists onnxruntime

CPU = ("CPUExecutionProvider",)


def open_session(
    model: str | Path | bytes,
    threads: int | None = None,
    providers: Sequence[str] = CPU,
    *,
    quiet: bool = False,
) -> InferenceSession:
    """A session on ``model`` (a path or a serialized ModelProto).

    ``threads`` intra-op threads (default: every core) and one inter-op thread; workers do not
    spin, since the pose nets (and a detector) share the cores and a spinning pool steals them
    from the others; full graph optimisation; of ``providers``, those this machine has (CPU when
    none). ``quiet`` hides ORT's own warnings, for callers that report the problem themselves."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads or os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if quiet:
        so.log_severity_level = 3
    available = set(ort.get_available_providers())
    use = [p for p in providers if p in available] or list(CPU)
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), so, providers=use)
