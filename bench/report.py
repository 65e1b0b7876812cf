"""One benchmark report: run every benchmark in bench/ (short variants unless --full), each bounded in
time, collect the figures each writes with --json, print one table (figure, its floor or peer measured in
the same run, the ratio, the goal) and write a markdown report with plots (latency distributions, throughput
by concurrency) under var/bench/report.

Run: DATABASE_URL=postgresql://... REDIS_URL=redis://... .venv/bin/python bench/report.py [--full]
     [--only api,ledger] [--out DIR]      (`make bench` runs this; plots need the `bench` extra: matplotlib)
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.results import Results, load  # noqa: E402

LITELLM = ROOT / "var" / "bench" / "litellm-venv" / "bin" / "litellm"


@dataclass(frozen=True)
class Bench:
    """One benchmark script, its short and full arguments and its time bound."""

    name: str
    short: tuple[str, ...]
    full: tuple[str, ...] = ()
    needs: str = ""  # a module that must import, else the bench is skipped with the reason
    short_s: float = 600
    full_s: float = 3600


BENCHES = (
    Bench("meters", ("--jobs", "5000", "--seconds", "3")),
    Bench("ledger", ("--seconds", "2", "--verify-pairs", "2000")),
    Bench("api", ("--seconds", "3", "--connections", "8")),
    Bench("jobs", ("--runs", "15", "--burst", "60", "--clients", "16", "--streams", "50", "--events", "5")),
    Bench("relay", ("--levels", "1,16,64", "--seconds", "3", "--tokens", "32")),
    Bench("streams", ("--levels", "100", "--events", "3", "--probe-s", "3", "--default-workers-level", "0")),
    Bench("llm", ("--runs", "2", "--max-tokens", "32"), needs="llama_cpp"),
)


def _importable(module: str) -> bool:
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, check=False)
    return probe.returncode == 0


def run_one(bench: Bench, out: Path, *, full: bool) -> tuple[Results | None, str]:
    """Run one benchmark into out/<name>.json and .log; its results (None if it wrote none) and a status."""
    if bench.needs and not _importable(bench.needs):
        return None, f"skipped: {bench.needs} is not installed"
    args = list(bench.full if full else bench.short)
    if bench.name == "relay":
        # LiteLLM is installed on first use from PyPI; without it (or offline) the relay runs without it.
        modes = (
            "direct,litellm,creditflow" if LITELLM.exists() or _importable("litellm") else "direct,creditflow"
        )
        args += ["--modes", modes]
    json_path, log_path = out / f"{bench.name}.json", out / f"{bench.name}.log"
    json_path.unlink(missing_ok=True)
    command = [sys.executable, str(ROOT / "bench" / f"{bench.name}.py"), *args, "--json", str(json_path)]
    started = time.monotonic()
    with log_path.open("w") as log:
        try:
            done = subprocess.run(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                timeout=bench.full_s if full else bench.short_s,
                check=False,
            )
            status = f"exit {done.returncode}"
        except subprocess.TimeoutExpired:
            status = f"stopped after {bench.full_s if full else bench.short_s:.0f} s"
    status += f" in {time.monotonic() - started:.0f} s"
    if not json_path.exists():
        return None, f"{status}; no figures (see {log_path.name})"
    return load(json_path), status


def _number(value: float | None, unit: str = "") -> str:
    if value is None or math.isnan(value):
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".strip()


def rows(results: list[Results]) -> list[list[str]]:
    """One row per figure: bench, figure, value, floor (or peer), ratio, goal, verdict."""
    table = []
    for result in results:
        for figure in result.figures:
            verdict = {True: "met", False: "NOT met", None: "-"}[figure.met]
            floor = (
                f"{_number(figure.floor, figure.unit)} ({figure.floor_name})"
                if figure.floor is not None
                else "-"
            )
            ratio = f"{figure.ratio:.2f}x" if figure.ratio is not None else "-"
            table.append(
                [
                    result.bench,
                    figure.name,
                    _number(figure.value, figure.unit),
                    floor,
                    ratio,
                    figure.goal_text(),
                    verdict,
                ]
            )
    return table


HEADER = ["bench", "figure", "value", "floor / peer (same run)", "ratio", "goal", "verdict"]


def text_table(results: list[Results]) -> str:
    """The table for the terminal."""
    body = rows(results)
    widths = [max(len(row[i]) for row in [HEADER, *body]) for i in range(len(HEADER))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [HEADER, *body]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def plot(results: list[Results], folder: Path) -> dict[str, str]:
    """Draw latency distributions (empirical CDFs) and throughput by concurrency; {bench: file name}."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    drawn: dict[str, str] = {}
    for result in results:
        panels = [kind for kind in ("latency_ms", "throughput") if getattr(result, kind)]
        if not panels:
            continue
        figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
        for axis, kind in zip(axes[0], panels, strict=True):
            if kind == "latency_ms":
                for label, samples in result.latency_ms.items():
                    ordered = sorted(samples)
                    if ordered:
                        axis.step(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=label)
                axis.set(
                    xscale="log", xlabel="latency (ms, log)", ylabel="fraction of requests", title="latency"
                )
            else:
                for label, by_level in result.throughput.items():
                    levels = sorted(by_level)
                    axis.plot(levels, [by_level[n] for n in levels], marker="o", label=label)
                axis.set(xlabel="concurrency", ylabel="per second", title="throughput by concurrency")
            axis.grid(alpha=0.3)
            axis.legend(fontsize=8)
        figure.suptitle(result.bench)
        figure.tight_layout()
        name = f"{result.bench}.png"
        figure.savefig(folder / name, dpi=90)
        plt.close(figure)
        drawn[result.bench] = name
    return drawn


def markdown(
    results: list[Results], statuses: dict[str, str], images: dict[str, str], notes: list[str]
) -> str:
    """The report: the table, then per bench its status, notes and plot."""
    lines = ["# creditflow benchmark report", ""]
    for note in notes:
        lines += [note, ""]
    lines += ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows(results)]
    by_name = {result.bench: result for result in results}
    for name, status in statuses.items():
        lines += ["", f"## {name}", "", f"Run: {status}."]
        result = by_name.get(name)
        if result is not None:
            lines += [f"- {note}" for note in result.notes]
        if name in images:
            lines += ["", f"![{name}]({images[name]})"]
    return "\n".join(lines) + "\n"


def build(results: list[Results], statuses: dict[str, str], folder: Path, notes: list[str]) -> Path:
    """Write REPORT.md (and its plots) into `folder`; answer its path."""
    folder.mkdir(parents=True, exist_ok=True)
    images = plot(results, folder)
    if not images and any(r.latency_ms or r.throughput for r in results):
        notes = [*notes, "Plots need matplotlib: pip install -e '.[bench]'."]
    path = folder / "REPORT.md"
    path.write_text(markdown(results, statuses, images, notes))
    return path


def main() -> int:
    """Run the benchmarks, print the table, write the report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help="each benchmark's own (long) defaults")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench" / "report")
    args = parser.parse_args()
    chosen = [b for b in BENCHES if not args.only or b.name in args.only.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    results: list[Results] = []
    statuses: dict[str, str] = {}
    for bench in chosen:
        print(f"bench/{bench.name}.py ...", flush=True)
        result, statuses[bench.name] = run_one(bench, args.out, full=args.full)
        print(f"  {statuses[bench.name]}", flush=True)
        if result is not None:
            results.append(result)
    notes = [
        f"{'Full' if args.full else 'Short'} variants, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}. Every floor or peer was measured in "
        "the same run as its figure.",
    ]
    if "relay" in statuses and not any(f.floor_name == "LiteLLM proxy" for r in results for f in r.figures):
        notes.append("LiteLLM is not installed here: the relay is compared with its upstream only.")
    print()
    print(text_table(results))
    path = build(results, statuses, args.out, notes)
    print(f"\nreport: {path}")
    # Goals not met are findings the table shows; a benchmark that failed to report is an error.
    failed = [name for name, status in statuses.items() if not status.startswith(("exit 0", "skipped"))]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
