"""The benchmark report builder (bench/report.py, bench/results.py) on figures recorded from real runs: the
verdicts follow the goals both ways, the table and the markdown carry every figure with its floor and ratio,
the plots are drawn, and a benchmark run through the runner hands its figures over as JSON."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from bench import report
from bench.results import Figure, Results, from_dict, load, to_dict

# Recorded (rounded) from short runs of bench/relay.py, bench/jobs.py and bench/api.py on a 2-CPU machine.
RELAY = Results(
    "relay",
    figures=[
        Figure(
            "creditflow first-token p50 at 1 users", 14.2, "ms", 6.1, "upstream direct p50", None, 16.1, False
        ),
        Figure(
            "creditflow first-token p50 at 64 users",
            61.0,
            "ms",
            7.3,
            "upstream direct p50",
            None,
            57.3,
            False,
        ),
        Figure(
            "creditflow tokens/s at 64 users", 5210.0, "tokens/s", 5890.0, "upstream direct", 0.9, None, True
        ),
    ],
    latency_ms={
        "direct first token (64 users)": [6.8, 7.1, 7.3, 9.9],
        "creditflow first token (64 users)": [40.2, 55.0, 61.0, 98.5],
    },
    throughput={"direct": {1: 95.0, 16: 1510.0, 64: 5890.0}, "creditflow": {1: 90.1, 16: 1402.0, 64: 5210.0}},
    notes=["LiteLLM was not measured: creditflow is compared with the upstream only."],
)
JOBS = Results(
    "jobs",
    figures=[
        Figure("job p50", 38.0, "ms", 9.5, "bare Celery chain p50", 3.0, None, False),
        Figure("jobs/s", 61.0, "jobs/s", 210.0, "bare chains/s", 0.4, None, True),
        Figure("SSE fan-out p99 (50 streams)", float("nan"), "ms", None, "", None, 50.0, False),
    ],
    latency_ms={"bare Celery chain": [8.0, 9.5, 12.0], "job POST -> final SSE": [30.0, 38.0, 52.0]},
)
API = Results(
    "api", figures=[Figure("GET /credits/balance req/s", 910.0, "req/s", 2050.0, "bare Flask hello", 0.4)]
)


def test_verdicts_follow_the_goals_both_ways() -> None:
    over_budget, slow, throughput = RELAY.figures
    assert over_budget.met is True  # 14.2 ms <= 6.1 + 10
    assert slow.met is False  # 61 ms > 7.3 + 50
    assert throughput.ratio == pytest.approx(5210 / 5890)
    assert throughput.met is False  # 88% < 90%
    p50, rate, fanout = JOBS.figures
    assert p50.met is False  # 4x the floor, goal <= 3x
    assert p50.goal_text() == "<= 3x floor"
    assert rate.met is False  # 29% of the floor, goal >= 40%
    assert rate.goal_text() == ">= 40% of floor"
    assert fanout.met is None  # nothing measured: no verdict, not a pass
    assert API.figures[0].met is True
    assert Figure("no goal", 1.0, "x", 2.0).met is None


def test_results_survive_their_json_form(tmp_path: Path) -> None:
    RELAY.write(tmp_path / "relay.json")
    again = load(tmp_path / "relay.json")
    assert again.throughput == RELAY.throughput  # concurrency keys back as ints
    assert [f.met for f in again.figures] == [f.met for f in RELAY.figures]
    nan = from_dict(to_dict(JOBS)).figures[2].value
    assert math.isnan(nan)


def test_the_table_and_report_carry_every_figure(tmp_path: Path) -> None:
    results = [RELAY, JOBS, API]
    table = report.text_table(results)
    lines = table.splitlines()
    assert len(lines) == 2 + sum(len(r.figures) for r in results)
    row = next(line for line in lines if "jobs/s" in line)
    for cell in ("61 jobs/s", "210 jobs/s (bare chains/s)", "0.29x", ">= 40% of floor", "NOT met"):
        assert cell in row, row
    statuses = {
        "relay": "exit 0 in 40 s",
        "jobs": "exit 0 in 90 s",
        "api": "exit 0 in 20 s",
        "llm": "skipped",
    }
    path = report.build(results, statuses, tmp_path / "out", ["Short variants."])
    text = path.read_text()
    assert text.count("\n| ") == 1 + len(lines) - 2  # header + one row per figure
    assert "| api | GET /credits/balance req/s | 910 req/s | 2,050 req/s (bare Flask hello) | 0.44x |" in text
    assert "## llm\n\nRun: skipped." in text
    assert "- LiteLLM was not measured" in text
    if importlib.util.find_spec("matplotlib") is None:
        assert "Plots need matplotlib" in text
        return
    for name in ("relay", "jobs"):  # api recorded no samples and no levels: no plot
        assert f"![{name}]({name}.png)" in text
        assert (tmp_path / "out" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "out" / "api.png").exists()


def test_a_benchmark_hands_its_figures_over_as_json(tmp_path: Path) -> None:
    bench = report.Bench("meters", ("--jobs", "300", "--seconds", "1"))
    result, status = report.run_one(bench, tmp_path, full=False)
    assert status.startswith("exit 0"), (tmp_path / "meters.log").read_text()
    assert result is not None
    (figure,) = result.figures
    assert figure.name == "meters per job"
    assert figure.value > 0
    assert figure.floor
    assert figure.met is not None
    missing, why = report.run_one(report.Bench("llm", (), needs="no_such_module_here"), tmp_path, full=False)
    assert missing is None
    assert why == "skipped: no_such_module_here is not installed"
