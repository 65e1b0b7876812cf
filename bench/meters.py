"""Job meters benchmark: what orchestration/jobs/meters.py adds to one job, in prometheus_client's
multiprocess mode (the files prefork workers write), next to a floor measured in the same run.

Run: .venv/bin/python bench/meters.py [--jobs 20000] [--seconds 10]

Per job the path records what `creditflow worker` counts: the hold (API), the first token, the end
(finished, charged, released, duration). The floor is the cheapest counting there is: the same four
updates into a plain dict. Goal: under 50 us per job, against the milliseconds of the settle
transaction those values come from (no query is added).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.results import Results, add_json_argument  # noqa: E402

GOAL_US = 50.0


def _floor(jobs: int, deadline: float) -> tuple[int, float]:
    counts: dict[tuple[str, ...], float] = {}
    started = time.perf_counter()
    done = 0
    for done in range(1, jobs + 1):  # noqa: B007 - the count is the result
        for key, value in ((("held", "chat"), 1000.0), (("ttft", "chat", "m"), 0.2),
                           (("finished", "chat", "succeeded"), 1.0), (("charged", "chat", "m"), 900.0)):
            counts[key] = counts.get(key, 0.0) + value
        if time.perf_counter() > deadline:
            break
    return done, time.perf_counter() - started


def _meters(jobs: int, deadline: float) -> tuple[int, float]:
    from orchestration.jobs import meters

    start = datetime.now(UTC)
    end = start + timedelta(seconds=3)
    started = time.perf_counter()
    done = 0
    for done in range(1, jobs + 1):  # noqa: B007 - the count is the result
        meters.held("chat", 1000)
        meters.first_token("chat", "m", 0.2)
        meters.ended(kind="chat", model="m", status="succeeded", charged=900, released=100,
                     started_at=start, finished_at=end)
        if time.perf_counter() > deadline:
            break
    return done, time.perf_counter() - started


def main() -> None:
    """Print microseconds per job of the meters and of the floor, and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    add_json_argument(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder  # before prometheus_client is imported
        floor_jobs, floor_s = _floor(args.jobs, time.perf_counter() + args.seconds / 2)
        meter_jobs, meter_s = _meters(args.jobs, time.perf_counter() + args.seconds / 2)
    floor_us, meter_us = floor_s / floor_jobs * 1e6, meter_s / meter_jobs * 1e6
    print(f"floor (dict updates): {floor_us:8.2f} us per job over {floor_jobs} jobs")
    print(f"meters (multiprocess): {meter_us:8.2f} us per job over {meter_jobs} jobs")
    print(f"ratio meters / floor: {meter_us / floor_us:.1f}x; goal under {GOAL_US:.0f} us per job: "
          f"{'met' if meter_us < GOAL_US else 'MISSED'}")
    results = Results("meters")
    results.add("meters per job", meter_us, "us", floor=floor_us, floor_name="dict updates",
                goal_value=GOAL_US, higher_is_better=False)
    results.write(args.json)


if __name__ == "__main__":
    main()
