"""py-spy over every process of a benchmark's stack while it runs at saturation, and a summary of where
the CPU went (self and inclusive, by function), so a cut is made where the profile points.

Run alone on saved profiles: .venv/bin/python bench/profiling.py DIR [--top 25]
py-spy is a development tool (`pip install py-spy`); without it the benchmarks run unprofiled.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import psutil


@contextmanager
def spied(roots: Mapping[str, int], out_dir: Path | None, rate: int = 250) -> Iterator[None]:
    """Record collapsed stacks (GIL-holding threads: Python CPU) of each root process and its children
    into `out_dir` while the block runs."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if out_dir is None or spy is None:
        if out_dir is not None:
            print("py-spy is not installed: running unprofiled", file=sys.stderr)
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    recorders = []
    for name, pid in roots.items():
        root = psutil.Process(pid)
        for index, proc in enumerate([root, *root.children(recursive=True)]):
            out = out_dir / f"{name}-{index}-{proc.pid}.txt"
            command = [spy, "record", "--pid", str(proc.pid), "--format", "raw", "--rate", str(rate), "--gil"]
            recorders.append(
                subprocess.Popen(
                    [*command, "--nonblocking", "-o", str(out)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
    try:
        yield
    finally:
        for recorder in recorders:
            recorder.send_signal(signal.SIGINT)
        for recorder in recorders:
            try:
                recorder.wait(timeout=30)
            except subprocess.TimeoutExpired:
                recorder.kill()


OURS = ("api/", "orchestration/", "workers/", "ledger/", "runtime/", "assistant/", "celeryconfig")
IDLE = ("select", "poll", "epoll", "wait", "sleep", "_wait_for_tstate_lock", "acquire", "recv_into", "accept")


def _frames(stack: str) -> list[str]:
    # py-spy raw: "thread;frame;frame ... count"; a frame is "function (file:line)"
    frames = stack.split(";")[1:]
    return [frame.split(" (")[0] + " (" + frame.split(" (")[-1].split(":")[0] for frame in frames]


def summary(path: Path, top: int = 20) -> str:
    """The busiest functions of one profile: self samples and inclusive samples, idle waits left out."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = _frames(stack)
        if not frames or any(frames[-1].startswith(word) for word in IDLE):
            continue
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    lines = [f"{path.name}: {total} busy samples"]
    lines += [f"  self {100 * n / max(total, 1):5.1f}%  {name}" for name, n in own.most_common(top)]
    lines += [f"  incl {100 * n / max(total, 1):5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    ours = [(name, n) for name, n in inclusive.most_common() if name.split(" (")[-1].startswith(OURS)]
    lines += [f"  ours {100 * n / max(total, 1):5.1f}%  {name}" for name, n in ours[:top]]
    return "\n".join(lines)


def main() -> int:
    """Summarise every profile in a directory."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dir", type=Path)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    for path in sorted(args.dir.glob("*.txt")):
        print(summary(path, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
