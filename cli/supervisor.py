"""`creditflow dev`: migrate, start every process, prefix their output, restart one that dies, stop
them all cleanly.

A child that dies (a worker SIGKILLed by the OOM killer, a crash) is restarted on its own, after a
backoff, while the others keep serving: its running jobs are ended by the reaper's heartbeat check.
Only Ctrl-C/SIGTERM, or a child dying again and again (a crash loop), stops the stack.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO

from runtime.db import make_engine
from runtime.local import stop_embedded_redis
from runtime.migrate import upgrade
from runtime.settings import Settings

# Settlement never waits behind a long agent task; jobs that only wait (remote models, provider
# polls, webhook receivers) share one threads pool of hundreds of slots; the local model has its own
# prefork pool.
WORKER_GROUPS = {
    "worker-critical": "critical,maintenance",
    "worker-io": "interactive,agents,images,notify",
    "worker-local": "local",
}
STOP_GRACE_S = 15.0
POLL_S = 0.2


@dataclass(frozen=True)
class RestartPolicy:
    """How a dead child is brought back: backoff doubling from `first_s` to `max_s`, back to `first_s`
    once a child ran `reset_after_s`; `max_deaths` deaths of one child within `window_s` stop the stack."""

    first_s: float = 1.0
    max_s: float = 30.0
    reset_after_s: float = 60.0
    max_deaths: int = 5
    window_s: float = 60.0


@dataclass
class Child:
    """One supervised process, in its own process group so its children die with it."""

    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    pumps: list[threading.Thread] = field(default_factory=list)
    started_at: float = 0.0
    restarts: int = 0
    backoff_s: float = 0.0
    restart_at: float | None = None  # when a dead child is due to start again
    deaths: deque[float] = field(default_factory=deque)

    def start(self, width: int) -> None:
        """Spawn the process and copy its output, each line prefixed with its name."""
        self.process = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.started_at = time.monotonic()
        self.restart_at = None
        assert self.process.stdout is not None
        pump = threading.Thread(target=_pump, args=(self.name.ljust(width), self.process.stdout), daemon=True)
        pump.start()
        self.pumps = [p for p in self.pumps if p.is_alive()] + [pump]

    def signal_group(self, signum: int) -> None:
        """Send `signum` to the whole process group (gunicorn workers, prefork children)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def reap(self) -> int:
        """After the leader died: kill what is left of its group (gunicorn workers still holding the
        port, orphaned pool processes), let its last lines out; its exit code."""
        assert self.process is not None
        code = self.process.returncode
        self.signal_group(signal.SIGKILL)
        for pump in self.pumps:
            pump.join(timeout=1)
        self.process = None
        return code


def _pump(prefix: str, stream: IO[bytes]) -> None:
    for raw in iter(stream.readline, b""):
        sys.stdout.write(f"{prefix} | {raw.decode(errors='replace')}")
        sys.stdout.flush()


def say(line: str) -> None:
    """One line of the supervisor's own, among its children's."""
    print(f"creditflow dev: {line}", flush=True)


def stack_children(api_port: int, flower_port: int, *, metrics_port: int = 0) -> list[Child]:
    """The processes of a whole development stack (with `metrics_port`, the workers' metrics on it and
    the next ports: one port each)."""
    base = [sys.executable, "-m", "cli.main"]
    children = [Child("api", [*base, "api", "--port", str(api_port)])]
    children += [
        Child(name, [*base, "worker", "--queues", queues, "--hostname", f"{name}@%h",
                     "--metrics-port", str(metrics_port + index if metrics_port else 0)])
        for index, (name, queues) in enumerate(WORKER_GROUPS.items())
    ]
    children.append(Child("beat", [*base, "beat"]))
    children.append(Child("flower", [*base, "flower", "--port", str(flower_port)]))
    return children


def _stop(children: Sequence[Child]) -> None:
    running = [child for child in children if child.process is not None]
    for child in running:
        child.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for child in running:
        assert child.process is not None
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{child.name} did not stop in time; killing it")
        child.signal_group(signal.SIGKILL)  # whatever is left of the group (orphaned pool children)
        child.process.wait()
        for pump in child.pumps:  # let its last lines (shutdown messages) reach the terminal
            pump.join(timeout=2)


def _died(child: Child, policy: RestartPolicy, now: float) -> str | None:
    """Schedule the restart of a child that exited; why the stack must stop instead, if it must."""
    ran_s = now - child.started_at
    code = child.reap()
    child.deaths.append(now)
    while child.deaths and child.deaths[0] < now - policy.window_s:
        child.deaths.popleft()
    if len(child.deaths) >= policy.max_deaths:
        return (
            f"{child.name} exited with code {code}, {len(child.deaths)} times within {policy.window_s:g} s "
            "(a crash loop); stopped the stack"
        )
    child.backoff_s = (
        policy.first_s if ran_s >= policy.reset_after_s or not child.backoff_s
        else min(child.backoff_s * 2, policy.max_s)
    )
    child.restarts += 1
    child.restart_at = now + child.backoff_s
    delay = f"{child.backoff_s:.1f} s"
    say(f"{child.name} exited with code {code}; restarting in {delay} (restart {child.restarts})")
    return None


def supervise(children: Sequence[Child], policy: RestartPolicy = RestartPolicy()) -> int:
    """Start the children and keep them running until SIGINT/SIGTERM (0) or a crash loop (1)."""
    stopping = threading.Event()
    signal.signal(signal.SIGINT, lambda _signum, _frame: stopping.set())
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stopping.set())
    width = max(len(child.name) for child in children)
    reason: str | None = None
    try:  # whatever goes wrong here, no child outlives the supervisor
        for child in children:
            child.start(width)
        while reason is None and not stopping.wait(POLL_S):
            now = time.monotonic()
            for child in children:
                if child.process is not None and child.process.poll() is not None:
                    reason = _died(child, policy, now)
                elif child.restart_at is not None and now >= child.restart_at and not stopping.is_set():
                    child.start(width)
                if reason:
                    break
    finally:
        _stop(children)
    if reason:
        say(reason)
        return 1
    return 0


def run_stack(settings: Settings, *, api_port: int | None, flower_port: int | None) -> int:
    """Run the whole stack in the foreground; non-zero if it stopped on a crash loop."""
    embedded_redis = os.environ.get("CREDITFLOW_EMBEDDED_REDIS") == "1"
    settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    api_port, flower_port = api_port or settings.API_PORT, flower_port or settings.FLOWER_PORT
    children = stack_children(api_port, flower_port, metrics_port=settings.WORKER_METRICS_PORT)
    say(
        f"API http://{settings.API_HOST}:{api_port}  docs /api/docs  Flower http://127.0.0.1:{flower_port}  "
        "(Ctrl-C stops; a process that dies is restarted)"
    )
    try:
        return supervise(children)
    finally:
        if embedded_redis:
            stop_embedded_redis(settings.VAR_DIR)
