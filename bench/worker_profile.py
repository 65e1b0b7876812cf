"""The multi-host worker profile, measured: idle broker connections and Redis commands and messages per
second of N idle workers with Celery's gossip, mingle and worker heartbeats on or off, and how long the
remaining workers take to notice one killed (gossip's "missed heartbeat"; without gossip nobody does, and
the jobs of a dead worker end through the reaper's job heartbeats, JOB_HEARTBEAT_TIMEOUT_S, in every
profile). Figures per profile, and each profile's ratio to the full one (the floor is `bare`).

Run: .venv/bin/python bench/worker_profile.py [--workers 3] [--window 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.brokers import PrivateRedis  # noqa: E402

PROFILES = {
    "full": [],
    "no gossip": ["--without-gossip"],
    "no gossip, no mingle": ["--without-gossip", "--without-mingle"],
    "bare": ["--without-gossip", "--without-mingle", "--without-heartbeat"],
}
NOTICE_LIMIT_S = 30.0


def _worker(n: int, flags: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.app",
        "worker",
        "-Q",
        "interactive",
        "--pool",
        "threads",
        "-c",
        "4",
        "--events",
        "--loglevel",
        "INFO",
        f"--hostname=w{n}@%h",
        *flags,
    ]
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _counts(client: redis.Redis) -> tuple[int, int, int]:
    info = client.info("all")
    publishes = int(info.get("cmdstat_publish", {}).get("calls", 0))
    return int(info["connected_clients"]), int(info["total_commands_processed"]), publishes


def measure(name: str, flags: list[str], workers: int, window_s: float, work: Path) -> dict[str, Any]:
    """One profile on a fresh Redis: connections, commands/s and publishes/s while idle; notice time."""
    server = PrivateRedis(work / f"redis-{name.replace(' ', '_').replace(',', '')}").start()
    client = redis.Redis(port=server.port)
    logs = [work / f"{name.replace(' ', '_').replace(',', '')}-{n}.log" for n in range(workers)]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": server.url,
        "BROKER_URL": "",
        "DATABASE_URL": f"sqlite:///{work / 'bench.db'}",
        "CANARY_QUEUES": "",
        "CREDITFLOW_ENV": "test",
        "VAR_DIR": str(work / "var"),
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs = [_worker(n, flags, env, log) for n, log in enumerate(logs)]
        assert _until(lambda: all(" ready." in _text(log) for log in logs), 120), "workers did not start"
        time.sleep(3)  # mingle and the first heartbeats settle
        _clients, commands0, publishes0 = _counts(client)
        time.sleep(window_s)
        clients1, commands1, publishes1 = _counts(client)
        killed = time.monotonic()
        os.killpg(procs[0].pid, signal.SIGKILL)
        noticed = _until(
            lambda: any("missed heartbeat from w0@" in _text(log) for log in logs[1:]), NOTICE_LIMIT_S
        )
        notice_s = time.monotonic() - killed if noticed else None
        return {
            "profile": name,
            "connections": clients1 - 1,  # this script's own client aside
            "connections_per_worker": round((clients1 - 1) / workers, 1),
            "commands_per_s": round((commands1 - commands0) / window_s, 1),
            "publishes_per_s": round((publishes1 - publishes0) / window_s, 2),
            "dead_worker_noticed_s": None if notice_s is None else round(notice_s, 1),
        }
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        server.stop()


def _text(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


def main() -> int:
    """Measure every profile and print one table (or JSON)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured while idle")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cf-profile-") as tmp:
        rows = [
            measure(name, flags, args.workers, args.window, Path(tmp)) for name, flags in PROFILES.items()
        ]
    full = rows[0]
    for row in rows:
        row["commands_ratio_to_full"] = round(row["commands_per_s"] / full["commands_per_s"], 2)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{args.workers} idle workers (threads pool, 4 slots, --events), {args.window:g} s measured each")
    print(f"{'profile':<22} {'conns':>6} {'per wkr':>8} {'cmds/s':>8} {'pub/s':>7} {'x full':>7} {'dead':>6}")
    for row in rows:
        seen = "never" if row["dead_worker_noticed_s"] is None else f"{row['dead_worker_noticed_s']} s"
        print(
            f"{row['profile']:<22} {row['connections']:>6} {row['connections_per_worker']:>8} "
            f"{row['commands_per_s']:>8} {row['publishes_per_s']:>7} {row['commands_ratio_to_full']:>7} "
            f"{seen:>6}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
