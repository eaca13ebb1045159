"""The one interface every inference backend implements.

Shaped like Polygraphy's runners (activate / infer / deactivate, subclasses
fill in ``*_impl``) but asynchronous: the scheduler hands a runner the
caller's :class:`Stream` and gets a :class:`Pending` back, so the same
scheduling code drives TensorRT on CUDA streams and ONNX Runtime on worker
threads without knowing which it has.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import numpy as np
import numpy.typing as npt

from runtime.backends.options import BackendOptions, make_options

Outputs = dict[str, npt.NDArray[Any]]
Batch = npt.NDArray[np.float32]
O = TypeVar("O", bound=BackendOptions)  # noqa: E741 - the options type of one backend


class BackendError(RuntimeError):
    """A backend could not load or run an artifact; the message says how to fix it."""


class Pending(ABC):
    """Work enqueued on a stream; ``wait`` blocks until its outputs are on the host."""

    @abstractmethod
    def wait(self) -> Outputs: ...


class Stream(ABC):
    """An ordered work queue: a CUDA stream (TensorRT) or a worker thread (ORT).

    Work on one stream runs in submission order; work on different streams may
    overlap. That is the only ordering guarantee the scheduler relies on.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    def synchronize(self) -> None: ...

    def close(self) -> None:
        """Release the queue; idempotent. Optional: a queue with nothing to release keeps this."""
        return None


class Runner(ABC):
    """One network loaded on one backend."""

    def __init__(self, role: str, entry: Mapping[str, Any], root: Path) -> None:
        self.role = role
        self.entry = dict(entry)
        self.root = Path(root)
        self.input_name: str = entry["inputs"][0]["name"] if entry.get("inputs") else "input"
        self.output_names: tuple[str, ...] = tuple(o["name"] for o in entry.get("outputs", []))
        self.max_batch: int | None = None  # set by activate_impl where a profile caps N
        self.is_active = False

    # -- lifecycle -----------------------------------------------------------------
    def activate(self) -> Runner:
        if not self.is_active:
            self.activate_impl()
            self.is_active = True
        return self

    def deactivate(self) -> None:
        if self.is_active:
            self.deactivate_impl()
            self.is_active = False

    def __enter__(self) -> Runner:
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    # -- inference ----------------------------------------------------------------
    def infer_async(self, batch: Batch, stream: Stream) -> Pending:
        """Enqueue one batch (N <= max_batch) on ``stream``."""
        if not self.is_active:
            raise BackendError(f"{self.role}: runner used before activate()")
        if batch.ndim != 4 or batch.dtype != np.float32:
            raise BackendError(
                f"{self.role}: input must be float32 [N,3,H,W], got {batch.dtype} {batch.shape}"
            )
        if self.max_batch is not None and batch.shape[0] > self.max_batch:
            raise BackendError(
                f"{self.role}: batch {batch.shape[0]} exceeds the engine profile max "
                f"{self.max_batch}; the scheduler chunks batches, call it instead"
            )
        return self.infer_async_impl(batch, stream)

    def infer(self, batch: Batch, stream: Stream) -> Outputs:
        return self.infer_async(batch, stream).wait()

    @abstractmethod
    def activate_impl(self) -> None: ...

    @abstractmethod
    def infer_async_impl(self, batch: Batch, stream: Stream) -> Pending: ...

    def deactivate_impl(self) -> None:
        """Free buffers/sessions. Optional: the default has nothing to free."""
        return None


class Backend(ABC, Generic[O]):
    """Makes runners for the models of an artifacts dir, and streams to run them on.

    ``options``: this backend's typed options (runtime.backends.options), or a mapping / keyword
    values they are built from; an option this backend does not take is refused, naming it.
    """

    name: str = "base"
    #: Whether this backend runs the artifacts' own files (ONNX, engines), so the runtime must
    #: hash-check them at load; a remote backend (Triton) checks the served models instead.
    local_models: bool = True

    def __init__(
        self,
        root: Path,
        manifest: Mapping[str, Any],
        options: BackendOptions | Mapping[str, Any] | None = None,
        **values: Any,
    ) -> None:
        self.root = Path(root)
        self.manifest = manifest
        # make_options(self.name) builds exactly this backend's options type (OPTIONS[self.name])
        self.options = cast(O, make_options(self.name, options, **values))

    def check(self) -> None:
        """Refuse artifacts this machine cannot run, with a rebuild hint (default: nothing to check)."""

    @abstractmethod
    def open_runner(self, role: str) -> Runner: ...

    @abstractmethod
    def new_stream(self, name: str) -> Stream: ...

    def close(self) -> None:
        """Release backend-wide resources."""
