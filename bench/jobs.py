"""Job pipeline benchmark: bare Celery chain (floor) vs our full job, and SSE fan-out latency.

Run: DATABASE_URL=postgresql://... REDIS_URL=redis://... .venv/bin/python bench/jobs.py
It creates (and drops) a throw-away database, starts real workers and `creditflow api`.

(a) floor: a chain of two no-op tasks (interactive -> critical) on the same broker and worker pools;
(b) ours: POST /api/v1/diagnostics/jobs with zero-work `run` -> final SSE event;
(c) SSE fan-out: 200 concurrent streams, XADD (as the worker does it) -> client receipt.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import redis
import requests
from celery import Celery, chain

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import celeryconfig
from bench.profiling import spied
from bench.results import Results, add_json_argument
from orchestration.jobs import progress
from tests.support.databases import fresh_database
from tests.support.processes import ROOT, child_env, creditflow, free_port, stop, wait_http, worker
from tests.support.sse import frames

SECRET = "bench-jobs-secret-bench-jobs-secret-0123456789"  # noqa: S105 (a throw-away stack)
CPU_PER_JOB_GOAL_MS = 12.0  # half of the 23.7 ms a job cost on 2026-12-05 (issue #21)
STREAMS_PER_USER = 8  # under the per-user cap of open streams (SSE_MAX_STREAMS_PER_USER, 16 by default)


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of `values`, in the same unit."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def token(sub: str) -> str:
    now = int(time.time())
    return jwt.encode(
        {"iss": "creditflow", "sub": sub, "iat": now, "exp": now + 3600}, SECRET, algorithm="HS256"
    )


def _cpu(process: Any) -> float:
    try:
        times = process.cpu_times()
    except Exception:  # it ended meanwhile
        return 0.0
    return float(times.user + times.system)


def cpu_seconds(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each component's process tree, of the PostgreSQL and Redis servers, and ours."""
    import psutil

    totals: dict[str, float] = {}
    for name, pid in roots.items():
        root = psutil.Process(pid)
        totals[name] = sum(_cpu(proc) for proc in [root, *root.children(recursive=True)])
    for proc in psutil.process_iter(["name"]):
        server = proc.info["name"] or ""
        if server.startswith(("postgres", "redis-server")):
            key = "postgres" if server.startswith("postgres") else "redis"
            totals[key] = totals.get(key, 0.0) + _cpu(proc)
    totals["client"] = _cpu(psutil.Process())
    return totals


def cpu_per_item(before: dict[str, float], after: dict[str, float], items: int) -> dict[str, float]:
    """Milliseconds of CPU per chain or job, by component."""
    return {name: 1000 * (after[name] - before.get(name, 0.0)) / items for name in after}


@contextmanager
def stack(database_url: str, redis_url: str, tmp: Path, threads: int) -> Iterator[tuple[str, dict[str, int]]]:
    """Workers (critical; interactive) and the API, as production runs them.

    Yields the API URL and the root process of each component (for CPU accounting)."""
    env = child_env(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        AUTH_JWT_SECRET=SECRET,
        VAR_DIR=str(tmp / "var"),
        WORKER_EXTRA_TASK_MODULES="bench.tasks",
        CREDITFLOW_ENV="test",
        RATE_LIMITS_ENABLED="false",
        API_THREADS=str(threads),
        API_WORKERS="2",
    )
    port = free_port()
    with ExitStack() as stack_:
        critical = stack_.enter_context(
            worker("critical", env=env, cwd=ROOT, log=tmp / "critical.log", name="crit", concurrency=2)
        )
        interactive = stack_.enter_context(
            worker("interactive", env=env, cwd=ROOT, log=tmp / "inter.log", name="inter", concurrency=2)
        )
        api = creditflow("api", "--port", str(port), env=env, cwd=ROOT, log=tmp / "api.log")
        try:
            wait_http(f"http://127.0.0.1:{port}/readyz", process=api, log=tmp / "api.log")
            roots = {"api": api.pid, "critical": critical.pid, "interactive": interactive.pid}
            yield f"http://127.0.0.1:{port}", roots
        finally:
            stop(api)


def _floor_chain(redis_url: str) -> tuple[Celery, Any]:
    app = Celery("bench-floor")
    app.config_from_object(celeryconfig)
    app.conf.update(broker_url=redis_url, result_backend=redis_url)
    canvas = chain(
        app.signature("creditflow.interactive.noop", immutable=True),
        app.signature("creditflow.critical.noop_last", immutable=True),
    )
    return app, canvas


def floor(redis_url: str, runs: int, burst: int, roots: dict[str, int]) -> dict[str, Any]:
    """Bare Celery: latency of one two-step chain, and chains/s when `burst` are in flight."""
    app, canvas = _floor_chain(redis_url)
    canvas.apply_async().get(timeout=30)  # warm up
    latencies = []
    for _ in range(runs):
        started = time.perf_counter()
        canvas.apply_async().get(timeout=30)
        latencies.append(time.perf_counter() - started)
    cpu = cpu_seconds(roots)
    started = time.perf_counter()
    results = [canvas.apply_async() for _ in range(burst)]
    for result in results:
        result.get(timeout=120)
    elapsed = time.perf_counter() - started
    app.close()
    return {
        "p50": pct(latencies, 0.5),
        "p95": pct(latencies, 0.95),
        "samples_ms": [x * 1000 for x in latencies],
        "per_s": burst / elapsed,
        "cpu_ms": cpu_per_item(cpu, cpu_seconds(roots), burst),
    }


_connections = threading.local()
_FINAL_MARKS = {f"\nevent: {kind}\n".encode(): kind for kind in progress.FINAL_TYPES}


def _connection(api: str) -> http.client.HTTPConnection:
    # One keep-alive connection per client thread, as browsers and SDKs hold one. http.client, not
    # requests: the load generator shares the two cores with the server, so it should cost little.
    if not hasattr(_connections, "conn"):
        address = urlsplit(api)
        _connections.conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=60)
    return _connections.conn  # type: ignore[no-any-return]


def _final_event(stream: bytes) -> str | None:
    for mark, kind in _FINAL_MARKS.items():
        if mark in stream:
            return kind
    return None


def paced_floor(redis_url: str, per_s: float, seconds: float, roots: dict[str, int]) -> dict[str, float]:
    """The floor's chain sent at `per_s` (our jobs' rate): CPU per chain by component at that rate.

    Celery's per-task cost falls as its rate rises (event flushes and loop wakeups get shared), so
    this separates what our steps add from what the pools cost at our pace."""
    app, canvas = _floor_chain(redis_url)
    count = int(per_s * seconds)
    cpu = cpu_seconds(roots)
    started, results = time.perf_counter(), []
    for index in range(count):
        results.append(canvas.apply_async())
        time.sleep(max(0.0, started + (index + 1) / per_s - time.perf_counter()))
    for result in results:
        result.get(timeout=120)
    figures = cpu_per_item(cpu, cpu_seconds(roots), count)
    app.close()
    return figures


GOAL_SHARE = 0.40  # the throughput goal, as a share of the floor's


def budget_line(floor_per_s: float, celery_at_goal_ms: float, ours_beyond_celery_ms: float) -> str:
    """What the throughput goal leaves for everything that is not Celery, against what that takes now.

    The machine's cores divided by the goal rate is the CPU a job may cost; the bare chain paced at
    the goal rate is what Celery alone costs there (its per-task cost depends on the rate)."""
    import psutil

    cores = psutil.cpu_count() or 1
    goal = GOAL_SHARE * floor_per_s
    budget = 1000 * cores / goal
    return (
        f"    the goal, {goal:.0f} jobs/s, allows {budget:.1f} ms of CPU per job on {cores} cores; Celery "
        f"alone takes {celery_at_goal_ms:.1f} ms at that rate, leaving {budget - celery_at_goal_ms:.1f} ms "
        f"for HTTP, database and events, which take {ours_beyond_celery_ms:.1f} ms now"
    )


def _read_to_final(events: http.client.HTTPResponse, started: float) -> float:
    """Read an event stream to its end (the connection is then reused); seconds to its final event."""
    stream, taken, final = b"", None, None
    while chunk := events.read1(65536):
        stream += chunk
        if final is None and (final := _final_event(stream)) is not None:
            taken = time.perf_counter() - started
    if final != "result" or taken is None:
        raise RuntimeError(f"job ended {final}: {stream[-500:]!r}")
    return taken


def one_job(api: str, bearer: str, *, one_request: bool = False) -> tuple[float, float]:
    """POST a zero-work job and follow its SSE stream to the final event; seconds to the final event
    and to the POST's answer. `one_request`: the POST answers the stream (Accept: text/event-stream)."""
    headers = {"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"}
    if one_request:
        headers["Accept"] = "text/event-stream"
    started = time.perf_counter()
    try:
        conn = _connection(api)
        conn.request("POST", "/api/v1/diagnostics/jobs", body=b'{"steps": 0}', headers=headers)
        answer = conn.getresponse()
    except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
        # The server closed this thread's idle keep-alive connection (the other mode ran meanwhile).
        conn.close()
        del _connections.conn
        conn = _connection(api)
        started = time.perf_counter()
        conn.request("POST", "/api/v1/diagnostics/jobs", body=b'{"steps": 0}', headers=headers)
        answer = conn.getresponse()
    posted = time.perf_counter() - started
    if one_request:
        if answer.status != 200:
            raise RuntimeError(f"POST answered {answer.status}: {answer.read()[:300]!r}")
        return _read_to_final(answer, started), posted
    body = answer.read()
    if answer.status != 202:
        raise RuntimeError(f"POST answered {answer.status}: {body[:300]!r}")
    del headers["Content-Type"]
    conn.request("GET", json.loads(body)["events_url"], headers=headers)
    events = conn.getresponse()
    if events.status != 200:
        raise RuntimeError(f"GET events answered {events.status}: {events.read()[:300]!r}")
    return _read_to_final(events, started), posted


def ours(
    api: str, runs: int, burst: int, clients: int, roots: dict[str, int], *, profile: Path | None = None,
    one_request: bool = False,
) -> dict[str, Any]:
    """Our full job: latency one at a time, then jobs/s with `clients` concurrent clients."""
    bearers = [token(f"bench-{uuid.uuid4().hex}") for _ in range(clients)]

    def job(index: int) -> tuple[float, float]:
        return one_job(api, bearers[index % clients], one_request=one_request)

    job(0)
    latencies, posts = zip(*(job(0) for _ in range(runs)), strict=True)
    with ThreadPoolExecutor(clients) as pool:
        # warm up at full concurrency first (server threads, pooled connections): steady state is measured
        list(pool.map(job, range(4 * clients)))
        cpu = cpu_seconds(roots)
        started = time.perf_counter()
        with spied(roots, profile):
            list(pool.map(job, range(burst)))
    elapsed = time.perf_counter() - started
    return {
        "p50": pct(list(latencies), 0.5),
        "p95": pct(list(latencies), 0.95),
        "samples_ms": [x * 1000 for x in latencies],
        "post_p50": pct(list(posts), 0.5),
        "per_s": burst / elapsed,
        "cpu_ms": cpu_per_item(cpu, cpu_seconds(roots), burst),
    }


def fanout(api: str, redis_url: str, streams: int, events: int) -> dict[str, float]:
    """`streams` concurrent SSE clients, each on its own job; XADD -> receipt latency."""
    # Spread over users: one user may hold only SSE_MAX_STREAMS_PER_USER open streams.
    bearers = [token(f"fanout-{uuid.uuid4().hex}") for _ in range(-(-streams // STREAMS_PER_USER))]
    job_ids: list[tuple[str, dict[str, str]]] = []
    for index in range(streams):  # queued on `images`, which no worker serves here: only we write to them
        headers = {"Authorization": f"Bearer {bearers[index // STREAMS_PER_USER]}"}
        body = {"steps": 1, "queue": "images", "cost_per_step": "0.001"}
        answer = requests.post(f"{api}/api/v1/diagnostics/jobs", json=body, headers=headers, timeout=30)
        answer.raise_for_status()
        job_ids.append((answer.json()["job_id"], headers))
    latencies: list[float] = []
    lock = threading.Lock()
    ready = threading.Barrier(streams + 1)

    errors: list[str] = []

    def follow(job_id: str, headers: dict[str, str]) -> None:
        try:
            _follow(job_id, headers)
        except Exception as exc:  # reported in the figures, not swallowed
            errors.append(f"{type(exc).__name__}: {exc}")

    def _follow(job_id: str, headers: dict[str, str]) -> None:
        with requests.get(
            f"{api}/api/v1/jobs/{job_id}/events", headers=headers, stream=True, timeout=120
        ) as response:
            ready.wait()
            for frame in frames(response):
                if frame.event == "progress" and "sent_ns" in frame.data:
                    delay = (time.time_ns() - frame.data["sent_ns"]) / 1e9
                    with lock:
                        latencies.append(delay)
                elif frame.event in progress.FINAL_TYPES:
                    return

    threads = [threading.Thread(target=follow, args=job) for job in job_ids]
    for thread in threads:
        thread.start()
    ready.wait()
    time.sleep(1.0)  # every stream is past its history and blocked in XREAD
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    for step in range(events):
        for job_id, _ in job_ids:
            progress.publish_job_event(
                client,
                job_id,
                "progress",
                held=1000,
                spent=0,
                stage="bench",
                step=step,
                total=events,
                sent_ns=time.time_ns(),
            )
        time.sleep(0.05)
    for job_id, _ in job_ids:
        progress.publish_job_event(client, job_id, "canceled", held=1000, spent=0)
    for thread in threads:
        thread.join(timeout=60)
    expected = streams * events
    if errors:
        print(f"fan-out client errors: {len(errors)}; first: {errors[0]}", file=sys.stderr)
    return {
        "p50": pct(latencies, 0.5),
        "p99": pct(latencies, 0.99),
        "max": max(latencies),
        "samples_ms": [x * 1000 for x in latencies],
        "received": len(latencies),
        "expected": expected,
        "errors": len(errors),
    }


def main() -> int:
    """Run (a), (b), (c) and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=60, help="sequential runs for latency")
    parser.add_argument("--burst", type=int, default=300, help="jobs for throughput")
    # The floor has its whole burst in flight; ours levels off from about 48 clients (16 gave 5% less).
    parser.add_argument("--clients", type=int, default=48)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--profile", type=Path, help="py-spy every process during (b)'s burst into DIR")
    add_json_argument(parser)
    args = parser.parse_args()
    base, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not base.startswith("postgres") or not redis_url:
        raise SystemExit("set DATABASE_URL (PostgreSQL) and REDIS_URL")
    tmp = Path(tempfile.mkdtemp(prefix="cf-bench-"))
    with fresh_database("postgresql", tmp, pool_size=20) as engine:
        url = engine.url.render_as_string(hide_password=False)
        with stack(url, redis_url, tmp, threads=max(128, args.streams)) as (api, roots):
            a = floor(redis_url, args.runs, args.burst, roots)
            b = ours(api, args.runs, args.burst, args.clients, roots, profile=args.profile)
            b1 = ours(api, args.runs, args.burst, args.clients, roots, one_request=True,
                      profile=args.profile and args.profile / "one-request")
            paced = paced_floor(redis_url, b["per_s"], 5.0, roots)
            at_goal = paced_floor(redis_url, GOAL_SHARE * a["per_s"], 5.0, roots)
            c = fanout(api, redis_url, args.streams, args.events)
    results = Results("jobs")
    results.latency_ms = {
        "bare Celery chain": a.pop("samples_ms"),
        "job POST -> final SSE": b.pop("samples_ms"),
        "job POST answering its stream": b1.pop("samples_ms"),
        "SSE fan-out XADD -> client": c.pop("samples_ms"),
    }
    results.add("job p50", b["p50"] * 1000, "ms", floor=a["p50"] * 1000, floor_name="bare Celery chain p50",
                goal_ratio=3.0, higher_is_better=False)
    results.add("job p50, one request", b1["p50"] * 1000, "ms", floor=a["p50"] * 1000,
                floor_name="bare Celery chain p50", goal_ratio=3.0, higher_is_better=False)
    results.add("jobs/s", b["per_s"], "jobs/s", floor=a["per_s"], floor_name="bare chains/s", goal_ratio=0.40)
    results.add(f"SSE fan-out p99 ({args.streams} streams)", c["p99"] * 1000, "ms", goal_value=50,
                higher_is_better=False)
    results.write(args.json)
    report = {"floor": a, "ours": b, "ours_one_request": b1, "floor_paced": paced, "floor_at_goal": at_goal,
              "fanout": c}
    print(json.dumps(report, indent=1))
    print(
        f"(a) floor  bare Celery chain of 2 no-ops: p50 {a['p50'] * 1000:7.1f} ms  "
        f"p95 {a['p95'] * 1000:7.1f} ms  "
        f"{a['per_s']:7.1f} chains/s"
    )
    print(
        f"(b) ours   POST -> final SSE event:        p50 {b['p50'] * 1000:7.1f} ms  "
        f"p95 {b['p95'] * 1000:7.1f} ms  "
        f"{b['per_s']:7.1f} jobs/s"
    )
    print(
        f"(b1) ours  POST answering its stream:     p50 {b1['p50'] * 1000:7.1f} ms  "
        f"p95 {b1['p95'] * 1000:7.1f} ms  "
        f"{b1['per_s']:7.1f} jobs/s"
    )
    print(
        f"    ratios: p50 {b['p50'] / a['p50']:.2f}x the floor (goal <= 3x); throughput "
        f"{100 * b['per_s'] / a['per_s']:.0f}% of the floor (goal >= 40%)"
    )
    print(
        f"    the p50 goal is {3 * a['p50'] * 1000:.1f} ms; the POST alone (hold + job row + enqueue) "
        f"answers in p50 {b['post_p50'] * 1000:.1f} ms, before the job's two Celery hops"
    )
    print("    CPU per chain / job at saturation (ms), by component:")
    rows = (("floor", a["cpu_ms"]), ("ours", b["cpu_ms"]), ("ours, 1 request", b1["cpu_ms"]),
            (f"floor at {b['per_s']:.0f}/s", paced))
    for label, figures in rows:
        parts = "  ".join(f"{name} {ms:.1f}" for name, ms in sorted(figures.items()))
        print(f"      {label:14} total {sum(figures.values()):5.1f}:  {parts}")
    print(budget_line(a["per_s"], sum(at_goal.values()), sum(b["cpu_ms"].values()) - sum(paced.values())))
    # The job path's CPU budget (issue #21): every process of the stack but the bench's own client.
    for label, figures in (("two requests", b["cpu_ms"]), ("one request", b1["cpu_ms"])):
        per_job = sum(ms for name, ms in figures.items() if name != "client")
        verdict = "met" if per_job <= CPU_PER_JOB_GOAL_MS else "NOT met"
        print(
            f"    CPU per job, {label} (API, workers, PostgreSQL, Redis): {per_job:.1f} ms "
            f"(goal <= {CPU_PER_JOB_GOAL_MS} ms): {verdict}"
        )
    print(
        f"(c) SSE fan-out {args.streams} streams: XADD -> client p50 {c['p50'] * 1000:.1f} ms  p99 "
        f"{c['p99'] * 1000:.1f} ms (goal < 50 ms)  max {c['max'] * 1000:.1f} ms  received "
        f"{c['received']}/{c['expected']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
