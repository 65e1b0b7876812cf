"""Machine-readable results of a benchmark (`--json PATH`): its figures, each beside the floor or peer
measured in the same run and its goal, plus latency samples and throughput by concurrency for the plots
that bench/report.py draws."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    """One figure beside its floor (or peer): `goal_ratio` bounds value/floor, `goal_value` the value itself;
    `higher_is_better` says which way each bound points."""

    name: str
    value: float
    unit: str
    floor: float | None = None
    floor_name: str = ""
    goal_ratio: float | None = None
    goal_value: float | None = None
    higher_is_better: bool = True

    @property
    def ratio(self) -> float | None:
        """value / floor, None without a usable floor."""
        if self.floor is None or not self.floor or math.isnan(self.floor) or math.isnan(self.value):
            return None
        return self.value / self.floor

    @property
    def met(self) -> bool | None:
        """Whether every goal given holds (None: no goal, or nothing to judge it by)."""
        checks: list[bool] = []
        for bound, got in ((self.goal_ratio, self.ratio), (self.goal_value, self.value)):
            if bound is None:
                continue
            if got is None or math.isnan(got):
                return None
            checks.append(got >= bound if self.higher_is_better else got <= bound)
        return all(checks) if checks else None

    def goal_text(self) -> str:
        """The goal in words, e.g. '>= 40% of floor' or '<= 50 ms'."""
        sign = ">=" if self.higher_is_better else "<="
        parts = []
        if self.goal_ratio is not None:
            parts.append(
                f"{sign} {self.goal_ratio:.0%} of floor"
                if self.goal_ratio <= 1 or self.higher_is_better
                else f"{sign} {self.goal_ratio:g}x floor"
            )
        if self.goal_value is not None:
            goal = self.goal_value
            parts.append(
                f"{sign} {goal:,.0f} {self.unit}".strip()
                if goal == int(goal) or goal >= 100
                else f"{sign} {goal:.1f} {self.unit}"
            )
        return ", ".join(parts) or "-"


@dataclass
class Results:
    """What one benchmark run measured."""

    bench: str
    figures: list[Figure] = field(default_factory=list)
    # label -> samples in ms (a latency distribution)
    latency_ms: dict[str, list[float]] = field(default_factory=dict)
    # label -> {concurrency: per second} (throughput by concurrency)
    throughput: dict[str, dict[int, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, value: float, unit: str, **kwargs: Any) -> Figure:
        """Record one figure (see Figure) and answer it."""
        figure = Figure(name, float(value), unit, **kwargs)
        self.figures.append(figure)
        return figure

    def write(self, path: Path | None) -> None:
        """Write the results as JSON to `path` (nothing when None)."""
        if path is None:
            return
        path.write_text(json.dumps(to_dict(self), indent=1, allow_nan=True))


def to_dict(results: Results) -> dict[str, Any]:
    """Results as plain JSON-able data (throughput keys as strings, as JSON has them)."""
    data = asdict(results)
    data["throughput"] = {k: {str(n): v for n, v in by.items()} for k, by in results.throughput.items()}
    return data


def from_dict(data: dict[str, Any]) -> Results:
    """Results read back from their JSON form."""
    return Results(
        bench=data["bench"],
        figures=[Figure(**figure) for figure in data.get("figures", [])],
        latency_ms={k: [float(v) for v in values] for k, values in data.get("latency_ms", {}).items()},
        throughput={
            k: {int(n): float(v) for n, v in by.items()} for k, by in data.get("throughput", {}).items()
        },
        notes=list(data.get("notes", [])),
    )


def load(path: Path) -> Results:
    """Results from a file a benchmark wrote with --json."""
    return from_dict(json.loads(path.read_text()))


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    """The --json PATH option every benchmark takes."""
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON to PATH")
