"""Open event streams per API host: how many, memory per stream, XADD -> client latency, ordinary requests.

Run: DATABASE_URL=postgresql://... REDIS_URL=redis://... .venv/bin/python bench/streams.py
     [--levels 100,1000,2000 --events 10 --period-s 1 --default-workers-level 1000]
     10,000 streams on one host: --levels 10000 --workers 3 --private-redis --default-workers-level 0

For each level N a fresh `creditflow api --workers W` (W = 1 by default: one uvicorn process, "per host"
is per API process; each holds at most MAX_STREAM_CONNECTIONS) on a throw-away PostgreSQL database and
REDIS_URL (or, with --private-redis, a Redis of its own), no worker pool: N diagnostic jobs queued on
`images` (their sagas wait, unserved, on an embedded Redis as the broker, gone afterwards), spread over
users of SSE_MAX_STREAMS_PER_USER (16) streams each; also one level at the default API_WORKERS.
  1. ordinary requests (GET /api/v1/credits/balance, a few other users, paced) with 0 streams open;
  2. N streams opened (bench/stream_load.py, one asyncio process), each until it has its history;
     the API's RSS, threads and descriptors with N open against 0: memory per stream = delta / N;
  3. the same ordinary requests with the N streams open and quiet, for a heartbeat and more
     (SSE_HEARTBEAT_S: each stream then refreshes its slot and looks at its job row);
  4. K events published to every stream at a fixed pace (the entries publish_job_event writes, those
     due at once in one pipeline, each carrying its send time): XADD -> client receipt p50/p99/max,
     received/expected, the API's CPU per delivered event (less what the ordinary requests cost,
     measured in 1), the same ordinary requests meanwhile;
  5. a final event ends every stream: what is left (slots, descriptors, Redis connections).
The load processes, the publisher, PostgreSQL and Redis share the machine's cores with the API.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import psutil
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import stream_load  # noqa: E402
from bench.results import add_json_argument  # noqa: E402
from bench.stream_report import report, results_of  # noqa: E402
from orchestration.jobs import progress  # noqa: E402
from orchestration.jobs.stream_slots import slot_key  # noqa: E402
from runtime.local import embedded_redis_url, stop_embedded_redis  # noqa: E402
from tests.support import stream_client as http  # noqa: E402
from tests.support.brokers import PrivateRedis  # noqa: E402
from tests.support.databases import fresh_database  # noqa: E402
from tests.support.processes import child_env, creditflow, free_port, stop, wait_http  # noqa: E402

SECRET = "bench-streams-secret-0123456789-0123456789"  # noqa: S105 (a throw-away stack)
PROBE_USERS = 4
PUBLISH_BATCH = 500  # events in one pipeline at most


def token(sub: str) -> str:
    now = int(time.time())
    return jwt.encode(
        {"iss": "creditflow", "sub": sub, "iat": now, "exp": now + 7200}, SECRET, algorithm="HS256"
    )


class ApiTree:
    """The API's process tree (gunicorn master and its uvicorn workers): memory, CPU, threads, sockets."""

    def __init__(self, pid: int, redis_port: int) -> None:
        self.root, self.redis_port = psutil.Process(pid), redis_port

    def members(self) -> list[psutil.Process]:
        return [self.root, *self.root.children(recursive=True)]

    def cpu_s(self) -> float:
        return sum(t.user + t.system for t in (p.cpu_times() for p in self.members()))

    def sample(self) -> dict[str, int]:
        """RSS bytes, threads, open descriptors, and TCP connections to Redis, of the whole tree."""
        members = self.members()
        return {
            "rss": sum(p.memory_info().rss for p in members),
            "threads": sum(p.num_threads() for p in members),
            "fds": sum(p.num_fds() for p in members),
            "redis_conns": sum(
                1
                for p in members
                for c in p.net_connections(kind="tcp")
                if c.raddr and c.raddr.port == self.redis_port and c.status == psutil.CONN_ESTABLISHED
            ),
        }


def by_name(prefix: str) -> list[psutil.Process]:
    """This machine's processes whose name starts with `prefix` (the shared database servers)."""
    return [p for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith(prefix)]


def cpu_by_process(groups: dict[str, list[psutil.Process]]) -> dict[str, float]:
    """CPU seconds so far of each group of processes, and of the whole machine ("machine")."""
    totals = {"machine": sum(psutil.cpu_times()[:3])}  # user, nice, system: every process's work
    for name, processes in groups.items():
        totals[name] = 0.0
        for process in processes:
            with suppress(psutil.Error):  # one that ended meanwhile
                times = process.cpu_times()
                totals[name] += times.user + times.system
    return totals


@contextmanager
def api_server(env: dict[str, str], tmp: Path, workers: int | None) -> Iterator[tuple[int, psutil.Process]]:
    """`creditflow api` on a free port (`--workers` when given), until it answers /readyz."""
    port = free_port()
    log = tmp / f"api-{port}.log"
    extra = ["--workers", str(workers)] if workers else []
    process = creditflow("api", "--port", str(port), *extra, env=env, cwd=ROOT, log=log)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", process=process, log=log, timeout=120)
        yield port, psutil.Process(process.pid)
    except BaseException:
        print(f"the API's log ends:\n{log.read_text(errors='replace')[-4000:]}", file=sys.stderr)
        raise
    finally:
        stop(process)


async def _call(port: int, method: str, path: str, bearer: str, body: Any = None) -> Any:
    answer = await http.request(port, method, path, body=body, headers={"Authorization": f"Bearer {bearer}"})
    try:
        data = await answer.json()
    finally:
        answer.close()
    if answer.status >= 300:
        raise RuntimeError(f"{method} {path} answered {answer.status}: {str(data)[:300]}")
    return data


async def make_jobs(
    port: int, streams: int, per_user: int, concurrency: int
) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """Users (their first request creates them) and one queued job per stream on `images`.

    Returns (job id, bearer) per stream, the probe users' bearers, and every user's id."""
    bearers = [
        token(f"streams-{uuid.uuid4().hex}") for _ in range(math.ceil(streams / per_user) + PROBE_USERS)
    ]
    # as many at once as the opens will be: the API's thread pool has grown before 0 streams is measured
    gate = asyncio.Semaphore(concurrency)

    async def bounded(*args: Any) -> Any:
        async with gate:
            return await asyncio.wait_for(_call(port, *args), timeout=60)

    users = await asyncio.gather(*(bounded("GET", "/api/v1/me", b) for b in bearers))
    body = {"steps": 1, "queue": "images", "cost_per_step": "0.001"}
    owners = [bearers[PROBE_USERS + n // per_user] for n in range(streams)]
    created = await asyncio.gather(*(bounded("POST", "/api/v1/diagnostics/jobs", b, body) for b in owners))
    jobs = [(answer["job_id"], bearer) for answer, bearer in zip(created, owners, strict=True)]
    return jobs, bearers[:PROBE_USERS], [user["id"] for user in users]


def publish(client: redis.Redis, job_ids: list[str], events: int, period_s: float) -> float:
    """`events` progress events to every job, spread evenly over each `period_s`; the rate achieved/s.

    Each event is the XADD `publish_job_event` makes (the same entry, on the same stream), but the events
    due at one moment go in one pipeline: one round trip per tick, not per event, so that the publisher
    (in this process, on the same cores) is not what limits the rate the API is measured at."""
    total, step = len(job_ids) * events, period_s / len(job_ids)
    started = time.perf_counter()
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - started) / step) + 1, sent + PUBLISH_BATCH)
        pipe = client.pipeline(transaction=False)
        for n in range(sent, due):
            job_id = job_ids[n % len(job_ids)]
            event = progress.job_event(
                job_id, "progress", held=1000, spent=0, stage="bench", step=n // len(job_ids),
                total=events, sent_ns=time.time_ns(),
            )
            pipe.xadd(
                progress.job_stream(job_id),
                {"data": json.dumps(event, separators=(",", ":"))},
                maxlen=progress.STREAM_MAXLEN,
                approximate=True,
            )
        pipe.execute()
        sent = due
        time.sleep(max(0.0, started + sent * step - time.perf_counter()))
    return total / (time.perf_counter() - started)


def cleanup(client: redis.Redis, job_ids: set[str], user_ids: list[str]) -> int:
    """Drop what the level left on REDIS_URL: its jobs' streams and its users' keys.

    Returns the stream slots still held by its users (a stream that never gave its slot back)."""
    held = sum(int(client.zcard(slot_key(user))) for user in user_ids)
    keys = [progress.job_stream(j) for j in job_ids] + [progress.user_stream(u) for u in user_ids]
    keys += [slot_key(u) for u in user_ids]
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    return held


def run_level(
    args: argparse.Namespace, env: dict[str, str], tmp: Path, streams: int, workers: int | None
) -> dict[str, Any]:
    """One level: a fresh API, 0 then `streams` open, events published, everything measured."""
    redis_url = env["REDIS_URL"]
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    spawn = multiprocessing.get_context("spawn")
    row: dict[str, Any] = {"streams": streams, "workers": workers or int(env.get("API_WORKERS") or 2)}
    job_ids: set[str] = set()
    user_ids: list[str] = []
    with api_server(env, tmp, workers) as (port, root):
        tree = ApiTree(root.pid, urlsplit(redis_url).port or 6379)
        jobs, probe_bearers, user_ids = asyncio.run(
            make_jobs(port, streams, args.streams_per_user, args.open_concurrency)
        )
        job_ids = {job_id for job_id, _ in jobs}
        holder_end, holder_conn = spawn.Pipe()
        probe_end, probe_conn = spawn.Pipe()
        holder = spawn.Process(target=stream_load.serve_holder, args=(holder_conn, port), daemon=True)
        prober = spawn.Process(
            target=stream_load.serve_probe, args=(probe_conn, port, probe_bearers), daemon=True
        )
        holder.start()
        prober.start()
        others = {
            "Redis": by_name("redis-server"),
            "PostgreSQL": by_name("postgres"),
            "stream client": [psutil.Process(holder.pid)],
            "publisher": [psutil.Process()],
            "requests": [psutil.Process(prober.pid)],
        }
        try:

            def probed(seconds: float) -> dict[str, Any]:
                probe_end.send(("probe", (seconds, args.probe_rate)))
                return _recv(probe_end, seconds + 120)

            probed(1.0)  # warm-up: the probe users' connections and the API's pools
            row["base"] = tree.sample()
            cpu = tree.cpu_s()
            row["probe_0"] = probed(args.probe_s)
            row["cpu_per_request"] = (tree.cpu_s() - cpu) / max(1, len(row["probe_0"]["latencies"]))
            holder_end.send(("open", (jobs, args.open_concurrency, args.open_timeout_s)))
            row["open"] = _recv(holder_end, args.open_timeout_s + 60)
            time.sleep(1.0)  # every stream past its history, blocked in XREAD
            row["held"] = tree.sample()
            row["probe_idle"] = probed(args.idle_s)
            probe_end.send(("probe", (args.events * args.period_s, args.probe_rate)))
            cpu, machine = tree.cpu_s(), cpu_by_process(others)
            started = time.perf_counter()
            row["publish_rate"] = publish(client, [j for j, _ in jobs], args.events, args.period_s)
            time.sleep(0.5)  # the last events reach their clients
            row["publish_cpu_s"] = tree.cpu_s() - cpu
            elapsed = time.perf_counter() - started
            after = cpu_by_process(others)
            row["cores"] = {"API": row["publish_cpu_s"] / elapsed} | {
                name: (after[name] - machine[name]) / elapsed for name in after
            }
            row["probe_busy"] = _recv(probe_end, args.events * args.period_s + 120)
            for job_id, _ in jobs:
                progress.publish_job_event(client, job_id, "canceled", held=1000, spent=0)
            holder_end.send(("collect", (60.0,)))
            row["collected"] = _recv(holder_end, 120)
            time.sleep(1.0)  # the server notices the ends
            row["after"] = tree.sample()
        finally:
            for end in (holder_end, probe_end):
                with suppress(OSError):
                    end.send(("stop", ()))
            for process in (holder, prober):
                process.join(timeout=30)
                if process.is_alive():
                    process.kill()
            row["slots_left"] = cleanup(client, job_ids, user_ids)
            client.close()
    row["expected"] = streams * args.events
    row["server_endings"] = server_endings(tmp / f"api-{port}.log")
    return row


# What the API logs when it ends a stream early (api/streams/server.py, leases.py).
ENDINGS = {
    "stalled client dropped": "its client stopped reading",
    "ended early": "event stream ended early",
    "slot not refreshed": "stream slot not refreshed",
    "lease lost": "stream lease lost",
}


def server_endings(log: Path) -> dict[str, Any]:
    """How many streams the API ended early, by reason, from its log (gone with the level's directory)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    counts: dict[str, Any] = {name: text.count(marker) for name, marker in ENDINGS.items()}
    early = [line for line in text.splitlines() if ENDINGS["ended early"] in line]
    counts["first"] = early[0][-200:] if early else None
    return counts


def _recv(conn: Any, timeout_s: float) -> Any:
    if not conn.poll(timeout_s):
        raise TimeoutError(f"a load process gave no answer in {timeout_s:.0f} s")
    return conn.recv()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--levels", default="100,1000,2000", help="open streams per level")
    parser.add_argument("--events", type=int, default=10, help="events published to every stream")
    parser.add_argument("--period-s", type=float, default=1.0, help="each stream gets one event per period")
    parser.add_argument("--streams-per-user", type=int, default=16, help="SSE_MAX_STREAMS_PER_USER's default")
    parser.add_argument("--probe-rate", type=float, default=20.0, help="ordinary requests/s, all probe users")
    parser.add_argument("--probe-s", type=float, default=10.0, help="ordinary requests with 0 streams")
    parser.add_argument(
        "--idle-s", type=float, default=0.0, help="with N quiet streams (0: a heartbeat + 3 s)"
    )
    parser.add_argument("--open-concurrency", type=int, default=64, help="stream handshakes in flight")
    parser.add_argument("--open-timeout-s", type=float, default=180.0)
    parser.add_argument("--default-workers-level", type=int, default=1000, help="also at API_WORKERS (0: no)")
    parser.add_argument("--workers", type=int, default=1, help="API processes of every level")
    parser.add_argument(
        "--private-redis",
        action="store_true",
        help="streams on a Redis of the bench's own, its maxclients above the levels (REDIS_URL's "
        "server keeps its own limit, 10000 by default, for every client together)",
    )
    add_json_argument(parser)
    args = parser.parse_args()
    base, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not base.startswith("postgres") or not redis_url:
        raise SystemExit("set DATABASE_URL (PostgreSQL) and REDIS_URL")
    nofile = stream_load.raise_open_files()  # inherited by the API and the load processes
    heartbeat_s = float(os.environ.get("SSE_HEARTBEAT_S") or 15.0)
    args.idle_s = args.idle_s or heartbeat_s + 3.0
    levels = [int(part) for part in args.levels.split(",")]
    plan = [(n, args.workers) for n in levels] + (
        [(args.default_workers_level, None)] if args.default_workers_level else []
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="cf-streams-") as tmp_name:
        tmp = Path(tmp_name)
        with (
            fresh_database("postgresql", tmp) as engine,
            private_broker(tmp) as broker_url,
            streams_redis(tmp, redis_url, max(levels) if args.private_redis else 0) as redis_url,
        ):
            env = child_env(
                DATABASE_URL=engine.url.render_as_string(hide_password=False),
                REDIS_URL=redis_url,
                BROKER_URL=broker_url,
                AUTH_JWT_SECRET=SECRET,
                VAR_DIR=str(tmp / "var"),
                CREDITFLOW_ENV="test",
                RATE_LIMITS_ENABLED="false",
            )
            for streams, workers in plan:
                print(f"level {streams} streams, {workers or 'API_WORKERS'} worker(s)...", flush=True)
                rows.append(run_level(args, env, tmp, streams, workers))
            maxclients = _maxclients(redis_url)
    report(rows, args, nofile=nofile, redis_maxclients=maxclients)
    results_of(rows).write(args.json)
    return 0


@contextmanager
def streams_redis(tmp: Path, redis_url: str, streams: int) -> Iterator[str]:
    """REDIS_URL, or (`streams` > 0) a private Redis whose maxclients leaves room for them and the rest."""
    if not streams:
        yield redis_url
        return
    server = PrivateRedis(tmp / "streams-redis", "--maxclients", str(streams * 2 + 1000)).start()
    try:
        yield server.url
    finally:
        server.stop()


@contextmanager
def private_broker(tmp: Path) -> Iterator[str]:
    """An embedded Redis as the jobs' broker: their sagas wait there, unserved, and leave with it."""
    try:
        yield embedded_redis_url(tmp / "broker")
    finally:
        stop_embedded_redis(tmp / "broker")


def _maxclients(redis_url: str) -> int | None:
    try:
        with redis.Redis.from_url(redis_url) as client:
            return int(client.config_get("maxclients")["maxclients"])
    except redis.RedisError:
        return None


if __name__ == "__main__":
    sys.exit(main())
