"""Run untrusted Python in a child process: isolated mode, empty environment, temp dir, limits, no network.

`python -I` in a fresh temporary directory, an empty environment, CPU/memory/file-size/process
rlimits set in `preexec_fn`, a wall-clock limit that kills the whole process group, and a wrapper
that, before the program runs, replaces the socket constructors and the process-spawning functions
(RLIMIT_NPROC is not enforced for root) with a function that raises. Where the kernel allows it
(`unshare --net`, as root or in a user namespace), the child also runs in a network namespace of its
own with no interface up, so no network is reachable whatever the program does. Without that it
stops accidents and naive programs, not a determined attacker: run the `agents` queue in a container
(or gVisor/nsjail) as a non-root user in production.
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OUTPUT_LIMIT = 10_000  # characters of stdout/stderr kept
FILE_LIMIT = 10 * 1024 * 1024

# Runs before the program: no socket can be made nor process spawned, then the program runs as __main__.
WRAPPER = """
import _socket, os, socket, subprocess, sys
def _refused(*args, **kwargs):
    raise PermissionError("network access and new processes are disabled in the sandbox")
for _module, _names in (
    (socket, ("socket", "create_connection", "create_server", "socketpair", "fromfd", "getaddrinfo")),
    (_socket, ("socket", "socketpair", "getaddrinfo")),
    (os, ("fork", "forkpty", "system", "popen", "posix_spawn", "posix_spawnp", "execv", "execve",
          "execvp", "execvpe", "execl", "execle", "execlp", "execlpe", "spawnv", "spawnve")),
    (subprocess, ("Popen", "run", "call", "check_call", "check_output", "getoutput", "getstatusoutput")),
):
    for _name in _names:
        if hasattr(_module, _name):
            setattr(_module, _name, _refused)
sys.argv = ["main.py"]
import runpy
runpy.run_path("main.py", run_name="__main__")
"""


@dataclass(frozen=True)
class SandboxResult:
    """What a sandboxed run printed and how it ended (`timed_out` when the time limit killed it)."""

    stdout: str
    stderr: str
    exit_code: int
    timed_out: bool

    def as_json(self) -> dict[str, Any]:
        """The run as stored in a job result."""
        return {
            "stdout": self.stdout,
            "stderr": self.stderr,
            "exit_code": self.exit_code,
            "timed_out": self.timed_out,
        }


def _limits(time_limit_s: float, memory_mb: int) -> Any:
    def apply() -> None:  # runs in the child between fork and exec
        cpu = int(time_limit_s) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        memory = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))  # no fork (not enforced for root: see WRAPPER)

    return apply


def _clip(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace")
    return text if len(text) <= OUTPUT_LIMIT else text[:OUTPUT_LIMIT] + "\n[output truncated]"


UNSHARE_VARIANTS = (["--net"], ["--user", "--map-root-user", "--net"])


@functools.lru_cache(maxsize=1)
def network_isolation() -> tuple[str, ...]:
    """The `unshare` prefix that gives a child an empty network namespace here, or () if none works."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    for variant in UNSHARE_VARIANTS:
        probe = subprocess.run(
            [unshare, *variant, "--", "true"], capture_output=True, timeout=10, check=False
        )
        if probe.returncode == 0:
            return (unshare, *variant, "--")
    return ()


def run_python(code: str, *, time_limit_s: float = 5.0, memory_mb: int = 256) -> SandboxResult:
    """Run `code` as a program in the sandbox; never raises for what the program does."""
    with tempfile.TemporaryDirectory(prefix="creditflow-sandbox-") as workdir:
        path = Path(workdir)
        (path / "main.py").write_text(code)
        process = subprocess.Popen(
            [*network_isolation(), sys.executable, "-I", "-X", "utf8", "-c", WRAPPER],
            cwd=path,
            env={},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_limits(time_limit_s, memory_mb),  # noqa: PLW1509 (only setrlimit calls)
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=time_limit_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            timed_out = True
    return SandboxResult(_clip(stdout), _clip(stderr), process.returncode, timed_out)
