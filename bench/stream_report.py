"""The tables and verdict lines of bench/streams.py, from the figures of each level."""

from __future__ import annotations

import argparse
from typing import Any

from api.streams.server import MAX_STREAM_CONNECTIONS
from bench.results import Results

LATENCY_GOAL_S = 0.050  # XADD -> client p99 at 1,000 streams
THOUSANDS = 2000  # "thousands of streams per host": at least this many held, every event delivered
UNAFFECTED = 2.0  # ordinary requests' p99 with N streams open at most this times the p99 with none
HOST_STREAMS = 10_000  # issue #26: streams on one host (its API processes together), an event a second each
# Threads the API may add while streams are open, none of them per stream: asyncio's default executor
# (min(32, cores + 4) threads) runs each quiet stream's look at its job row.
POOLED_THREADS = 32


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of `values` (nan when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(values: list[float], q: float) -> str:
    return f"{1000 * pct(values, q):.1f}"


def _probe(figures: dict[str, Any]) -> str:
    latencies = figures["latencies"]
    return f"{_ms(latencies, 0.5):>5}/{_ms(latencies, 0.99):>6} ({figures['errors']})"


def served(row: dict[str, Any]) -> bool:
    """Every stream opened, got its history and every event, with no error."""
    collected = row["collected"]
    return (
        row["open"]["ready"] == row["streams"]
        and row["open"]["errors"] == 0
        and collected["errors"] == 0
        and len(collected["latencies"]) == row["expected"]
    )


def results_of(rows: list[dict[str, Any]]) -> Results:
    """The goals as figures (bench/results.py), the XADD -> client samples and the ordinary requests' p99."""
    out = Results("streams")
    for row in rows:
        n, where = row["streams"], f"{row['streams']} streams, {row['workers']} worker(s)"
        out.latency_ms[f"XADD -> client, {where}"] = [1000 * s for s in row["collected"]["latencies"]]
        out.add(
            f"XADD -> client p99, {where}",
            1000 * pct(row["collected"]["latencies"], 0.99),
            "ms",
            goal_value=1000 * LATENCY_GOAL_S,
            higher_is_better=False,
        )
        base = pct(row["probe_0"]["latencies"], 0.99)
        out.add(
            f"ordinary p99 with {n} quiet streams",
            1000 * pct(row["probe_idle"]["latencies"], 0.99),
            "ms",
            floor=1000 * base,
            floor_name="p99 with none open",
            goal_ratio=UNAFFECTED,
            higher_is_better=False,
        )
    return out


def report(
    rows: list[dict[str, Any]],
    args: argparse.Namespace,
    *,
    nofile: tuple[int, int],
    redis_maxclients: int | None,
) -> None:
    """Print the tables, the goals and the limits."""
    print(
        f"\n{args.events} events per stream, one per {args.period_s:g} s each; ordinary requests "
        f"{args.probe_rate:g}/s from 4 other users (0 streams: {args.probe_s:g} s; quiet: {args.idle_s:g} s)"
    )
    print(
        "\nworkers streams  ready/N   open s  RSS 0 -> N -> closed MB  KiB/stream  threads 0 -> N  fds 0 -> N"
        "     Redis conns N -> closed  slots left"
    )
    for row in rows:
        base, held, after, n = row["base"], row["held"], row["after"], row["streams"]
        per_stream = (held["rss"] - base["rss"]) / n / 1024
        print(
            f"{row['workers']:7} {n:7} {row['open']['ready']:5}/{n:<5} {row['open']['seconds']:6.1f}"
            f"  {base['rss'] / 2**20:6.0f} -> {held['rss'] / 2**20:4.0f} -> {after['rss'] / 2**20:4.0f}"
            f" {per_stream:10.1f}"
            f"  {base['threads']:5} -> {held['threads']:5}  {base['fds']:5} -> {held['fds']:5}"
            f"  {held['redis_conns']:10} -> {after['redis_conns']:5} {row['slots_left']:9}"
        )
    print(
        "\nworkers streams  XADD->client p50/p99/max ms   received/expected  published/s  "
        "API CPU us/event   balance p50/p99 ms (errors): 0 streams | N quiet | N publishing"
    )
    for row in rows:
        latencies, collected = row["collected"]["latencies"], row["collected"]
        received = len(latencies)
        probe_cost = row["cpu_per_request"] * len(row["probe_busy"]["latencies"])
        cpu_us = 1e6 * max(0.0, row["publish_cpu_s"] - probe_cost) / max(1, received)
        print(
            f"{row['workers']:7} {row['streams']:7}  {_ms(latencies, 0.5):>7} {_ms(latencies, 0.99):>7} "
            f"{_ms(latencies, 1.0):>7}     {received:8}/{row['expected']:<8} {row['publish_rate']:9.0f}"
            f"  {cpu_us:14.1f}     {_probe(row['probe_0'])} | {_probe(row['probe_idle'])} | "
            f"{_probe(row['probe_busy'])}"
        )
        cores = "  ".join(f"{name} {value:.2f}" for name, value in row["cores"].items() if name != "machine")
        print(f"        cores busy while publishing: {cores}; the machine {row['cores']['machine']:.2f}")
        for what, figures in (("open", row["open"]), ("streams", collected)):
            if figures.get("first_error"):
                print(f"        {what}: {figures['errors']} errors; first: {figures['first_error']}")
        endings = row.get("server_endings") or {}
        if any(value for key, value in endings.items() if key != "first"):
            told = ", ".join(f"{key} {value}" for key, value in endings.items() if key != "first")
            first = f"; {endings['first']}" if endings["first"] else ""
            print(f"        the API ended streams early: {told}{first}")
        for what in ("probe_0", "probe_idle", "probe_busy"):
            if row[what].get("first_error"):
                print(f"        {what}: first error: {row[what]['first_error']}")
    _verdicts([r for r in rows if r["workers"] == 1])
    _host_verdicts([r for r in rows if r["workers"] > 1])
    _limits(rows, nofile, redis_maxclients)


def _host_verdicts(rows: list[dict[str, Any]]) -> None:
    """Issue #26's goals for one host (its API processes together): 10,000 streams at an event a second."""
    for row in rows:
        latencies = row["collected"]["latencies"]
        p99 = pct(latencies, 0.99) if latencies else float("inf")
        base, quiet = pct(row["probe_0"]["latencies"], 0.99), pct(row["probe_idle"]["latencies"], 0.99)
        busy = pct(row["probe_busy"]["latencies"], 0.99)
        print(f"\ngoals (one host, {row['workers']} API processes, {row['streams']} streams):")
        print(
            f"  held with every event delivered: {row['open']['ready']}/{row['streams']} open, "
            f"{len(latencies)}/{row['expected']} events (goal {HOST_STREAMS} and all): "
            f"{'met' if row['streams'] >= HOST_STREAMS and served(row) else 'NOT met'}"
        )
        print(
            f"  XADD -> client p99: {1000 * p99:.1f} ms at {row['publish_rate']:.0f} events/s published "
            f"(goal < {1000 * LATENCY_GOAL_S:.0f} ms at one a second each): "
            f"{'met' if p99 < LATENCY_GOAL_S and served(row) else 'NOT met'}"
        )
        print(
            f"  ordinary requests p99: {1000 * quiet:.0f} ms quiet, {1000 * busy:.0f} ms publishing, "
            f"{1000 * base:.0f} ms with none (goal <= {UNAFFECTED:g}x): "
            f"{'met' if max(quiet, busy) <= UNAFFECTED * base else 'NOT met'}"
        )


def _verdicts(rows: list[dict[str, Any]]) -> None:
    print("\ngoals (one API process, --workers 1):")
    held = [row["streams"] for row in rows if served(row)]
    most = max(held, default=0)
    print(
        f"  thousands of open streams per host: {most} held with every event delivered "
        f"(goal >= {THOUSANDS}): {'met' if most >= THOUSANDS else 'NOT met'}"
    )
    at_1000 = next((row for row in rows if row["streams"] == 1000), None)
    if at_1000 is not None:
        p99 = pct(at_1000["collected"]["latencies"], 0.99)
        print(
            f"  XADD -> client p99 at 1000 streams: {1000 * p99:.1f} ms "
            f"(goal < {1000 * LATENCY_GOAL_S:.0f} ms): "
            f"{'met' if p99 < LATENCY_GOAL_S and served(at_1000) else 'NOT met'}"
        )
    for row in rows:
        if row["streams"] != max((r["streams"] for r in rows), default=0):
            continue
        base = pct(row["probe_0"]["latencies"], 0.99)
        quiet = pct(row["probe_idle"]["latencies"], 0.99)
        busy = pct(row["probe_busy"]["latencies"], 0.99)
        errors = row["probe_idle"]["errors"] + row["probe_busy"]["errors"]
        grown = row["held"]["threads"] - row["base"]["threads"]
        ok = quiet <= UNAFFECTED * base and errors == 0 and grown <= POOLED_THREADS
        print(
            f"  ordinary requests with {row['streams']} streams open: p99 {1000 * quiet:.0f} ms quiet "
            f"({quiet / base:.2f}x the {1000 * base:.0f} ms with none), "
            f"{1000 * busy:.0f} ms while publishing ({busy / base:.2f}x), {errors} errors, API threads "
            f"{row['base']['threads']} -> {row['held']['threads']} "
            f"(goal: quiet <= {UNAFFECTED:g}x, no errors, no thread per stream: <= {POOLED_THREADS} more): "
            f"{'met' if ok else 'NOT met'}"
        )


def _limits(rows: list[dict[str, Any]], nofile: tuple[int, int], redis_maxclients: int | None) -> None:
    print("\nlimits on open streams per API process:")
    biggest = max(rows, key=lambda r: r["streams"], default=None)
    fds_per = (biggest["held"]["fds"] - biggest["base"]["fds"]) / biggest["streams"] if biggest else 0.0
    print(
        f"  file descriptors: RLIMIT_NOFILE {nofile[0]} (hard {nofile[1]}) a process, for the API and the "
        f"bench; {fds_per:.2f} per stream in the API -> about "
        f"{int(nofile[0] / fds_per) if fds_per > 0 else 0} streams a process"
    )
    print(f"  the async front's Redis pool: MAX_STREAM_CONNECTIONS = {MAX_STREAM_CONNECTIONS} per process")
    print(f"  Redis maxclients: {redis_maxclients} for every client of that server together")
