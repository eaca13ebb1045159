"""Loopback ports for the servers the tests and demos start (Triton, RTSP): one place to pick them."""

from __future__ import annotations

import socket


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports: all sockets are held open together, so the kernel cannot hand the
    same ephemeral port out twice (two separate picks once gave HTTP and gRPC the same port)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


def port_in_use(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port`` (SO_REUSEADDR: a TIME_WAIT port is free)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False
