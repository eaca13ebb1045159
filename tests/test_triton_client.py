"""The triton client backend's edges that need no server: flags, a missing or dead address."""

from __future__ import annotations

import argparse
import socket
import time
from pathlib import Path

import pytest

from runtime.backends import BACKENDS, BackendError, backend_class
from runtime.cli.args import host_port
from runtime.errors import InputError

MANIFEST = {
    "schema_version": 1,
    "models": {r: {"sha256": r, "outputs": []} for r in ("router", "small", "large")},
}


def test_host_port_flag_type() -> None:
    assert host_port("127.0.0.1:8001") == "127.0.0.1:8001"
    assert host_port("triton.local:1") == "triton.local:1"
    for bad in ("127.0.0.1", "http://h:8001", "h:0", "h:70000", ":8001", "h:port"):
        with pytest.raises(argparse.ArgumentTypeError, match="is not HOST:PORT"):
            host_port(bad)


def test_backend_is_in_the_table_and_needs_an_address() -> None:
    assert BACKENDS["triton"] == "runtime.backends.triton:TritonBackend"
    with pytest.raises(InputError, match=r"--triton-url HOST:PORT"):  # exit 2, before any connection
        backend_class("triton")(Path("."), MANIFEST)


def test_dead_address_is_one_line_within_seconds() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = backend_class("triton")(Path("."), MANIFEST, url=f"127.0.0.1:{port}")
    t = time.monotonic()
    with pytest.raises(BackendError) as e:
        backend.check()
    assert time.monotonic() - t < 30.0  # a hang check, not a speed target: is_server_live is capped at 5 s
    msg = str(e.value)
    assert msg.startswith(f"cannot reach Triton at 127.0.0.1:{port}") and "--triton-url" in msg
    assert "\n" not in msg
    backend.close()
