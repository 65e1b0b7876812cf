"""Tests that fetch user-given URLs connect to 127.0.0.1 only: names resolve through a table the test
fills, and any socket connecting anywhere else fails the test (AF_UNIX sockets, e.g. a local database
socket, are let through)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

LOCAL = frozenset({"127.0.0.1", "::1"})


class NetworkGuard:
    """What the guarded code asked for: every name it resolved and every address it tried to reach."""

    def __init__(self) -> None:
        self.names: dict[str, list[str]] = {}
        self.lookups: list[str] = []
        self.connects: list[str] = []
        self.refused: list[str] = []

    def map(self, name: str, *addresses: str) -> None:
        """Resolve `name` to these addresses (in order) from now on."""
        self.names[name.lower()] = list(addresses)


def _numeric(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", maxsplit=1)[0])
    except ValueError:
        return False
    return True


@contextmanager
def network_guard() -> Iterator[NetworkGuard]:
    """Install the resolver table and the connect guard for the duration of the block."""
    guard = NetworkGuard()
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name and _numeric(name):
            return real_getaddrinfo(host, port, *args, **kwargs)
        guard.lookups.append(name)
        addresses = guard.names.get(name.lower().rstrip("."))
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, f"{name} is not in the test's name table")
        answers = []
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (
                (address, int(port or 0), 0, 0) if family == socket.AF_INET6 else (address, int(port or 0))
            )
            answers.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return answers

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family == socket.AF_UNIX:
            return
        host = str(address[0])
        guard.connects.append(host)
        if host not in LOCAL:
            guard.refused.append(host)
            raise AssertionError(f"the test tried to connect to {host}, which is not 127.0.0.1")

    def connect(self: socket.socket, address: Any) -> None:
        check(self, address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(self, address)
        return real_connect_ex(self, address)

    patches: list[tuple[Any, str, Callable[..., Any]]] = [
        (socket, "getaddrinfo", getaddrinfo),
        (socket.socket, "connect", connect),
        (socket.socket, "connect_ex", connect_ex),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    for owner, name, value in patches:
        setattr(owner, name, value)
    try:
        yield guard
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)
    assert not guard.refused, f"connections attempted beyond 127.0.0.1: {guard.refused}"
