"""Start and stop the bundled ``tritonserver`` (from tools/setup_triton.sh) on loopback.

Used by the Triton tests and bench/triton_serving.py, and by hand::

    python -m tools.triton_server --repo REPO [--grpc-port 8001]   # runs until Ctrl-C

Why a launcher of our own: the binary needs an environment pytriton normally
builds for it (``LD_LIBRARY_PATH`` starting with the server venv Python's
LIBDIR, else the python-backend stub loads another libpython and model init
fails with an RLock ``_recursion_count`` AttributeError), explicit model
control so a model that cannot load does not kill the server, loopback-only
ports, and a PID we stop ourselves: the server is "ready" only when the process
we started is alive and itself listens on both ports (another server answering
on a taken port is not ours), and the launcher stops and reaps it on SIGTERM,
SIGINT and SIGHUP (and the kernel kills it if the launcher dies by SIGKILL).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tools.ports import free_ports, port_in_use

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VENV = REPO_ROOT / os.environ.get("TRITON_VENV", ".triton/venv")  # as tools/setup_triton.sh
_SETUP = Path(__file__).resolve().with_name("setup_triton.sh")  # shipped with the package too (pyproject)
SETUP_HINT = (
    f"run `bash {_SETUP.relative_to(Path.cwd()) if _SETUP.is_relative_to(Path.cwd()) else _SETUP}` "
    "(makes .triton/venv with nvidia-pytriton)"
)


class TritonServerError(RuntimeError):
    """The server could not be found or started; the message says how to fix it."""


def listening_ports(pid: int) -> set[int]:
    """TCP ports process ``pid`` listens on (its socket inodes matched in /proc/net/tcp{,6})."""
    inodes = set()
    try:
        for fd in os.scandir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(fd.path)
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return set()
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == "0A" and f[9] in inodes:  # 0A = LISTEN
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the launcher dies, however it dies (Linux prctl)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def find_server(venv: Path = DEFAULT_VENV) -> tuple[Path, str, str]:
    """(tritonserver binary, the LIBDIR to put first on LD_LIBRARY_PATH, the venv's site-packages).

    The python-backend stub embeds the base interpreter, so it would import the base
    install's packages (numpy 2 here); PYTHONPATH = the venv's site-packages makes the
    models see the venv's numpy<2 and onnxruntime."""
    py = venv / "bin" / "python"
    if not py.is_file():
        raise TritonServerError(f"no Triton server venv at {venv}; {SETUP_HINT}")
    out = subprocess.run(
        [
            str(py),
            "-c",
            "import pathlib, sysconfig, pytriton; "
            "print(pathlib.Path(pytriton.__file__).parent / 'tritonserver'); "
            "print(sysconfig.get_config_var('LIBDIR')); print(sysconfig.get_paths()['purelib'])",
        ],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise TritonServerError(
            f"{py} cannot import pytriton ({out.stderr.strip().splitlines()[-1:]}); {SETUP_HINT}"
        )
    root, libdir, site = out.stdout.split("\n")[:3]
    binary = Path(root) / "bin" / "tritonserver"
    if (
        not binary.is_file()
        or not (Path(root) / "backends" / "python" / "triton_python_backend_stub").is_file()
    ):
        raise TritonServerError(f"no tritonserver binary or python-backend stub under {root}; {SETUP_HINT}")
    return binary, libdir, site


@dataclass
class TritonServer:
    """A running server: ``grpc_url`` for ``--triton-url``; ``stop()`` ends it by PID."""

    proc: subprocess.Popen
    grpc_port: int
    http_port: int
    log_path: Path
    models: list[str] = field(default_factory=list)

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""

    def owns_ports(self) -> bool:
        """Whether our own process listens on both ports (not another server that holds one)."""
        return self.proc.poll() is None and {self.grpc_port, self.http_port} <= listening_ports(self.proc.pid)

    def ready(self) -> bool:
        if not self.owns_ports():
            return False
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=1) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until our process serves both ports; stopped (and reaped) on any failure or interruption."""
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    last = self.log().strip().splitlines()[-1:]
                    raise TritonServerError(
                        f"tritonserver exited with {self.proc.returncode} before it was ready; "
                        f"last log line: {last} ({self.log_path})"
                    )
                if self.ready():
                    return
                time.sleep(0.2)
            raise TritonServerError(f"tritonserver not ready after {timeout:.0f} s (log: {self.log_path})")
        except BaseException:
            self.stop()
            raise

    def _kill_group(self) -> None:
        """SIGKILL what is left of the server's process group (its own session, see start_server):
        python-backend stubs outlive a killed server otherwise."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def group_alive(self) -> bool:
        """Whether any process of the server's group (server or stubs) still exists."""
        try:
            os.killpg(self.proc.pid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def kill(self) -> None:
        """SIGKILL the server and its stubs: a crash, as the tests simulate one."""
        self._kill_group()
        self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM and wait (Triton drains in-flight requests and ends its stubs), SIGKILL after
        ``timeout``; then nothing of the group is left."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        deadline = time.monotonic() + 5
        while self.group_alive() and time.monotonic() < deadline:
            time.sleep(0.05)


def start_server(
    repo: Path,
    models: list[str] | None = None,
    log_path: Path | None = None,
    grpc_port: int | None = None,
    http_port: int | None = None,
    venv: Path = DEFAULT_VENV,
    extra: list[str] | None = None,
    wait: float = 60.0,
    die_with_parent: bool = True,
) -> TritonServer:
    """Start tritonserver on 127.0.0.1 over ``repo``, loading ``models`` explicitly (default: all
    model folders), metrics off; returns once /v2/health/ready answers.

    With explicit model control a model that fails to load is reported by the load call and in
    the log, and the server keeps serving the others (``--exit-on-error=false``). A port that is
    already taken is refused before starting. ``die_with_parent`` (default): the kernel kills the
    server when the thread that started it dies, so a launcher, test run or benchmark killed even by
    SIGKILL leaves no server behind; pass False to start one from a short-lived worker thread.
    """
    if not Path(repo).is_dir():
        raise TritonServerError(
            f"model repository {repo} is not a folder; write one with "
            "python -m build.engines ... --triton-repo DIR (or build.triton_repo)"
        )
    if grpc_port and grpc_port == http_port:
        raise TritonServerError(
            f"--grpc-port and --http-port are both {grpc_port}; give them different ports"
        )
    binary, libdir, site = find_server(venv)
    for flag, port in (("--grpc-port", grpc_port), ("--http-port", http_port)):
        if port and port_in_use(port):
            raise TritonServerError(
                f"port {port} is already in use (another server?); pass a free {flag} "
                "or stop what listens there"
            )
    repo = Path(repo).resolve()
    if models is None:
        models = sorted(p.name for p in repo.iterdir() if (p / "config.pbtxt").is_file())
    picked = free_ports(2)
    grpc_port = grpc_port or next(p for p in picked if p != http_port)
    http_port = http_port or next(p for p in picked if p != grpc_port)
    log_path = Path(log_path or repo.parent / f"tritonserver-{grpc_port}.log")
    env = dict(
        os.environ,
        LD_LIBRARY_PATH=":".join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH")) if p),
        DYNPOSE_TRITON_SITE=site,
    )
    cmd = [
        str(binary),
        f"--model-repository={repo}",
        "--model-control-mode=explicit",
        *[f"--load-model={m}" for m in models],
        "--exit-on-error=false",
        "--strict-readiness=false",
        "--http-address=127.0.0.1",
        f"--http-port={http_port}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={grpc_port}",
        "--allow-metrics=false",
        f"--backend-directory={binary.parents[1] / 'backends'}",
        *(extra or []),
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )
    server = TritonServer(proc, grpc_port, http_port, log_path, list(models))
    server.wait_ready(wait)
    return server


class _Stop(BaseException):
    """A stop signal (SIGTERM/SIGHUP) turned into an exception, so ``finally`` reaps the server."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stop(signum: int, _frame: object) -> None:
    raise _Stop(signum)


def model_repo(text: str) -> Path:
    """--repo: an existing folder, checked before the server starts. An empty repository is allowed:
    the launcher's readiness check does not wait on models, and models can be added to it later."""

    repo = Path(text)
    if not repo.is_dir():
        raise argparse.ArgumentTypeError(
            f"model repository {text} is not a folder; write one with python -m build.triton_repo"
        )
    return repo


def main(argv: list[str] | None = None) -> int:
    from runtime.errors import guarded

    return guarded(_main, argv, prog="python -m tools.triton_server")


def _main(argv: list[str]) -> int:
    from runtime.cli.args import OneLineParser, existing_dir, port

    p = OneLineParser(prog="python -m tools.triton_server", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--repo", required=True, type=model_repo, help="model repository (python -m build.triton_repo)"
    )
    p.add_argument("--grpc-port", type=port, default=8001, help="0: a free port")
    p.add_argument("--http-port", type=port, default=8000, help="0: a free port")
    p.add_argument(
        "--venv",
        type=existing_dir,
        default=DEFAULT_VENV,
        help="the server venv of tools/setup_triton.sh",
    )
    args = p.parse_args(argv)
    old = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    server = None
    try:
        server = start_server(
            args.repo,
            grpc_port=args.grpc_port,
            http_port=args.http_port,
            venv=args.venv,
            log_path=Path("tritonserver.log"),
        )
        print(
            f"tritonserver pid {server.pid} ready: --triton-url {server.grpc_url} (log tritonserver.log); "
            "Ctrl-C stops it",
            flush=True,
        )
        server.proc.wait()
        print(
            f"error: tritonserver pid {server.pid} exited with {server.proc.returncode} "
            "(log tritonserver.log)",
            file=sys.stderr,
        )
        return 3
    except TritonServerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except _Stop as e:
        return 128 + e.signum
    finally:
        if server is not None:  # a second signal must not cut the reaping short
            for sig in (*old, signal.SIGINT):
                old.setdefault(sig, signal.signal(sig, signal.SIG_IGN))
            server.stop()
        for sig, h in old.items():
            signal.signal(sig, h)


if __name__ == "__main__":
    raise SystemExit(main())
