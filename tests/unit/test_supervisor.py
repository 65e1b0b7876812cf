"""The dev supervisor on throwaway children: a dead child is restarted with backoff, the others are
left alone; a crash loop stops the stack (non-zero); SIGTERM stops every child and its group."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import psutil
import pytest

from tests.support.processes import ROOT, child_env, stop, wait_for_log

# A long-running child: records each start (its pid, a helper's in its process group, the time) and
# any signal it gets, then exits on SIGTERM/SIGINT leaving the helper for the supervisor to kill.
CHILD = """
import os, signal, subprocess, sys, time
name, state = sys.argv[1], sys.argv[2]
def on_signal(signum, _frame):
    with open(f"{state}/{name}.signals", "a") as out:
        out.write(f"{signum}\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open(f"{state}/{name}.starts", "a") as out:
    out.write(f"{os.getpid()} {helper.pid} {time.time()}\\n")
print(f"{name} up", flush=True)
while True:
    time.sleep(1)
"""
DRIVER = """
import json, sys
from cli.supervisor import Child, RestartPolicy, supervise
spec = json.loads(sys.argv[1])
sys.exit(supervise([Child(n, a) for n, a in spec["children"]], RestartPolicy(**spec["policy"])))
"""


class Stack:
    """A supervisor process over named children, with what they recorded under `state`."""

    def __init__(self, tmp_path: Path, children: dict[str, list[str]], policy: dict[str, float]) -> None:
        self.state, self.log = tmp_path, tmp_path / "supervisor.log"
        spec = json.dumps({"children": list(children.items()), "policy": policy})
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", DRIVER, spec], env=child_env(), cwd=ROOT,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def starts(self, name: str, count: int, timeout: float = 30) -> list[tuple[int, int, float]]:
        """The first `count` starts of child `name` (pid, helper pid, time), waiting for them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            path = self.state / f"{name}.starts"
            lines = path.read_text().splitlines() if path.exists() else []
            if len(lines) >= count:
                return [(int(p), int(h), float(t)) for p, h, t in (line.split() for line in lines)]
            time.sleep(0.05)
        raise AssertionError(f"{name} not started {count} times:\n{self.log.read_text()}")

    def signals(self, name: str) -> list[int]:
        path = self.state / f"{name}.signals"
        return [int(line) for line in path.read_text().split()] if path.exists() else []

    def pids(self) -> list[int]:
        return [
            pid for path in self.state.glob("*.starts")
            for line in path.read_text().splitlines() for pid in map(int, line.split()[:2])
        ]


def child(name: str, state: Path) -> list[str]:
    return [sys.executable, "-c", CHILD, name, str(state)]


def gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def stacks() -> Iterator[list[Stack]]:
    started: list[Stack] = []
    yield started
    for stack in started:  # children live in sessions of their own: clean up by pid
        stop(stack.process, timeout=20)
        for pid in stack.pids():
            with suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()


def test_a_dead_child_is_restarted_with_backoff_and_the_others_keep_running(
    tmp_path: Path, stacks: list[Stack]
) -> None:
    policy = {"first_s": 0.5, "max_s": 1.0, "reset_after_s": 3.0, "max_deaths": 5, "window_s": 60.0}
    stack = Stack(tmp_path, {"steady": child("steady", tmp_path), "flaky": child("flaky", tmp_path)}, policy)
    stacks.append(stack)
    [(steady, steady_helper, _)] = stack.starts("steady", 1)

    expected = ["restarting in 0.5 s (restart 1)", "restarting in 1.0 s (restart 2)",
                "restarting in 1.0 s (restart 3)"]  # doubling, capped at max_s
    for restart, line in enumerate(expected, start=1):
        pid, helper, _ = stack.starts("flaky", restart)[-1]
        killed_at = time.time()
        psutil.Process(pid).kill()
        wait_for_log(stack.log, f"flaky exited with code -9; {line}", process=stack.process)
        assert gone(helper), "the dead child's group was killed with it"
        new_pid, _, started = stack.starts("flaky", restart + 1)[-1]
        assert new_pid != pid
        assert started - killed_at >= float(line.split()[2]), "it waited its backoff"

    # Once a child ran past reset_after_s, the next death starts the backoff over.
    pid, _, started = stack.starts("flaky", 4)[-1]
    time.sleep(max(0.0, started + 3.5 - time.time()))
    psutil.Process(pid).kill()
    reset = "flaky exited with code -9; restarting in 0.5 s (restart 4)"
    wait_for_log(stack.log, reset, process=stack.process)
    stack.starts("flaky", 5)

    assert len(stack.starts("steady", 1)) == 1, "steady was never restarted"
    assert stack.signals("steady") == [], "nor signalled"
    assert psutil.Process(steady).is_running()
    assert psutil.Process(steady_helper).is_running()

    stack.process.send_signal(signal.SIGTERM)
    assert stack.process.wait(timeout=30) == 0, stack.log.read_text()
    assert stack.signals("steady") == [signal.SIGTERM]
    assert stack.signals("flaky") == [signal.SIGTERM], "the running flaky got one SIGTERM, at the stop"
    assert all(gone(pid) for pid in stack.pids()), "every child and its process group stopped"
    assert "stopped the stack" not in stack.log.read_text()


def test_a_crash_loop_stops_the_stack_with_its_reason(tmp_path: Path, stacks: list[Stack]) -> None:
    policy = {"first_s": 0.1, "max_s": 0.4, "reset_after_s": 60.0, "max_deaths": 4, "window_s": 60.0}
    crasher = [sys.executable, "-c", "import sys; print('crasher: bad config', flush=True); sys.exit(3)"]
    stack = Stack(tmp_path, {"steady": child("steady", tmp_path), "crasher": crasher}, policy)
    stacks.append(stack)
    assert stack.process.wait(timeout=60) == 1, "a crash loop is a failure"
    text = stack.log.read_text()
    for restart, delay in enumerate(("0.1", "0.2", "0.4"), start=1):
        assert f"crasher exited with code 3; restarting in {delay} s (restart {restart})" in text, text
    assert "restart 4" not in text
    assert "crasher: bad config" in text  # its own words reach the terminal before the verdict
    assert text.rstrip().endswith(
        "creditflow dev: crasher exited with code 3, 4 times within 60 s (a crash loop); stopped the stack"
    ), text
    assert len(stack.starts("steady", 1)) == 1
    assert stack.signals("steady") == [signal.SIGTERM], "the rest were stopped cleanly"
    assert all(gone(pid) for pid in stack.pids())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_every_child_and_its_group(
    tmp_path: Path, stacks: list[Stack], signum: int
) -> None:
    policy = {"first_s": 5.0}
    names = ("one", "two", "three")
    stack = Stack(tmp_path, {name: child(name, tmp_path) for name in names}, policy)
    stacks.append(stack)
    for name in names:
        stack.starts(name, 1)
    # One child dead and waiting for its restart: the stop must not start it again, nor hang on it.
    psutil.Process(stack.starts("three", 1)[0][0]).kill()
    waiting = "three exited with code -9; restarting in 5.0 s (restart 1)"
    wait_for_log(stack.log, waiting, process=stack.process)
    stack.process.send_signal(signum)
    assert stack.process.wait(timeout=30) == 0, stack.log.read_text()
    assert stack.signals("one") == stack.signals("two") == [signal.SIGTERM]
    assert len(stack.starts("three", 1)) == 1
    assert all(gone(pid) for pid in stack.pids()), "children and the helpers in their groups"
