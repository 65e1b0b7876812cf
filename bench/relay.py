"""Relay benchmark: first-token latency and delivered tokens/s of streamed chat replies, many users.

Run: DATABASE_URL=postgresql://... REDIS_URL=redis://... .venv/bin/python bench/relay.py
     [--tokens 64 --interval-ms 10 --levels 1,16,64,128 --seconds 6
      --modes direct,litellm,creditflow,onerequest]

One local OpenAI-compatible upstream (tests/support/paced_upstream.py) streams `--tokens` tokens
`--interval-ms` apart, usage in the last chunk. The same asyncio client (tests/support/stream_client.py)
drives, at each concurrency level, `level` users who each stream one reply after another for
`--seconds`:
  (a) direct      the upstream itself;
  (b) litellm     LiteLLM proxy (`litellm[proxy]` in its own virtualenv under var/bench, made on first
                  use) pointed at the same upstream, on 127.0.0.1;
  (c) creditflow  the stack `creditflow dev` runs (API, critical/maintenance prefork pool, the I/O
                  threads pool) on PostgreSQL and Redis; each stream a different user with their own
                  conversation: POST the message, then follow its SSE events;
  (d) openai      creditflow's OpenAI-compatible endpoint with the same streaming request as (a);
  (f) onerequest  as (c) in one request: the POST sent with `Accept: text/event-stream` answers the
                  job's events itself (the web UI's way; issue #25's goal: first-token overhead at 1 user
                  at or below LiteLLM's, and no worse at 64);
  (e) langchain   as (c), on a `provider: langchain` catalog entry: `langchain_openai.ChatOpenAI` pointed at
                  the same upstream (what the LangChain path costs per token against the direct one).
First token: from sending the (first) request to the first token's text. Delivered tokens/s: all
tokens every user received over the run's wall time. CPU per token: the servers' processes
(creditflow: API, workers, PostgreSQL, Redis; LiteLLM: its processes). Goals (same run): first-token
overhead over direct p50 <= 10 ms at 1 user and <= 50 ms at 64; tokens/s >= 90% of direct at 64 with
no errors; ahead of LiteLLM at every level.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.results import Results, add_json_argument  # noqa: E402
from tests.support import stream_client as http  # noqa: E402
from tests.support.databases import fresh_database  # noqa: E402
from tests.support.processes import child_env, creditflow, free_port, stop, wait_http  # noqa: E402

SECRET = "bench-relay-secret-0123456789-0123456789"  # noqa: S105 (a throw-away test secret)
LITELLM_VENV = ROOT / "var" / "bench" / "litellm-venv"
LITELLM_KEY = "sk-bench-relay-0123456789abcdef"  # the proxy refuses to start without a master key
FINAL_EVENTS = ("result", "failed", "canceled")


@dataclass
class Stream:
    """What one streamed reply measured."""

    started: float
    first: float | None = None
    ended: float | None = None
    tokens: int = 0
    error: str | None = None


@dataclass
class Level:
    """One concurrency level of one mode."""

    mode: str
    users: int
    streams: list[Stream] = field(default_factory=list)
    seconds: float = 0.0
    cpu_s: float = 0.0

    @property
    def ok(self) -> list[Stream]:
        return [s for s in self.streams if s.error is None and s.first is not None]

    def first_ms(self, quantile: float) -> float:
        values = sorted((s.first - s.started) * 1000 for s in self.ok if s.first)
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(quantile * len(values)))]

    @property
    def tokens_per_s(self) -> float:
        return sum(s.tokens for s in self.streams) / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return sum(s.error is not None for s in self.streams)


# --- the modes: each streams one reply for user `n` and records it ---------------------------------


def chat_body(tokens: int) -> dict[str, Any]:
    return {
        "model": "paced",
        "messages": [{"role": "user", "content": "Tell me something."}],
        "stream": True,
        "max_tokens": tokens,
        "stream_options": {"include_usage": True},
    }


async def openai_stream(
    port: int, path: str, body: dict[str, Any], headers: dict[str, str], out: Stream
) -> None:
    """An OpenAI chat-completions stream: count `tok` in the content deltas until [DONE]."""
    response = await http.request(port, "POST", path, body=body, headers=headers)
    try:
        if response.status != 200:
            out.error = f"HTTP {response.status}: {(await response.body())[:200]!r}"
            return
        async for frame in response.frames():
            if frame.data == "[DONE]":
                break
            for choice in json.loads(frame.data).get("choices") or []:
                text = (choice.get("delta") or {}).get("content") or ""
                if text:
                    out.first = out.first or time.perf_counter()
                    out.tokens += text.count("tok")
    finally:
        response.close()


async def creditflow_stream(
    port: int, user: dict[str, str], tokens: int, out: Stream, *, one_request: bool = False
) -> None:
    """POST a message to the user's conversation, then follow the job's events to the final one
    (`one_request`: the POST answers them itself)."""
    headers = {"Authorization": f"Bearer {user['token']}"}
    if one_request:
        headers["Accept"] = "text/event-stream"
    path = f"/api/v1/chat/conversations/{user['conversation']}/messages"
    posted = await http.request(
        port, "POST", path, body={"content": "Tell me something.", "max_tokens": tokens}, headers=headers
    )
    if one_request:
        events = posted
    else:
        accepted = await posted.json()
        posted.close()
        if posted.status != 202:
            out.error = f"POST {posted.status}: {str(accepted)[:200]}"
            return
        events = await http.request(port, "GET", accepted["events_url"], headers=headers)
    try:
        if events.status != 200:
            out.error = f"events {events.status}: {(await events.body())[:200]!r}"
            return
        async for frame in events.frames():
            if frame.event == "token":
                out.first = out.first or time.perf_counter()
                out.tokens += json.loads(frame.data)["text"].count("tok")
            elif frame.event in FINAL_EVENTS:
                if frame.event != "result":
                    out.error = f"job ended {frame.event}"
                return
        out.error = "the stream ended before the job's final event"
    finally:
        events.close()


async def run_level(
    mode: str, users: int, seconds: float, one: Callable[[int, Stream], Awaitable[None]]
) -> Level:
    """`users` users streaming one reply after another until `seconds` passed (at least one each)."""
    level = Level(mode, users)
    deadline = time.perf_counter() + seconds

    async def user(n: int) -> None:
        while True:
            stream = Stream(time.perf_counter())
            try:
                await asyncio.wait_for(one(n, stream), timeout=60)
            except Exception as exc:  # a refused connection, a timeout: counted, never fatal
                stream.error = f"{type(exc).__name__}: {exc}"[:200]
            stream.ended = time.perf_counter()
            level.streams.append(stream)
            if stream.ended >= deadline or len(level.streams) > 100_000:
                return

    started = time.perf_counter()
    await asyncio.gather(*(user(n) for n in range(users)))
    level.seconds = time.perf_counter() - started
    return level


# --- servers ------------------------------------------------------------------------------------


def cpu_of(processes: list[psutil.Process]) -> float:
    """User + system CPU seconds of these processes and their children (those still alive)."""
    total = 0.0
    for process in processes:
        try:
            for member in [process, *process.children(recursive=True)]:
                times = member.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def services_by_name(*names: str) -> list[psutil.Process]:
    """Processes of the machine's PostgreSQL and Redis servers (their CPU is part of creditflow's)."""
    found = []
    for process in psutil.process_iter(["name"]):
        if process.info["name"] and any(process.info["name"].startswith(name) for name in names):
            found.append(process)
    return found


@contextmanager
def upstream(tokens: int, interval_ms: float, logs: Path) -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.paced_upstream",
            "--port",
            str(port),
            "--tokens",
            str(tokens),
            "--interval-ms",
            str(interval_ms),
        ],
        cwd=ROOT,
        env=child_env(),
        stdout=(logs / "upstream.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models", process=process, timeout=30)
        yield port
    finally:
        stop(process)


def ensure_litellm() -> Path:
    """LiteLLM proxy in its own virtualenv (made once: it brings its own dependency pins)."""
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        print("installing litellm[proxy] into var/bench/litellm-venv (once)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"], check=True)
    return binary


@contextmanager
def litellm(upstream_port: int, logs: Path) -> Iterator[tuple[int, list[psutil.Process]]]:
    binary = ensure_litellm()
    config = logs / "litellm.yaml"
    config.write_text(
        json.dumps(
            {
                "model_list": [
                    {
                        "model_name": "paced",
                        "litellm_params": {
                            "model": "openai/paced",
                            "api_base": f"http://127.0.0.1:{upstream_port}/v1",
                            "api_key": "bench",
                        },
                    }
                ]
            }
        )
    )
    port = free_port()
    # Its own environment: creditflow's packages (PYTHONPATH) must not shadow the proxy's imports, and
    # our DATABASE_URL / REDIS_URL would make it want a database and a cache (it runs without both).
    skipped = ("PYTHON", "PYTEST", "DATABASE_URL", "REDIS_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skipped)}
    env.update(LITELLM_LOG="ERROR", LITELLM_MASTER_KEY=LITELLM_KEY)
    process = subprocess.Popen(
        [
            str(binary),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        env=env,
        stdout=(logs / "litellm.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        ready = f"http://127.0.0.1:{port}/health/liveliness"
        wait_http(ready, process=process, log=logs / "litellm.log", timeout=180)
        yield port, [psutil.Process(process.pid)]
    finally:
        stop(process)


LANGCHAIN_MODEL = "lc-paced"


def bench_catalog(upstream_port: int, logs: Path) -> Path:
    """The catalog with one LangChain entry: ChatOpenAI on the same upstream as the direct `openai` path."""
    import yaml

    document = yaml.safe_load((ROOT / "assistant" / "catalog.yaml").read_text())
    direct = next(entry for entry in document["models"] if entry["id"] == "gpt-4o-mini")
    kwargs = {
        "model": "paced",
        "base_url": f"http://127.0.0.1:{upstream_port}/v1",
        "max_retries": 0,
        "stream_usage": True,
    }
    secrets = {"api_key": "OPENAI_API_KEY"}
    options = {"class": "langchain_openai.ChatOpenAI", "kwargs": kwargs, "secrets": secrets}
    document["models"].append({**direct, "id": LANGCHAIN_MODEL, "provider": "langchain", "options": options})
    path = logs / "catalog.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@contextmanager
def creditflow_stack(upstream_port: int, logs: Path) -> Iterator[tuple[int, list[psutil.Process]]]:
    """API and the worker pools `creditflow dev` runs, on a throw-away PostgreSQL database."""
    with fresh_database("postgresql", logs) as engine:
        env = child_env(
            DATABASE_URL=engine.url.render_as_string(hide_password=False),
            REDIS_URL=os.environ["REDIS_URL"],
            AUTH_JWT_SECRET=SECRET,
            VAR_DIR=str(logs / "var"),
            CREDITFLOW_ENV="test",
            OPENAI_BASE_URL=f"http://127.0.0.1:{upstream_port}/v1",
            OPENAI_API_KEY="bench",
            ASSISTANT_CATALOG=str(bench_catalog(upstream_port, logs)),
            RATE_LIMIT_USER="1000000/minute",
            RATE_LIMIT_JOBS="1000000/minute",
            RATE_LIMIT_IP="1000000/minute",
            METRICS_ENABLED="false",
        )
        port = free_port()
        processes = [
            creditflow("api", "--port", str(port), env=env, cwd=ROOT, log=logs / "api.log"),
            creditflow(
                "worker",
                "--queues",
                "critical,maintenance",
                "-n",
                "crit@%h",
                env=env,
                cwd=ROOT,
                log=logs / "critical.log",
            ),
            creditflow(
                "worker",
                "--queues",
                "interactive,agents,images",
                "-n",
                "io@%h",
                env=env,
                cwd=ROOT,
                log=logs / "io.log",
            ),
        ]
        try:
            wait_http(f"http://127.0.0.1:{port}/readyz", process=processes[0], timeout=90)
            yield port, [psutil.Process(p.pid) for p in processes]
        finally:
            for process in processes:
                stop(process)


def token_for(sub: str) -> str:
    import jwt

    now = int(time.time())
    return jwt.encode(
        {"iss": "creditflow", "sub": sub, "iat": now, "exp": now + 3600}, SECRET, algorithm="HS256"
    )


async def make_users(port: int, count: int, model: str = "gpt-4o-mini") -> list[dict[str, str]]:
    """Users with a conversation on the remote model each (the first request creates the user)."""

    async def one(_n: int) -> dict[str, str]:
        token = token_for(f"relay-{uuid.uuid4().hex}")
        answer = await http.request(
            port,
            "POST",
            "/api/v1/chat/conversations",
            body={"model": model},
            headers={"Authorization": f"Bearer {token}"},
        )
        body = await answer.json()
        answer.close()
        assert answer.status == 201, body
        return {"token": token, "conversation": body["id"]}

    users = []
    for start in range(0, count, 16):
        users += await asyncio.gather(*(one(n) for n in range(start, min(count, start + 16))))
    return users


# --- the run ------------------------------------------------------------------------------------


def measure(
    mode: str,
    levels: list[int],
    seconds: float,
    one: Callable[[int, Stream], Awaitable[None]],
    servers: list[psutil.Process],
) -> list[Level]:
    results = []
    asyncio.run(run_level(mode, min(levels), 1.0, one))  # warm-up: connections, caches, first users
    for users in levels:
        before = cpu_of(servers)
        level = asyncio.run(run_level(mode, users, seconds, one))
        level.cpu_s = cpu_of(servers) - before
        results.append(level)
        print(
            f"  {mode:10} {users:4} users: first token p50 {level.first_ms(0.5):7.1f} ms  "
            f"{level.tokens_per_s:8.0f} tokens/s  errors {level.errors}",
            flush=True,
        )
    return results


def report(results: dict[str, list[Level]]) -> None:
    direct = {level.users: level for level in results.get("direct", [])}
    litellm_ = {level.users: level for level in results.get("litellm", [])}
    print(
        "\nmode        users  first p50   p95    (over direct p50)   tokens/s  (vs direct)"
        "  CPU us/token  errors"
    )
    for mode, levels in results.items():
        for level in levels:
            base = direct.get(level.users)
            over = level.first_ms(0.5) - base.first_ms(0.5) if base else float("nan")
            ratio = level.tokens_per_s / base.tokens_per_s if base and base.tokens_per_s else float("nan")
            tokens = sum(s.tokens for s in level.streams)
            cpu = level.cpu_s / tokens * 1e6 if tokens and mode != "direct" else float("nan")
            print(
                f"{mode:10} {level.users:6} {level.first_ms(0.5):8.1f} {level.first_ms(0.95):7.1f} ms "
                f"{over:+10.1f} ms {level.tokens_per_s:14.0f} {ratio:9.0%} {cpu:13.0f} {level.errors:7}"
            )
    for mode in ("creditflow", "onerequest"):
        if mode in results and direct:
            goals(mode, {level.users: level for level in results[mode]}, direct, litellm_)
    if "onerequest" in results and "creditflow" in results:
        one_request_goal(results, direct, litellm_)


def goals(mode: str, ours: dict[int, Level], direct: dict[int, Level], litellm_: dict[int, Level]) -> None:
    """Issue #21's goals for one of our modes, against the upstream and LiteLLM measured in this run."""
    print(f"\ngoals ({mode}):")
    for users, limit in ((1, 10.0), (64, 50.0)):
        if users in ours and users in direct:
            over = ours[users].first_ms(0.5) - direct[users].first_ms(0.5)
            print(
                f"  first-token overhead at {users}: {over:+.1f} ms (goal <= {limit:.0f} ms): "
                f"{'met' if over <= limit else 'NOT met'}"
            )
    if 64 in ours and 64 in direct:
        ratio = ours[64].tokens_per_s / direct[64].tokens_per_s
        print(
            f"  tokens/s at 64: {ratio:.0%} of direct, {ours[64].errors} errors (goal >= 90%, 0): "
            f"{'met' if ratio >= 0.9 and not ours[64].errors else 'NOT met'}"
        )
    if litellm_:
        ahead = all(
            ours[u].tokens_per_s > litellm_[u].tokens_per_s
            and ours[u].first_ms(0.5) < litellm_[u].first_ms(0.5)
            for u in ours
            if u in litellm_
        )
        print(
            "  ahead of LiteLLM (tokens/s and first-token p50) at every level: "
            f"{'met' if ahead else 'NOT met'}"
        )


def one_request_goal(
    results: dict[str, list[Level]], direct: dict[int, Level], litellm_: dict[int, Level]
) -> None:
    """Issue #25's goal: one request's first-token overhead at 1 user at or below LiteLLM's, and at 64
    no worse than the two-request path's."""
    one = {level.users: level for level in results["onerequest"]}
    two = {level.users: level for level in results["creditflow"]}
    if 1 in one and 1 in litellm_ and 1 in direct:
        ours, theirs = (m[1].first_ms(0.5) - direct[1].first_ms(0.5) for m in (one, litellm_))
        print(
            f"  one request at 1 user: {ours:+.1f} ms over direct, LiteLLM {theirs:+.1f} ms (goal: at or "
            f"below): {'met' if ours <= theirs else 'NOT met'}"
        )
    if 64 in one and 64 in two:
        mine, before = one[64].first_ms(0.5), two[64].first_ms(0.5)
        print(
            f"  one request at 64 users: first token p50 {mine:.1f} ms, two requests {before:.1f} ms "
            f"(goal: no worse): {'met' if mine <= before else 'NOT met'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--interval-ms", type=float, default=10.0)
    parser.add_argument("--levels", default="1,16,64,128")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--modes", default="direct,litellm,creditflow,onerequest")
    add_json_argument(parser)
    args = parser.parse_args()
    levels = [int(part) for part in args.levels.split(",")]
    modes = args.modes.split(",")
    body = chat_body(args.tokens)
    results: dict[str, list[Level]] = {}
    with tempfile.TemporaryDirectory(prefix="relay-") as tmp, ExitStack() as stack:
        logs = Path(tmp)
        up = stack.enter_context(upstream(args.tokens, args.interval_ms, logs))
        print(
            f"upstream: {args.tokens} tokens, {args.interval_ms} ms apart; "
            f"levels {levels}, {args.seconds} s each"
        )
        if "direct" in modes:
            results["direct"] = measure(
                "direct",
                levels,
                args.seconds,
                lambda _n, out: openai_stream(up, "/v1/chat/completions", body, {}, out),
                [],
            )
        if "litellm" in modes:
            with litellm(up, logs) as (port, servers):
                results["litellm"] = measure(
                    "litellm",
                    levels,
                    args.seconds,
                    lambda _n, out: openai_stream(
                        port, "/v1/chat/completions", body, {"Authorization": f"Bearer {LITELLM_KEY}"}, out
                    ),
                    servers,
                )
        if {"creditflow", "openai", "langchain", "onerequest"} & set(modes):
            with creditflow_stack(up, logs) as (port, stack_processes):
                users = asyncio.run(make_users(port, max(levels)))
                servers = [*stack_processes, *services_by_name("postgres", "redis-server")]
                if "creditflow" in modes:
                    results["creditflow"] = measure(
                        "creditflow",
                        levels,
                        args.seconds,
                        lambda n, out: creditflow_stream(port, users[n], args.tokens, out),
                        servers,
                    )
                if "onerequest" in modes:
                    results["onerequest"] = measure(
                        "onerequest",
                        levels,
                        args.seconds,
                        lambda n, out: creditflow_stream(port, users[n], args.tokens, out, one_request=True),
                        servers,
                    )
                if "openai" in modes:
                    results["openai"] = measure(
                        "openai",
                        levels,
                        args.seconds,
                        lambda n, out: openai_stream(
                            port,
                            "/openai/v1/chat/completions",
                            {**body, "model": "gpt-4o-mini"},
                            {"Authorization": f"Bearer {users[n]['token']}"},
                            out,
                        ),
                        servers,
                    )
                if "langchain" in modes:
                    chained = asyncio.run(make_users(port, max(levels), model=LANGCHAIN_MODEL))
                    results["langchain"] = measure(
                        "langchain",
                        levels,
                        args.seconds,
                        lambda n, out: creditflow_stream(port, chained[n], args.tokens, out),
                        servers,
                    )
    report(results)
    compare_langchain(results)
    machine_readable(results).write(args.json)


def machine_readable(results: dict[str, list[Level]]) -> Results:
    """The goals of `report` as figures, first-token samples per mode and tokens/s by concurrency."""
    out = Results("relay")
    for mode, levels in results.items():
        out.throughput[mode] = {level.users: level.tokens_per_s for level in levels}
        top = max(levels, key=lambda level: level.users)
        out.latency_ms[f"{mode} first token ({top.users} users)"] = [
            (s.first - s.started) * 1000 for s in top.ok if s.first
        ]
    direct = {level.users: level for level in results.get("direct", [])}
    for peer in ("creditflow", "onerequest", "litellm"):
        for users, limit in ((1, 10.0), (64, 50.0)):
            mine = {level.users: level for level in results.get(peer, [])}.get(users)
            if mine and users in direct:
                out.add(
                    f"{peer} first-token p50 at {users} users",
                    mine.first_ms(0.5),
                    "ms",
                    floor=direct[users].first_ms(0.5),
                    floor_name="upstream direct p50",
                    goal_value=direct[users].first_ms(0.5) + limit if peer != "litellm" else None,
                    higher_is_better=False,
                )
            if mine and users in direct and users == 64:
                out.add(
                    f"{peer} tokens/s at {users} users",
                    mine.tokens_per_s,
                    "tokens/s",
                    floor=direct[users].tokens_per_s,
                    floor_name="upstream direct",
                    goal_ratio=0.9 if peer != "litellm" else None,
                )
    ours = {level.users: level for level in results.get("creditflow", [])}
    for level in results.get("litellm", []):
        if level.users in ours:
            out.add(
                f"creditflow tokens/s at {level.users} users vs LiteLLM",
                ours[level.users].tokens_per_s,
                "tokens/s",
                floor=level.tokens_per_s,
                floor_name="LiteLLM proxy",
                goal_ratio=1.0,
            )
    if "litellm" not in results:
        out.notes.append("LiteLLM was not measured: creditflow is compared with the upstream only.")
    return out


def compare_langchain(results: dict[str, list[Level]]) -> None:
    """The LangChain path's CPU per token against the direct path's (both through the whole stack)."""
    if "langchain" not in results or "creditflow" not in results:
        return
    direct = {level.users: level for level in results["creditflow"]}
    print("\nlangchain (ChatOpenAI) against the direct path, CPU per delivered token:")
    for level in results["langchain"]:
        base = direct.get(level.users)
        if base is None:
            continue
        ours, theirs = sum(s.tokens for s in level.streams), sum(s.tokens for s in base.streams)
        if not (ours and theirs):
            continue
        chained, plain = level.cpu_s / ours * 1e6, base.cpu_s / theirs * 1e6
        print(f"  {level.users:4} users: {chained:6.0f} us vs {plain:6.0f} us ({chained / plain:.2f}x)")


if __name__ == "__main__":
    main()
