"""`creditflow dev`: migrate, start every process, prefix their output, stop them all cleanly."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO

from runtime.db import make_engine
from runtime.local import stop_embedded_redis
from runtime.migrate import upgrade
from runtime.settings import Settings

# Settlement never waits behind a long agent task; jobs that only wait (remote models, provider
# polls) share one threads pool of hundreds of slots; the local model has its own prefork pool.
WORKER_GROUPS = {
    "worker-critical": "critical,maintenance",
    "worker-io": "interactive,agents,images",
    "worker-local": "local",
}
STOP_GRACE_S = 15.0


@dataclass
class Child:
    """One supervised process, in its own process group so its children die with it."""

    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    pumps: list[threading.Thread] = field(default_factory=list)

    def start(self, width: int) -> None:
        """Spawn the process and copy its output, each line prefixed with its name."""
        self.process = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        assert self.process.stdout is not None
        pump = threading.Thread(target=_pump, args=(self.name.ljust(width), self.process.stdout), daemon=True)
        pump.start()
        self.pumps.append(pump)

    def signal_group(self, signum: int) -> None:
        """Send `signum` to the whole process group (gunicorn workers, prefork children)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)


def _pump(prefix: str, stream: IO[bytes]) -> None:
    for raw in iter(stream.readline, b""):
        sys.stdout.write(f"{prefix} | {raw.decode(errors='replace')}")
        sys.stdout.flush()


def stack_children(api_port: int, flower_port: int) -> list[Child]:
    """The processes of a whole development stack."""
    base = [sys.executable, "-m", "cli.main"]
    children = [Child("api", [*base, "api", "--port", str(api_port)])]
    children += [
        Child(name, [*base, "worker", "--queues", queues, "--hostname", f"{name}@%h"])
        for name, queues in WORKER_GROUPS.items()
    ]
    children.append(Child("beat", [*base, "beat"]))
    children.append(Child("flower", [*base, "flower", "--port", str(flower_port)]))
    return children


def _stop(children: list[Child]) -> None:
    for child in children:
        child.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for child in children:
        if child.process is None:
            continue
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"creditflow dev: {child.name} did not stop in time; killing it", flush=True)
        child.signal_group(signal.SIGKILL)  # whatever is left of the group (orphaned pool children)
        child.process.wait()
        for pump in child.pumps:  # let its last lines (shutdown messages) reach the terminal
            pump.join(timeout=2)


def run_stack(settings: Settings, *, api_port: int | None, flower_port: int | None) -> int:
    """Run the whole stack in the foreground; return non-zero if a process died on its own."""
    embedded_redis = os.environ.get("CREDITFLOW_EMBEDDED_REDIS") == "1"
    settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()

    stopping = threading.Event()

    def _on_signal(_signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    children = stack_children(api_port or settings.API_PORT, flower_port or settings.FLOWER_PORT)
    width = max(len(child.name) for child in children)
    for child in children:
        child.start(width)
    print(
        f"creditflow dev: API http://{settings.API_HOST}:{api_port or settings.API_PORT}  "
        f"docs /api/docs  Flower http://127.0.0.1:{flower_port or settings.FLOWER_PORT}  (Ctrl-C stops)",
        flush=True,
    )
    failed: Child | None = None
    while not stopping.wait(0.5):
        failed = next((c for c in children if c.process and c.process.poll() is not None), None)
        if failed:
            break
    _stop(children)
    if embedded_redis:
        stop_embedded_redis(settings.VAR_DIR)
    if failed and not stopping.is_set():
        code = failed.process.returncode if failed.process else 1
        print(f"creditflow dev: {failed.name} exited with code {code}; stopped the stack", flush=True)
        return 1
    return 0
