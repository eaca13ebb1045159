"""TensorRT backend: engines on pycuda streams with pinned buffers and events.

``tensorrt`` and ``pycuda`` are imported inside the functions and classes that
need them, so ``import runtime.backends.trt`` (and the machine-identity helpers
the builder shares) works on machines without either.

Ordering, which the harness tests assert rather than assume:
- one :class:`TrtStream` wraps one ``pycuda.driver.Stream``; a runner enqueues
  H2D copy -> ``execute_async_v3`` -> D2H copies -> event record on it and
  returns at once (no host sync), so two nets on two streams overlap;
- :meth:`TrtPending.wait` synchronises only on its own event;
- each runner owns a ring of buffer slots (pinned host + device); a slot is
  reused only after its previous work was waited on, so back-to-back calls
  never overwrite buffers a queued copy still reads;
- a runner called on a different stream than last time makes the new stream
  wait on the old stream's event (one execution context, never two streams at once);
- the event a host thread waits on is created ``DISABLE_TIMING | BLOCKING_SYNC``
  (the thread sleeps instead of spinning a core: Orin's few cores also decode,
  detect and write), and a separate pair of timing events around each batch
  gives :attr:`TrtPending.elapsed_ms`, the GPU time budget mode learns from;
- everything CUDA (slots' device and pinned memory, events, streams, engines)
  is released inside the primary context, before it is detached, in the order
  pending work -> buffers -> events -> streams -> engines -> runtime.

Crops on the device (:meth:`TrtBackend.upload_frame`, :meth:`TrtRunner.infer_crops_async`),
the way DeepStream's preprocessing makes them: the frame crosses to the GPU once
(uint8, one copy, an event marks it ready), and each net's crops are written by the
crop kernel (libdynpose_plugins.so ``dynposeLaunchCrops``, kernels/dynpose_crop.cuh)
straight into that net's input buffer on the net's own stream, after the stream waited
for the frame's event; only the crops' affines (48 bytes each) cross per call. A frame
buffer is reused only after every crop launch that read it is done.
:func:`device_crops_refusal` decides, in plain Python, whether an engine can take them, and
``runtime.backends.base.device_crops_plan`` whether a pipeline does (runtime/pose/pipeline.py).
"""

from __future__ import annotations

import ctypes
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from runtime.artifacts.manifest import rebuild_command
from runtime.backends.base import Backend, BackendError, Pending, Runner, Stream
from runtime.backends.options import BackendOptions, TrtOptions
from runtime.backends.plugin_abi import check_plugin_abi
from runtime.backends.trt_rules import make_error_recorder, same_trt_release

log = logging.getLogger(__name__)

NV_TEGRA_RELEASE = Path("/etc/nv_tegra_release")
_L4T_RE = re.compile(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)")
# L4T release -> JetPack, for the human-readable record only (checks compare L4T).
JETPACK_BY_L4T = {"R36.3.0": "6.0", "R36.4.0": "6.1", "R36.4.3": "6.2", "R36.4.4": "6.2.1"}
_LOADED_PLUGINS: set[str] = set()


# ---------------------------------------------------------------- machine identity
def read_l4t(path: Path | None = None) -> str | None:
    """``R36.4.3`` from /etc/nv_tegra_release, None off Jetson."""
    try:
        m = _L4T_RE.search(Path(path or NV_TEGRA_RELEASE).read_text())
    except OSError:
        return None
    return f"R{m.group(1)}.{m.group(2)}" if m else None


def gpu_identity(cuda: Any = None) -> tuple[str, str]:
    """(GPU name, "major.minor" SM) of device 0 via pycuda, else the driver API through ctypes."""
    if cuda is not None:
        dev = cuda.Device(0)
        major, minor = dev.compute_capability()
        return dev.name(), f"{major}.{minor}"
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError as e:
        raise BackendError(f"no CUDA driver (libcuda.so.1): {e}") from None
    dev, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    name = ctypes.create_string_buffer(256)
    for rc in (
        lib.cuInit(0),
        lib.cuDeviceGet(ctypes.byref(dev), 0),
        lib.cuDeviceGetName(name, 256, dev),
        lib.cuDeviceGetAttribute(ctypes.byref(major), 75, dev),  # COMPUTE_CAPABILITY_MAJOR
        lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev),
    ):  # COMPUTE_CAPABILITY_MINOR
        if rc != 0:
            raise BackendError(f"no usable CUDA GPU (driver error {rc})")
    return name.value.decode(), f"{major.value}.{minor.value}"


def machine_record(trt_version: str, cuda: Any = None) -> dict[str, Any]:
    """What an engine is tied to: TensorRT version, GPU, SM and (on Jetson) L4T."""
    gpu, sm = gpu_identity(cuda)
    l4t = read_l4t()
    return {
        "trt_version": trt_version,
        "gpu": gpu,
        "sm": sm,
        "l4t": l4t,
        "jetpack": JETPACK_BY_L4T.get(l4t or ""),
    }


def engine_mismatches(record: Mapping[str, Any], machine: Mapping[str, Any]) -> list[str]:
    """What ties an engine to another machine; TensorRT versions compare as releases
    (MAJOR.MINOR.PATCH: trtexec records 10.3.0, pip wheels report 10.3.0.26)."""
    bad = (
        []
        if same_trt_release(record.get("trt_version"), machine.get("trt_version"))
        else [f"trt_version {record.get('trt_version')!r} != {machine.get('trt_version')!r}"]
    )
    return bad + [
        f"{k} {record.get(k)!r} != {machine.get(k)!r}"
        for k in ("gpu", "sm", "l4t")
        if record.get(k) != machine.get(k)
    ]


def load_plugin_library(trt: Any, path: Path, role: str) -> None:
    """Register a plugin .so once per process; a missing file is a clear error."""
    path = Path(path)
    if str(path) in _LOADED_PLUGINS:
        return
    if not path.is_file():
        raise BackendError(
            f"{role}: the engine needs the TensorRT plugin library {path}, which does not "
            "exist; build it on this device (see docs/plugin.md) or pass "
            "plugin_lib=PATH"
        )
    check_plugin_abi(path, getattr(trt, "__version__", ""), role)  # built for this TensorRT's ABI?
    if trt.get_plugin_registry().load_library(str(path)) is None:
        raise BackendError(
            f"{role}: TensorRT refused plugin library {path} (already registered or not a plugin library)"
        )
    _LOADED_PLUGINS.add(str(path))


# ---------------------------------------------------------------- crops on the device
CROP_SYMBOL = "dynposeLaunchCrops"
AFFINES = "__crop_affines__"  # the slot buffer the crops' [n,2,3] float64 affines travel in
# (frame ptr, frame h, frame w, affines ptr, n, out ptr, out half, crop h, crop w, mean ptr, std ptr,
#  stream handle) -> rc; mean/std: 3 float32 each (RGB, host memory), as make_crops normalises
CropLauncher = Callable[[int, int, int, int, int, int, bool, int, int, int, int, int], int]


def device_crops_refusal(
    input_shape: tuple[int, ...], input_dtype: np.dtype[Any], launcher: CropLauncher | None
) -> str | None:
    """None when an engine's input can be written by the crop kernel, else why not (one line)."""
    if launcher is None:
        return f"no crop kernel: the plugin library (with {CROP_SYMBOL}) is not loaded; see docs/plugin.md"
    if len(input_shape) != 4 or input_shape[1] != 3:
        return f"engine input {tuple(input_shape)} is not [N,3,H,W]"
    if np.dtype(input_dtype) not in (np.dtype(np.float32), np.dtype(np.float16)):
        return f"engine input is {np.dtype(input_dtype)}, the crop kernel writes float32 or float16"
    return None


def library_crop_launcher(path: Path) -> CropLauncher | None:
    """``dynposeLaunchCrops`` of a plugin library through ctypes (None when it lacks it)."""
    try:
        fn = getattr(ctypes.CDLL(str(path)), CROP_SYMBOL)
    except (OSError, AttributeError):
        return None
    vp, i32 = ctypes.c_void_p, ctypes.c_int32
    fn.argtypes = [vp, i32, i32, vp, i32, vp, i32, i32, i32, vp, vp, vp]
    fn.restype = i32

    def launch(*args: Any) -> int:  # the CropLauncher arguments, in order
        return int(fn(*args))

    return launch


class DeviceFrame:
    """One uint8 HxWx3 frame on the device: pinned staging + device copy, the event that marks
    it uploaded, and the events of the crop launches that read it (waited on before reuse)."""

    def __init__(self, cuda: Any, nbytes: int) -> None:
        self.host = cuda.pagelocked_empty(nbytes, np.uint8)
        self.dev = cuda.mem_alloc(max(1, nbytes))
        self.ready = cuda.Event(done_event_flags(cuda))
        self.readers: list[Any] = []
        self.hw = (0, 0)
        self.stream: TrtStream | None = None

    def settle(self) -> None:
        """Wait until the last upload and every crop launch reading it are done."""
        self.ready.synchronize()
        for e in self.readers:
            e.synchronize()
        self.readers = []

    def free(self) -> None:
        self.settle()
        self.dev.free()
        free = getattr(self.host.base, "free", None)
        if free is not None:
            free()


# ---------------------------------------------------------------- streams and pending work
class TrtStream(Stream):
    """One CUDA stream; :meth:`close` destroys it inside the context (idempotent)."""

    def __init__(self, name: str, cuda: Any, ctx: Any) -> None:
        super().__init__(name)
        self._ctx = ctx
        self.cuda_stream = cuda.Stream()

    @property
    def handle(self) -> int:
        return int(self.cuda_stream.handle)

    def synchronize(self) -> None:
        self.cuda_stream.synchronize()

    def close(self) -> None:
        if self.cuda_stream is None:
            return
        with self._ctx():
            self.cuda_stream.synchronize()
            self.cuda_stream = None  # the last reference: pycuda destroys it here, context current


def done_event_flags(cuda: Any) -> int:
    """A host thread waits on this event: sleep (BLOCKING_SYNC), and skip timestamps."""
    return int(cuda.event_flags.DISABLE_TIMING | cuda.event_flags.BLOCKING_SYNC)


class TrtPending(Pending):
    """Outputs of one enqueued batch; ``wait`` syncs on this batch's event only.

    ``elapsed_ms`` (None until waited) is the GPU time of the batch's copies and
    network, from the slot's timing events: budget mode corrects its per-crop costs
    with it on every frame.
    """

    def __init__(self, slot: _Slot, views: dict[str, np.ndarray], n: int, ctx: Any) -> None:
        self._slot: _Slot | None = slot  # None once waited: the slot is reused by later calls
        self._views, self._n, self._ctx = views, n, ctx
        self._result: dict[str, np.ndarray] | None = None
        self.elapsed_ms: float | None = None
        self._lock = threading.Lock()

    def wait(self) -> dict[str, np.ndarray]:
        with self._lock:
            if self._result is None:
                self._result = self._collect()
            return self._result

    def _collect(self) -> dict[str, np.ndarray]:
        slot, self._slot = self._slot, None
        if slot is None:  # _result is set whenever the slot is let go: cannot happen
            raise BackendError("a TensorRT batch was collected twice")
        with self._ctx():
            slot.done.synchronize()
            self.elapsed_ms = float(slot.t_end.time_since(slot.t_start))
        # Copy out of the pinned slot: the slot is reused by later calls.
        return {k: np.array(v[: self._n], dtype=np.float32) for k, v in self._views.items()}


class _Slot:
    """Pinned host + device buffers and events for one in-flight batch at the profile's max size."""

    def __init__(self, cuda: Any, tensors: Mapping[str, tuple[tuple[int, ...], np.dtype]]) -> None:
        self.host: dict[str, np.ndarray] = {}
        self.dev: dict[str, Any] = {}
        for name, (shape, dtype) in tensors.items():
            self.host[name] = cuda.pagelocked_empty(int(np.prod(shape)), dtype)
            self.dev[name] = cuda.mem_alloc(self.host[name].nbytes)
        self.done = cuda.Event(done_event_flags(cuda))
        self.t_start, self.t_end = cuda.Event(), cuda.Event()  # timing events, never waited on
        self.pending: TrtPending | None = None

    def free(self) -> None:
        """Call inside the context, after the slot's work was waited on."""
        for d in self.dev.values():
            d.free()
        for h in self.host.values():
            free = getattr(h.base, "free", None)  # pycuda: the HostAllocation behind pagelocked_empty's array
            if free is not None:
                free()
        self.dev.clear()
        self.host.clear()
        self.pending = None
        self.done = self.t_start = self.t_end = None


# ---------------------------------------------------------------- runner
class TrtRunner(Runner):
    """One deserialised engine with one execution context and a ring of buffer slots."""

    def __init__(self, role: str, entry: Mapping[str, Any], root: Path, backend: TrtBackend) -> None:
        super().__init__(role, entry, root)
        self.backend = backend
        self.record: Mapping[str, Any] = entry.get("engine") or {}
        self.static_batch: int | None = None
        self.rows_run = self.rows_padded = 0  # a static (DLA) batch pads: how much is on record
        self._slots: list[_Slot] = []
        self._next = 0
        self._last: tuple[TrtStream, Any] | None = None
        self._lock = threading.Lock()
        self._crops_refusal: str | None = "the engine is not loaded yet"

    @property
    def crops_refusal(self) -> str | None:
        """Why the crop kernel cannot write this engine's input (None: it can), from
        :func:`device_crops_refusal` when the engine is bound."""
        return self._crops_refusal

    def activate_impl(self) -> None:
        trt, cuda, be = self.backend.trt, self.backend.cuda, self.backend
        if not self.record:
            raise BackendError(
                f"{self.role}: no engine in the manifest; build: {rebuild_command(be.manifest, self.root)}"
            )
        plugin = self.record.get("plugin_library")
        if plugin:
            lib = be.options.plugin_lib
            load_plugin_library(trt, Path(lib) if lib else self.root / plugin, self.role)
        path = self.root / self.record["path"]
        if not path.is_file():
            raise BackendError(
                f"{self.role}: engine {path} is missing; build: {rebuild_command(be.manifest, self.root)}"
            )
        with be.ctx():
            if self.record.get("dla_core") is not None:
                be.runtime.DLA_core = int(self.record["dla_core"])
            be.recorder.clear()
            self.engine = be.runtime.deserialize_cuda_engine(path.read_bytes())
            if self.engine is None:
                why = be.recorder.summary()
                raise BackendError(
                    f"{self.role}: TensorRT could not deserialize {path}"
                    f"{f' ({why})' if why else ''}; rebuild: {rebuild_command(be.manifest, self.root)}"
                )
            self.context = self.engine.create_execution_context()
            self._bind(trt, cuda)
        if self.static_batch is not None:
            log.warning(
                "%s: engine has a static batch of %d (DLA): calls with fewer crops are padded to %d "
                "(padding counted in rows_padded; rebuild with --dla-batch N to change it)",
                self.role,
                self.static_batch,
                self.static_batch,
            )

    def _bind(self, trt: Any, cuda: Any) -> None:
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if inputs != [self.input_name]:
            raise BackendError(
                f"{self.role}: engine inputs {inputs}, manifest expects [{self.input_name!r}]; rebuild the engine"
            )
        if self.record.get("io"):  # a variant (e.g. fused decode) may have other outputs than the fp32 net
            self.output_names = tuple(t["name"] for t in self.record["io"] if t["mode"] == "output")
        missing = [o for o in self.output_names if o not in outputs]
        if missing:
            raise BackendError(
                f"{self.role}: engine lacks outputs {missing} named in the manifest; rebuild the engine"
            )
        pmin, _, pmax = (tuple(d) for d in self.engine.get_tensor_profile_shape(self.input_name, 0))
        self.max_batch = int(pmax[0])
        self.static_batch = self.max_batch if pmin[0] == pmax[0] else None
        self.context.set_input_shape(self.input_name, pmax)
        self.outputs = outputs
        self._dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        tensors = {self.input_name: (pmax, self._dtypes[self.input_name])}
        tensors.update({o: (tuple(self.context.get_tensor_shape(o)), self._dtypes[o]) for o in outputs})
        self.input_shape = pmax
        self._crops_refusal = device_crops_refusal(
            pmax, self._dtypes[self.input_name], self.backend.crop_launcher()
        )
        if self.crops_refusal is None:
            tensors[AFFINES] = ((int(pmax[0]), 6), np.dtype(np.float64))
        self._slots = [_Slot(cuda, tensors) for _ in range(self.backend.options.slots)]

    def _take_slot(self) -> _Slot:
        slot = self._slots[self._next]
        self._next = (self._next + 1) % len(self._slots)
        if slot.pending is not None:
            slot.pending.wait()  # its copies must be done before the buffers are rewritten
        return slot

    def infer_async_impl(self, batch: np.ndarray, stream: Stream) -> Pending:
        if not isinstance(stream, TrtStream):
            raise BackendError(f"{self.role}: TensorRT runners need a TrtStream, got {type(stream).__name__}")
        cuda, n = self.backend.cuda, batch.shape[0]
        run_n = self.static_batch or n
        with self._lock, self.backend.ctx():
            slot = self._take_slot()
            if self._last is not None and self._last[0] is not stream:
                stream.cuda_stream.wait_for_event(self._last[1])
            host_in = slot.host[self.input_name][: batch[:1].size * run_n].reshape((run_n, *batch.shape[1:]))
            host_in[:n] = batch
            host_in[n:] = 0
            slot.t_start.record(stream.cuda_stream)
            cuda.memcpy_htod_async(slot.dev[self.input_name], host_in, stream.cuda_stream)
            return self._execute(slot, stream, host_in.shape, n)

    def infer_crops_async(
        self, frame: DeviceFrame, affines: np.ndarray, norm: tuple[np.ndarray, np.ndarray], stream: Stream
    ) -> Pending:
        """Run the net on crops the crop kernel makes from ``frame`` (uploaded by
        :meth:`TrtBackend.upload_frame`) with image->crop ``affines`` [n,2,3]
        (runtime.pose.preprocess.crop_affines at the engine's input size) and ``norm`` = the
        (mean, std) RGB make_crops normalises with, on ``stream``."""
        if self.crops_refusal is not None:
            raise BackendError(f"{self.role}: crops cannot be made on the device: {self.crops_refusal}")
        if not isinstance(stream, TrtStream):
            raise BackendError(f"{self.role}: TensorRT runners need a TrtStream, got {type(stream).__name__}")
        cuda, n = self.backend.cuda, len(affines)
        if self.max_batch is not None and n > self.max_batch:
            raise BackendError(
                f"{self.role}: {n} crops exceed the engine profile max {self.max_batch}; the scheduler chunks"
            )
        run_n = self.static_batch or n
        launch = self.backend.crop_launcher()
        with self._lock, self.backend.ctx():
            slot = self._take_slot()
            if self._last is not None and self._last[0] is not stream:
                stream.cuda_stream.wait_for_event(self._last[1])
            if frame.stream is not stream:
                stream.cuda_stream.wait_for_event(frame.ready)
            aff = slot.host[AFFINES][: 6 * run_n].reshape(run_n, 6)
            aff[:n] = np.asarray(affines, np.float64).reshape(n, 6)
            aff[n:] = aff[0] if n else 0.0  # static (DLA) padding: any crop, its rows are dropped
            slot.t_start.record(stream.cuda_stream)
            cuda.memcpy_htod_async(slot.dev[AFFINES], aff, stream.cuda_stream)
            _, _, h, w = self.input_shape
            half = self._dtypes[self.input_name] == np.float16
            mean, std = (np.ascontiguousarray(v, np.float32) for v in norm)
            args = (int(frame.dev), *frame.hw, int(slot.dev[AFFINES]), run_n, int(slot.dev[self.input_name]))
            ptrs = (mean.ctypes.data, std.ctypes.data, stream.handle)  # mean/std are read at launch
            rc = launch(*args, half, h, w, *ptrs) if launch is not None else -1
            if rc != 0:
                raise BackendError(f"{self.role}: the crop kernel failed to launch (code {rc})")
            done = cuda.Event(done_event_flags(cuda))
            frame.readers.append(done.record(stream.cuda_stream))
            return self._execute(slot, stream, (run_n, 3, h, w), n)

    def _execute(self, slot: _Slot, stream: TrtStream, shape: tuple[int, ...], n: int) -> TrtPending:
        """Enqueue the engine on its input already queued into ``slot``, then the output copies."""
        cuda = self.backend.cuda
        self.rows_run += shape[0]
        self.rows_padded += shape[0] - n
        if not self.context.set_input_shape(self.input_name, shape):
            raise BackendError(f"{self.role}: input shape {shape} outside the engine profile")
        self.context.set_tensor_address(self.input_name, int(slot.dev[self.input_name]))
        for o in self.outputs:
            self.context.set_tensor_address(o, int(slot.dev[o]))
        if not self.context.execute_async_v3(stream.handle):
            raise BackendError(f"{self.role}: execute_async_v3 failed")
        views = {}
        for o in self.outputs:
            oshape = tuple(self.context.get_tensor_shape(o))
            view = slot.host[o][: int(np.prod(oshape))].reshape(oshape)
            cuda.memcpy_dtoh_async(view, slot.dev[o], stream.cuda_stream)
            views[o] = view
        slot.t_end.record(stream.cuda_stream)
        slot.done.record(stream.cuda_stream)
        slot.pending = TrtPending(slot, views, n, self.backend.ctx)
        self._last = (stream, slot.done)
        return slot.pending

    def deactivate_impl(self) -> None:
        """Inside the context: finish pending work, free buffers and events, then the
        execution context before its engine (TensorRT requires that order)."""
        with self.backend.ctx():
            for s in self._slots:
                if s.pending is not None:
                    s.pending.wait()
            for s in self._slots:
                s.free()
            self._slots, self._last = [], None
            self.context = None
            self.engine = None


# ---------------------------------------------------------------- backend
class TrtBackend(Backend[TrtOptions]):
    """Engines listed under ``models.<role>.engine`` in the manifest, on device 0."""

    name = "trt"
    device_crops = True

    def __init__(
        self,
        root: Path,
        manifest: Mapping[str, Any],
        options: BackendOptions | Mapping[str, Any] | None = None,
        **values: Any,
    ) -> None:
        super().__init__(root, manifest, options, **values)  # options first: refused before CUDA starts
        try:
            import pycuda.driver as cuda
            import tensorrt as trt
        except ImportError as e:
            raise BackendError(
                f"TensorRT backend needs tensorrt and pycuda ({e}); on Jetson install "
                "JetPack 6.1+ and `pip install pycuda`, or use --backend ort"
            ) from None
        self.trt, self.cuda = trt, cuda
        cuda.init()
        self._cuda_ctx = cuda.Device(0).retain_primary_context()
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.recorder = make_error_recorder(trt)  # TensorRT's own reason for a failed deserialisation
        self._runners: list[TrtRunner] = []
        self._streams: list[TrtStream] = []
        self._frames: list[DeviceFrame] = []  # ring of uploaded frames (device crops)
        self._next_frame = 0
        self._launcher: tuple[CropLauncher | None] | None = None  # resolved once
        self._closed = False
        with self.ctx():
            self.runtime = trt.Runtime(self.logger)
            self.runtime.error_recorder = self.recorder

    @contextmanager
    def ctx(self) -> Iterator[None]:
        """Make the primary context current on whichever thread calls (scheduler threads included)."""
        self._cuda_ctx.push()
        try:
            yield
        finally:
            self.cuda.Context.pop()

    def check(self) -> None:
        with self.ctx():
            machine = machine_record(self.trt.__version__, self.cuda)
        for role, entry in self.manifest.get("models", {}).items():
            record = entry.get("engine")
            if not record:
                raise BackendError(
                    f"{role}: no TensorRT engine in {self.root}; build on this device: "
                    f"{rebuild_command(self.manifest, self.root)}"
                )
            bad = engine_mismatches(record, machine)
            if bad:
                raise BackendError(
                    f"{role}: {record.get('path')} was built for another machine ({'; '.join(bad)}); "
                    f"rebuild: {rebuild_command(self.manifest, self.root)}"
                )

    def open_runner(self, role: str) -> TrtRunner:
        try:
            entry = self.manifest["models"][role]
        except KeyError:
            raise BackendError(f"no model {role!r} in the manifest of {self.root}") from None
        runner = TrtRunner(role, entry, self.root, self)
        self._runners.append(runner)
        return runner

    def new_stream(self, name: str) -> TrtStream:
        with self.ctx():
            stream = TrtStream(name, self.cuda, self.ctx)
        self._streams.append(stream)
        return stream

    def crop_library(self) -> Path | None:
        """The library whose crop kernel the runners use: ``plugin_lib`` if given, else the first
        plugin library an engine of the manifest names (None: crops stay on the host)."""
        if self.options.plugin_lib:
            return Path(self.options.plugin_lib)
        for entry in self.manifest.get("models", {}).values():
            lib = (entry.get("engine") or {}).get("plugin_library")
            if lib and (self.root / str(lib)).is_file():
                return self.root / str(lib)
        return None

    def crop_launcher(self) -> CropLauncher | None:
        """The crop kernel's launcher (resolved once; None without a library that has it)."""
        if self._launcher is None:
            lib = self.crop_library()
            self._launcher = (library_crop_launcher(lib) if lib is not None and lib.is_file() else None,)
        return self._launcher[0]

    def use_crop_launcher(self, launcher: CropLauncher | None) -> None:
        """Use this crop kernel launcher (before the runners activate) instead of the library's:
        the harness tests run the kernel's host build through it."""
        self._launcher = (launcher,)

    def upload_frame(self, image: np.ndarray, stream: Stream, ring: int = 2) -> DeviceFrame:
        """Copy one uint8 HxWx3 BGR frame to the device on ``stream`` (once per frame, whatever
        the number of crops); buffers rotate over ``ring`` frames, each reused only when the
        crops read from it are done."""
        if not isinstance(stream, TrtStream):
            raise BackendError(f"upload_frame needs a TrtStream, got {type(stream).__name__}")
        img = np.ascontiguousarray(image, dtype=np.uint8)
        if img.ndim != 3 or img.shape[2] != 3:
            raise BackendError(f"upload_frame needs an HxWx3 uint8 BGR frame, got shape {img.shape}")
        with self.ctx():
            while len(self._frames) < ring:
                self._frames.append(DeviceFrame(self.cuda, img.nbytes))
            at = self._next_frame
            self._next_frame = (at + 1) % ring
            frame = self._frames[at]
            frame.settle()
            if frame.host.nbytes < img.nbytes:  # grow (freed after its last reader)
                frame.free()
                frame = self._frames[at] = DeviceFrame(self.cuda, img.nbytes)
            frame.host[: img.nbytes] = img.reshape(-1)
            self.cuda.memcpy_htod_async(frame.dev, frame.host[: img.nbytes], stream.cuda_stream)
            frame.ready.record(stream.cuda_stream)
            frame.hw, frame.stream = (img.shape[0], img.shape[1]), stream
        return frame

    def close(self) -> None:
        """Release runners, streams and the runtime inside the context, then detach (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for runner in self._runners:
            runner.deactivate()
        with self.ctx():
            for frame in self._frames:
                frame.free()
            self._frames = []
        for stream in self._streams:
            stream.close()
        self._runners, self._streams = [], []
        with self.ctx():
            self.runtime = None
        self._cuda_ctx.detach()
