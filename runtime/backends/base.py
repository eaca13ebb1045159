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
from runtime.errors import EXIT_INPUT, register_expected

Outputs = dict[str, npt.NDArray[Any]]
Batch = npt.NDArray[np.float32]
O = TypeVar("O", bound=BackendOptions)  # noqa: E741 - the options type of one backend


class BackendError(RuntimeError):
    """A backend could not load or run an artifact; the message says how to fix it."""


register_expected(BackendError, EXIT_INPUT)  # an expected error: one line, exit 2, at any CLI boundary


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

    @property
    def crops_refusal(self) -> str | None:
        """None when this runner can take crops made on the device from an uploaded frame
        (:meth:`infer_crops_async`), else why not, in one line. A runner that cannot keeps the
        default: the pipeline then makes every crop on the host and hands it arrays."""
        return f"the {type(self).__name__} takes host crops only"

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

    def infer_crops_async(
        self,
        frame: Any,
        affines: npt.NDArray[np.float64],
        norm: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]],
        stream: Stream,
    ) -> Pending:
        """Enqueue the net on crops made on the device from ``frame`` (:meth:`Backend.upload_frame`)
        with image->crop ``affines`` [n,2,3] and the (mean, std) RGB normalisation. Refused unless
        :attr:`crops_refusal` is None; callers ask :func:`device_crops_plan` first."""
        raise BackendError(f"{self.role}: crops cannot be made on the device: {self.crops_refusal}")

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
    #: Whether this backend can make crops on its device (its runners then say per net in
    #: ``crops_refusal`` whether they do), so a pipeline left with host crops says why loudly.
    device_crops: bool = False

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

    def upload_frame(self, image: npt.NDArray[np.uint8], stream: Stream, ring: int = 2) -> Any:
        """One HxWx3 uint8 frame onto the device for :meth:`Runner.infer_crops_async` (backends
        with ``device_crops``); ``ring`` frames stay alive at once. Refused by the others."""
        raise BackendError(
            f"the {self.name} backend makes no crops on a device; its crops come from the host"
        )

    def close(self) -> None:
        """Release backend-wide resources."""


def device_crops_plan(runners: Mapping[str, Any]) -> str | None:
    """The pipeline's choice, made once: None when every net's runner can take its crops from the
    device (upload the frame once, no host crops at all), else the first reason why not, naming
    the net; then all crops stay on the host (one path per pipeline, never a mix)."""
    for role, runner in runners.items():
        why = getattr(runner, "crops_refusal", f"the {type(runner).__name__} backend has no device crops")
        if why is not None:
            return f"{role}: {why}"
    return None
