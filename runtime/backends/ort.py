"""ONNX Runtime backend: any CPU (and CUDA/TensorRT execution providers where present).

A "stream" is one worker thread: ONNX Runtime releases the GIL inside
``run``, so work on different streams really overlaps, as on CUDA streams.
On the CPU provider the small and the large net share one worker (see
``OrtBackend.new_stream``): both at once only oversubscribe the cores.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.artifacts.manifest import model_file
from runtime.backends.base import Backend, BackendError, Batch, Outputs, Pending, Runner, Stream
from runtime.backends.options import PROVIDERS, OrtOptions
from runtime.backends.ort_session import open_session

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

Timed = tuple[Outputs, float]  # a run's outputs and its milliseconds


class OrtStream(Stream):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ort-{name}")
        self._last: Future[Timed] | None = None

    def submit(self, fn: Callable[[], Timed]) -> Future[Timed]:
        self._last = self._pool.submit(fn)
        return self._last

    def synchronize(self) -> None:
        if self._last is not None:
            self._last.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class OrtPending(Pending):
    def __init__(self, future: Future[Timed]) -> None:
        self._future = future
        self.elapsed_ms: float | None = None

    def wait(self) -> Outputs:
        out, self.elapsed_ms = self._future.result()
        return out


class OrtRunner(Runner):
    def __init__(
        self, role: str, entry: Mapping[str, Any], root: Path, path: Path, providers: list[str], threads: int
    ) -> None:
        super().__init__(role, entry, root)
        self.path = path
        self.providers = providers
        self.threads = threads
        self.session: InferenceSession | None = None

    def activate_impl(self) -> None:
        try:
            self.session = open_session(self.path, self.threads, self.providers)
        except Exception as e:  # noqa: BLE001 - ORT raises several unrelated types
            raise BackendError(f"{self.role}: ONNX Runtime cannot load {self.path}: {e}") from e
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = tuple(o.name for o in self.session.get_outputs())

    def infer_async_impl(self, batch: Batch, stream: Stream) -> Pending:
        if not isinstance(stream, OrtStream):
            raise BackendError(f"{self.role}: ONNX Runtime runner given a {type(stream).__name__}")
        sess, names, feed = self.session, list(self.output_names), {self.input_name: batch}
        if sess is None:
            raise BackendError(f"{self.role}: runner used before activate()")

        def run() -> Timed:
            t = time.perf_counter()
            outs = sess.run(names, feed)
            return dict(zip(names, outs)), (time.perf_counter() - t) * 1e3

        return OrtPending(stream.submit(run))

    def deactivate_impl(self) -> None:
        self.session = None


class OrtBackend(Backend[OrtOptions]):
    """Options: :class:`runtime.backends.options.OrtOptions` (precision, providers, threads ...)."""

    name = "ort"
    _nets_stream: OrtStream | None = None

    def open_runner(self, role: str) -> Runner:
        variant = self.options.precision
        if role == "router" and variant.startswith("int8") and not self.options.quantize_router:
            variant = self._router_variant(variant)
        path = model_file(self.root, dict(self.manifest), role, variant)
        providers = PROVIDERS[self.options.providers]
        threads = self.options.threads or os.cpu_count() or 1
        return OrtRunner(role, self.manifest["models"][role], self.root, path, providers, threads)

    def _router_variant(self, variant: str) -> str:
        """The router is tiny; use its int8 model only when one was made."""
        have: Mapping[str, Any] = self.manifest["models"]["router"].get("variants", {})
        return variant if variant in have else "fp32"

    def new_stream(self, name: str) -> Stream:
        """One worker per role, except that on the CPU provider the two pose nets share one.

        Each session already spreads a batch over every core (``threads``), so running the
        small and the large net at once only oversubscribes them: measured here (idle 2-core
        EPYC, make bench) the small and large pipelines alone reached 99-100 % of their nets'
        CPU time but dyn, with both nets in flight, 92 %. One shared worker runs them back to
        back; preprocessing and the router of the next frame still overlap them.
        The router keeps its own worker: on it too, dyn used 2.5 % less CPU and 4 % less wall
        time idle (dyn-rtm-t-m, 2-core Xeon), but beside a CPU hog on both cores its wall time over
        the large net alone fell from 1.069 to 0.968 (one run each): fewer runnable threads get a
        smaller share of a loaded CPU.
        ``overlap_nets=True`` restores a worker per net (a GPU provider gets one regardless).
        """
        cpu = self.options.providers == "cpu"
        if name in ("small", "large") and cpu and not self.options.overlap_nets:
            if self._nets_stream is None:
                self._nets_stream = OrtStream("nets")
            return self._nets_stream
        return OrtStream(name)
