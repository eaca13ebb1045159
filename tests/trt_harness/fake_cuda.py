"""A CPU stand-in for ``pycuda.driver`` that makes stream ordering observable.

Work enqueued on a stream does NOT run when enqueued: it runs only when
something waits for it (``Stream.synchronize``, ``Event.synchronize``, or a
stream waiting on an event of another stream). Copies read their source at
execution time, like DMA. So a backend that reads a host buffer before waiting,
overwrites a pinned buffer a queued copy still reads, or forgets the
cross-stream event, gets wrong numbers here instead of passing by luck.
Every executed op lands in ``GPU.log`` (stream handle, kind, label) so tests
can assert the order router -> split -> nets and that nets were in flight together.
"""

from __future__ import annotations

import itertools
import sys
import time
import types
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class CudaOrderError(AssertionError):
    """The code under test broke a CUDA rule (non-pinned async copy, context misuse, ...)."""


@dataclass
class Op:
    kind: str
    label: str
    run: Callable[[], None]
    id: int = field(default_factory=lambda: next(_ids))


_ids = itertools.count(1)


class PinnedArray(np.ndarray):
    """Marks page-locked host memory (views stay pinned)."""


class _Gpu:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.mem: dict[int, np.ndarray] = {}
        self.next_addr = 0x10000
        # weak: a stream dies when the code under test drops it (its release is then recorded)
        self.streams: weakref.WeakValueDictionary[int, Stream] = weakref.WeakValueDictionary()
        self._stream_ids = itertools.count(1)
        self.log: list[tuple[int, str, str]] = []  # executed: (stream handle, kind, label)
        self.enqueued: list[tuple[int, str, str]] = []  # enqueue order
        self.context_depth = 0
        self.detached = False
        self.device_name, self.cc = "Orin", (8, 7)
        self.events: weakref.WeakSet[Event] = weakref.WeakSet()  # live events (flags readable)
        self.spin_waits = 0  # host waits on events without BLOCKING_SYNC
        self.released: list[tuple[str, bool]] = []  # (what, inside a live context?) per release
        self.pinned_live = 0

    def locate(self, addr: int, nbytes: int) -> np.ndarray:
        for base, buf in self.mem.items():
            if base <= addr and addr + nbytes <= base + buf.nbytes:
                return buf[addr - base : addr - base + nbytes]
        raise CudaOrderError(f"device access {hex(addr)}+{nbytes} outside every allocation")

    def stream(self, handle: int) -> Stream:
        try:
            return self.streams[handle]
        except KeyError:
            raise CudaOrderError(f"unknown stream handle {handle}") from None

    def enqueue(self, handle: int, kind: str, label: str, run: Callable[[], None]) -> Op:
        """Queue work on the stream with ``handle`` (used by the fake TensorRT context too)."""
        op = Op(kind, label, run)
        self.stream(handle).queue.append(op)
        self.enqueued.append((handle, kind, label))
        return op


GPU = _Gpu()


def _require_context() -> None:
    if GPU.context_depth <= 0 or GPU.detached:
        raise CudaOrderError("CUDA call without a current context (push the context first)")


def _released(what: str) -> None:
    """Destruction of a CUDA object: fine only while the context is current and not detached."""
    try:
        GPU.released.append((what, GPU.context_depth > 0 and not GPU.detached))
    except Exception:  # noqa: BLE001 - interpreter shutdown
        pass


class event_flags:  # noqa: N801 - pycuda's name (values of CUevent_flags)
    DEFAULT = 0
    BLOCKING_SYNC = 1
    DISABLE_TIMING = 2
    INTERPROCESS = 4


class HostAllocation(bytearray):
    """Page-locked host memory (``ndarray.base`` of what ``pagelocked_empty`` returns)."""

    def __init__(self, nbytes: int) -> None:
        super().__init__(max(int(nbytes), 1))
        self.freed = False
        GPU.pinned_live += 1

    def free(self) -> None:
        if not self.freed:
            _released("pinned")
            self.freed = True
            GPU.pinned_live -= 1


class DeviceAllocation:
    def __init__(self, nbytes: int) -> None:
        _require_context()
        self.addr = GPU.next_addr
        GPU.mem[self.addr] = np.zeros(max(int(nbytes), 1), np.uint8)
        GPU.next_addr += (int(nbytes) + 0xFFF) & ~0xFFF or 0x1000

    def __int__(self) -> int:
        return self.addr

    __index__ = __int__

    def free(self) -> None:
        if self.addr in GPU.mem:
            _released("device")
        GPU.mem.pop(self.addr, None)


class Stream:
    def __init__(self, flags: int = 0) -> None:
        _require_context()
        self.handle = 0x5000 + next(GPU._stream_ids)
        self.queue: list[Op] = []
        GPU.streams[self.handle] = self

    def __del__(self) -> None:
        _released("stream")

    def _run_until(self, op: Op | None) -> None:
        """Execute queued work in order up to and including ``op`` (everything when None)."""
        while self.queue:
            cur = self.queue.pop(0)
            cur.run()
            GPU.log.append((self.handle, cur.kind, cur.label))
            if cur is op:
                return

    def synchronize(self) -> None:
        self._run_until(None)

    def is_done(self) -> bool:
        return not self.queue

    def wait_for_event(self, event: Event) -> None:
        rec = event._record

        def run() -> None:
            if rec is not None:
                rec[0]._run_until(rec[1])

        GPU.enqueue(self.handle, "wait", f"event{event.id}", run)


class Event:
    _count = itertools.count(1)

    def __init__(self, flags: int = 0) -> None:
        _require_context()
        self.id = next(Event._count)
        self.flags = int(flags)
        self._record: tuple[Stream, Op] | None = None
        self._time: float | None = None
        GPU.events.add(self)

    def __del__(self) -> None:
        _released("event")

    def record(self, stream: Stream | None = None) -> Event:
        if stream is None:
            raise CudaOrderError(
                "Event.record on the legacy default stream serialises everything; pass a stream"
            )
        self._time = None
        me = weakref.ref(self)  # no Event -> Op -> closure -> Event cycle: events die when dropped

        def run() -> None:
            ev = me()
            if ev is not None:
                ev._time = time.perf_counter()

        op = GPU.enqueue(stream.handle, "record", f"event{self.id}", run)
        self._record = (stream, op)
        return self

    def synchronize(self) -> None:
        _require_context()
        if not self.flags & event_flags.BLOCKING_SYNC:
            GPU.spin_waits += 1  # cudaEventSynchronize busy-waits a CPU core without BLOCKING_SYNC
        if self._record is not None:
            stream, op = self._record
            if op in stream.queue:
                stream._run_until(op)

    def time_since(self, start: Event) -> float:
        """ms from ``start`` to this event; both must be timing events that have completed."""
        for e in (self, start):
            if e.flags & event_flags.DISABLE_TIMING:
                raise CudaOrderError(
                    "time_since on an event created with DISABLE_TIMING (cudaErrorInvalidResourceHandle)"
                )
            if e._time is None:
                raise CudaOrderError("time_since on an event that has not completed (cudaErrorNotReady)")
        return (self._time - start._time) * 1e3

    def query(self) -> bool:
        return self._record is None or self._record[1] not in self._record[0].queue


def pagelocked_empty(shape: Any, dtype: Any, order: str = "C", mem_flags: int = 0) -> PinnedArray:
    _require_context()
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    return PinnedArray(shape, dtype, buffer=HostAllocation(count * dtype.itemsize), order=order)


def mem_alloc(nbytes: int) -> DeviceAllocation:
    return DeviceAllocation(nbytes)


def _check_async(host: np.ndarray, stream: Any) -> None:
    _require_context()
    if not isinstance(host, PinnedArray):
        raise CudaOrderError(
            "async copy with pageable host memory (use pagelocked_empty): it would run synchronously"
        )
    if not isinstance(stream, Stream):
        raise CudaOrderError("async copy without a stream runs on the legacy default stream")
    if not host.flags.c_contiguous:
        raise CudaOrderError("async copy of a non-contiguous host view")


def memcpy_htod_async(dest: Any, src: np.ndarray, stream: Stream | None = None) -> None:
    _check_async(src, stream)
    addr, n = int(dest), src.nbytes

    def run() -> None:  # reads the host buffer now, at execution time
        GPU.locate(addr, n)[:] = np.frombuffer(src.tobytes(), np.uint8)

    GPU.enqueue(stream.handle, "htod", hex(addr), run)


def memcpy_dtoh_async(dest: np.ndarray, src: Any, stream: Stream | None = None) -> None:
    _check_async(dest, stream)
    addr, n = int(src), dest.nbytes

    def run() -> None:
        dest.view(np.uint8).reshape(-1)[:] = GPU.locate(addr, n)

    GPU.enqueue(stream.handle, "dtoh", hex(addr), run)


class Context:
    def push(self) -> None:
        GPU.context_depth += 1

    @staticmethod
    def pop() -> None:
        if GPU.context_depth <= 0:
            raise CudaOrderError("Context.pop without a pushed context")
        GPU.context_depth -= 1

    def detach(self) -> None:
        GPU.detached = True

    @staticmethod
    def synchronize() -> None:
        raise CudaOrderError("Context.synchronize waits for every stream: it kills stream overlap")


class Device:
    def __init__(self, ordinal: int) -> None:
        if ordinal != 0:
            raise CudaOrderError(f"no device {ordinal}")

    def name(self) -> str:
        return GPU.device_name

    def compute_capability(self) -> tuple[int, int]:
        return GPU.cc

    def retain_primary_context(self) -> Context:
        return Context()


def init(flags: int = 0) -> None:
    pass


def install() -> types.ModuleType:
    """Put this stand-in in ``sys.modules`` as ``pycuda`` / ``pycuda.driver``."""
    driver = sys.modules[__name__]
    pkg = types.ModuleType("pycuda")
    pkg.driver = driver  # type: ignore[attr-defined]
    sys.modules["pycuda"] = pkg
    sys.modules["pycuda.driver"] = driver
    GPU.reset()
    return driver
