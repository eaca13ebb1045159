"""Triton backend: the pose nets run on a Triton Inference Server; everything else stays here.

Routing, decode, the inverse affine and the outputs are the scheduler's own
code (runtime.pose.pipeline): this backend only sends each batch to the server's
model of that role over gRPC, asynchronously (tritonclient's ``async_infer``),
so the small and large nets of a frame, and the frames of many cameras, are
in flight together and the server's dynamic batcher can merge them.

A "stream" is an ordered set of in-flight requests; ``Pending.wait`` blocks on
one reply with a deadline, so a dead server fails every waiting frame within
seconds with one line instead of hanging. ``check`` refuses a server whose
models were built from other ONNX files than the client's manifest (the
repository records each model's ONNX sha256, build.triton_repo).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from runtime.backends.base import Backend, BackendError, Pending, Runner, Stream
from runtime.backends.options import BackendOptions, TritonOptions

NP_TO_TRITON = {np.dtype(np.float32): "FP32", np.dtype(np.float16): "FP16"}
FIX_SERVER = "start it (python -m tools.triton_server --repo REPO, or NVIDIA's container) or fix --triton-url"


def _client_module() -> Any:
    try:
        import tritonclient.grpc as grpcclient
    except ImportError as e:
        raise BackendError(
            "the triton backend needs tritonclient: pip install 'tritonclient[grpc]' "
            "(or the project's 'triton' extra)"
        ) from e
    return grpcclient


def _one_line(e: BaseException) -> str:
    msg = e.message() if hasattr(e, "message") and callable(e.message) else str(e)
    status = e.status() if hasattr(e, "status") and callable(e.status) else None
    text = " ".join(str(msg or type(e).__name__).split())
    return f"{text} [{status}]" if status and str(status) not in text else text


class TritonStream(Stream):
    """Requests in flight from one role; ``synchronize`` waits for all of them."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._lock = threading.Lock()
        self._live: list[TritonPending] = []

    def track(self, p: TritonPending) -> None:
        with self._lock:
            self._live = [q for q in self._live if not q.done.is_set()] + [p]

    def synchronize(self) -> None:
        with self._lock:
            live = list(self._live)
        for p in live:
            p.wait()


class TritonPending(Pending):
    """One request's reply, filled in by the gRPC callback thread."""

    def __init__(self, runner: TritonRunner, n: int, timeout_s: float) -> None:
        self.runner, self.n, self.timeout_s = runner, n, timeout_s
        self.done = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None
        self._t0 = time.perf_counter()
        self.elapsed_ms: float | None = None

    def callback(self, result: Any, error: BaseException | None) -> None:
        self.elapsed_ms = (time.perf_counter() - self._t0) * 1e3
        self._result, self._error = result, error
        self.done.set()

    def wait(self) -> dict[str, np.ndarray]:
        r = self.runner
        # gRPC enforces client_timeout; the margin only covers a callback that never comes
        if not self.done.wait(self.timeout_s + 5.0):
            raise BackendError(
                f"{r.role}: no reply from Triton at {r.url} within {self.timeout_s:.0f} s "
                f"(--triton-url): is the server overloaded or gone? {FIX_SERVER}"
            )
        if self._error is not None and "DEADLINE_EXCEEDED" in str(
            getattr(self._error, "status", lambda: "")()
        ):
            raise BackendError(
                f"{r.role}: Triton at {r.url} did not answer within {self.timeout_s:.0f} s "
                f"(--triton-url): the server is overloaded; add instances (--triton-instances) "
                f"or servers, or raise the backend option timeout_s"
            )
        if self._error is not None:
            raise BackendError(
                f"{r.role}: Triton at {r.url} failed the request: {_one_line(self._error)} "
                f"(--triton-url): {FIX_SERVER}"
            )
        return {name: self._result.as_numpy(name)[: self.n] for name in r.output_names}


class TritonRunner(Runner):
    """One role's model on the server; reads its config for the batch limit."""

    def __init__(self, role: str, entry: Mapping[str, Any], root: Any, backend: TritonBackend) -> None:
        super().__init__(role, entry, root)
        self.backend = backend
        self.url = backend.url
        self.model = backend.model_name(role)
        self.static_batch: int | None = None

    def activate_impl(self) -> None:
        cfg = self.backend.model_config(self.role)
        max_bs = int(cfg.get("max_batch_size", 0))
        if max_bs > 0:
            self.max_batch = max_bs
        else:  # unbatched model: a fixed-N engine (DLA) has its N as the first dim
            first = int(cfg["input"][0]["dims"][0])
            if first > 0:
                self.max_batch = self.static_batch = first
        served = [o["name"] for o in cfg.get("output", [])]
        missing = [o for o in self.output_names if o not in served]
        if missing:
            raise BackendError(
                f"{self.role}: the server's model {self.model!r} lacks outputs {missing} "
                f"(--triton-url {self.url}): rebuild the repository with python -m build.triton_repo"
            )

    def infer_async_impl(self, batch: np.ndarray, stream: Stream) -> Pending:
        if not isinstance(stream, TritonStream):
            raise BackendError(f"{self.role}: Triton runner given a {type(stream).__name__}")
        n = len(batch)
        if self.static_batch and n < self.static_batch:
            batch = np.concatenate([batch, np.zeros((self.static_batch - n, *batch.shape[1:]), batch.dtype)])
        g = self.backend.grpc
        inp = g.InferInput(self.input_name, list(batch.shape), NP_TO_TRITON[batch.dtype])
        inp.set_data_from_numpy(np.ascontiguousarray(batch))
        outs = [g.InferRequestedOutput(o) for o in self.output_names]
        pending = TritonPending(self, n, self.backend.timeout_s)
        try:
            self.backend.client.async_infer(
                self.model, [inp], pending.callback, outputs=outs, client_timeout=self.backend.timeout_s
            )
        except Exception as e:  # noqa: BLE001 - tritonclient raises its own and gRPC's types
            raise BackendError(
                f"{self.role}: cannot send to Triton at {self.url}: {_one_line(e)} "
                f"(--triton-url): {FIX_SERVER}"
            ) from e
        stream.track(pending)
        return pending


class TritonBackend(Backend[TritonOptions]):
    """Options: :class:`runtime.backends.options.TritonOptions` (url, timeout_s, models)."""

    name = "triton"
    local_models = False  # the server's models are checked by onnx_sha256 against this manifest

    def __init__(
        self,
        root: Path,
        manifest: Mapping[str, Any],
        options: BackendOptions | Mapping[str, Any] | None = None,
        **values: Any,
    ) -> None:
        super().__init__(root, manifest, options, **values)
        self.url = self.options.url
        self.timeout_s = float(self.options.timeout_s)
        self.grpc = _client_module()
        try:
            self.client = self.grpc.InferenceServerClient(url=self.url)
        except Exception as e:  # noqa: BLE001
            raise BackendError(
                f"bad Triton address {self.url!r} (--triton-url): {_one_line(e)}; "
                "pass HOST:PORT of the gRPC endpoint"
            ) from e
        self._configs: dict[str, dict[str, Any]] = {}

    def model_name(self, role: str) -> str:
        return self.options.models.get(role, role)

    def model_config(self, role: str) -> dict[str, Any]:
        if role not in self._configs:
            try:
                self._configs[role] = self.client.get_model_config(
                    self.model_name(role), as_json=True, client_timeout=self.timeout_s
                )["config"]
            except Exception as e:  # noqa: BLE001
                raise BackendError(
                    f"{role}: no config for model {self.model_name(role)!r} from Triton at "
                    f"{self.url}: {_one_line(e)} (--triton-url)"
                ) from e
        return self._configs[role]

    def check(self) -> None:
        """Server live, every role's model ready, and built from the manifest's ONNX files."""
        try:
            live = self.client.is_server_live(client_timeout=min(self.timeout_s, 5.0))
        except Exception as e:  # noqa: BLE001
            raise BackendError(
                f"cannot reach Triton at {self.url} ({_one_line(e)}) (--triton-url): {FIX_SERVER}"
            ) from e
        if not live:
            raise BackendError(f"Triton at {self.url} is not live (--triton-url): {FIX_SERVER}")
        for role in ("router", "small", "large"):
            model = self.model_name(role)
            try:
                ready = self.client.is_model_ready(model, client_timeout=self.timeout_s)
            except Exception as e:  # noqa: BLE001
                raise BackendError(
                    f"{role}: Triton at {self.url} cannot say whether {model!r} is ready: {_one_line(e)}"
                ) from e
            if not ready:
                raise BackendError(
                    f"{role}: model {model!r} is not loaded on Triton at {self.url} "
                    "(--triton-url): its load failed or it is not in the repository; see the "
                    "server log, rebuild with python -m build.triton_repo"
                )
            served = self.model_config(role).get("parameters", {}).get("onnx_sha256", {}).get("string_value")
            want = self.manifest["models"][role].get("sha256")
            if served and want and served != want:
                raise BackendError(
                    f"{role}: the server's {model!r} was built from another ONNX than "
                    f"{self.root}/manifest.json (--engines): serve the repository built from "
                    "these artifacts (python -m build.triton_repo --engines ...)"
                )

    def open_runner(self, role: str) -> Runner:
        return TritonRunner(role, self.manifest["models"][role], self.root, self)

    def new_stream(self, name: str) -> Stream:
        return TritonStream(name)

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # noqa: BLE001 - closing a dead channel must not mask the real error
            pass
