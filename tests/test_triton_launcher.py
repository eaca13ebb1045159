"""``python -m tools.triton_server`` reaps its tritonserver when it is stopped by a signal, and never
says "ready" for a server that is not its own: real launcher processes, real tritonserver (an empty
model repository keeps each start to a few seconds)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools.ports import free_ports
from tools.triton_server import TritonServer, start_server

pytestmark = pytest.mark.triton
REPO = Path(__file__).resolve().parents[1]


def _default_sigint() -> None:
    """In the child before exec: SIGINT back to its default. A shell without job control starts
    background jobs (``cmd &`` in a script) with SIGINT ignored, Python keeps an inherited SIG_IGN,
    and the launcher would then shrug off the Ctrl-C this test sends (CI started that way failed)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _launch(repo: Path, grpc: int, http: int, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tools.triton_server",
            "--repo",
            str(repo),
            "--grpc-port",
            str(grpc),
            "--http-port",
            str(http),
        ],
        cwd=cwd,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGKILL])
def test_signal_to_launcher_stops_and_reaps_its_server(tmp_path: Path, sig: int) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    grpc, http = free_ports(2)
    launcher = _launch(repo, grpc, http, tmp_path)
    line = launcher.stdout.readline()
    assert "ready" in line, launcher.stderr.read()
    pid = int(line.split("pid ")[1].split()[0])
    assert _alive(pid) and port_in_use(grpc) and port_in_use(http)
    launcher.send_signal(sig)
    assert launcher.wait(60) == (-sig if sig == signal.SIGKILL else 128 + sig)  # SIGKILL: the kernel reaps
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), f"tritonserver {pid} outlived its launcher"
    # A killed leader shows as a zombie while its other threads still close their sockets: the
    # ports free a moment later (within the same bound), not necessarily at once.
    while (port_in_use(grpc) or port_in_use(http)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not port_in_use(grpc) and not port_in_use(http)


def test_launcher_on_another_servers_ports_never_says_ready(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    other = start_server(repo, log_path=tmp_path / "other.log")
    try:
        launcher = _launch(repo, other.grpc_port, other.http_port, tmp_path)
        out, err = launcher.communicate(timeout=120)
        assert launcher.returncode == 2 and "ready" not in out
        assert err.strip().splitlines() == [
            f"error: port {other.grpc_port} is already in use (another server?); "
            "pass a free --grpc-port or stop what listens there"
        ]
        # The readiness test itself: a process of ours that does not listen there is not ready,
        # however healthy the server that does answer on those ports is.
        mine = subprocess.Popen(["sleep", "30"])
        try:
            impostor = TritonServer(mine, other.grpc_port, other.http_port, tmp_path / "none.log")
            assert other.ready() and not impostor.ready()
        finally:
            mine.kill()
            mine.wait()
        assert other.ready()
    finally:
        other.stop()


def test_a_process_that_started_a_server_takes_it_along_when_killed(tmp_path: Path) -> None:
    """start_server() as the tests and bench.triton_serving call it: the process is SIGKILLed (a CI
    timeout) and its server must not outlive it."""
    repo = tmp_path / "repo"
    repo.mkdir()
    code = (
        "import sys, time; from pathlib import Path; from tools.triton_server import start_server\n"
        f"s = start_server(Path({str(repo)!r}), log_path=Path({str(tmp_path / 'srv.log')!r}))\n"
        "print(s.pid, flush=True); time.sleep(600)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.PIPE,
        text=True,
    )
    pid = int(owner.stdout.readline())
    assert _alive(pid)
    owner.kill()
    owner.wait(30)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), f"tritonserver {pid} outlived the process that started it"


def test_launcher_whose_server_dies_says_so_and_exits_3(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    launcher = _launch(repo, 0, 0, tmp_path)
    line = launcher.stdout.readline()
    assert "ready" in line, launcher.stderr.read()
    pid = int(line.split("pid ")[1].split()[0])
    os.kill(pid, signal.SIGKILL)
    assert launcher.wait(60) == 3
    assert launcher.stderr.read().strip().splitlines() == [
        f"error: tritonserver pid {pid} exited with -9 (log tritonserver.log)"
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--repo", "missing"], "model repository missing is not a folder"),
        (
            ["--repo", ".", "--grpc-port", "9100", "--http-port", "9100"],
            "--grpc-port and --http-port are both 9100",
        ),
        (["--repo", ".", "--grpc-port", "-1"], "argument --grpc-port: -1 is out of range [0, 65535]"),
    ],
)
def test_launcher_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "tools.triton_server", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        timeout=120,
    )
    assert r.returncode == 2 and "ready" not in r.stdout and "Traceback" not in r.stderr
    assert message in r.stderr.strip().splitlines()[-1]
