"""Statistics of user-supplied data (CSV or JSON records), computed with the standard library."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from typing import Any


class DataError(ValueError):
    """The data can't be read as CSV or as a JSON list of records."""


def parse_records(text: str) -> list[dict[str, Any]]:
    """Rows as dicts: a JSON list of objects (or an object of columns), else CSV with a header row."""
    stripped = text.strip()
    if not stripped:
        raise DataError("the data is empty")
    if stripped[0] in "[{":
        try:
            document = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise DataError(f"the data is not valid JSON: {exc}") from None
        except RecursionError:
            raise DataError("the data is nested too deeply") from None
        if isinstance(document, dict):  # columns: {"a": [1, 2], "b": [3, 4]}
            columns = {str(k): v for k, v in document.items() if isinstance(v, list)}
            length = max((len(v) for v in columns.values()), default=0)
            document = [{k: v[i] for k, v in columns.items() if i < len(v)} for i in range(length)]
        if not isinstance(document, list) or not all(isinstance(row, dict) for row in document):
            raise DataError("JSON data must be a list of objects (records) or an object of columns")
        records = [{str(k): v for k, v in row.items()} for row in document]
    else:
        try:
            records = [dict(row) for row in csv.DictReader(io.StringIO(stripped))]
        except csv.Error as exc:
            raise DataError(f"the data is not valid CSV: {exc}") from None
    if not records:
        raise DataError("the data has no rows")
    return records


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and value.strip():
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def describe(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows, columns, and count/mean/min/max/median of every numeric column (blanks skipped)."""
    columns: list[str] = []
    for row in records:
        columns.extend(name for name in row if name not in columns)
    numeric: dict[str, dict[str, float | int]] = {}
    for name in columns:
        present = [row.get(name) for row in records if not _blank(row.get(name))]
        values = [_number(value) for value in present]
        if not present or any(value is None for value in values):
            continue
        numbers = [value for value in values if value is not None]
        numeric[name] = {
            "count": len(numbers),
            "mean": statistics.fmean(numbers),
            "min": min(numbers),
            "max": max(numbers),
            "median": statistics.median(numbers),
        }
    return {"rows": len(records), "columns": columns, "numeric": numeric}


def summary_text(stats: dict[str, Any]) -> str:
    """The statistics as plain lines for a prompt or a fallback narrative."""
    lines = [f"{stats['rows']} rows; columns: {', '.join(stats['columns'])}."]
    for name, figures in stats["numeric"].items():
        lines.append(
            f"{name}: count {figures['count']}, mean {figures['mean']:.6g}, min {figures['min']:.6g}, "
            f"max {figures['max']:.6g}, median {figures['median']:.6g}"
        )
    if not stats["numeric"]:
        lines.append("No numeric column.")
    return "\n".join(lines)
