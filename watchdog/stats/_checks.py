"""Input checks shared by the tests: bad numbers raise ValueError saying what to fix.

Too *little* data is not an error (the tests answer `inconclusive`); impossible data is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from watchdog.stats.result import ALTERNATIVES, Counts


def check_count(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if math.isnan(value):
        raise ValueError(f"{name} is NaN: the query returned no number; check that it selects "
                         "a counter increase such as increase(requests_total[5m])")
    if math.isinf(value) or value < 0:
        raise ValueError(f"{name} is {value}: counts must be finite and ≥ 0; use increase() of a "
                         "counter and handle counter resets (watchdog.stats.counter_delta)")
    return float(value)


def check_counts(name: str, counts: Counts | tuple[float, float]) -> Counts:
    errors, total = counts
    errors = check_count(f"{name}.errors", errors)
    total = check_count(f"{name}.total", total)
    if errors > total:
        raise ValueError(f"{name}: errors ({errors:g}) exceed total ({total:g}); the error query and "
                         "the total query must count the same requests (same labels, same window)")
    return Counts(errors, total)


def check_confidence(confidence: float, name: str = "confidence") -> float:
    if not isinstance(confidence, (int, float)) or not 0.0 < confidence < 1.0:
        hint = " (a percentage? write 0.95 for 95%)" if isinstance(confidence, (int, float)) and confidence > 1 else ""
        raise ValueError(f"{name} must be between 0 and 1, e.g. 0.95; got {confidence!r}{hint}")
    return float(confidence)


def check_alternative(alternative: str) -> None:
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {', '.join(ALTERNATIVES)}; got {alternative!r}")


def check_non_negative(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be a number ≥ 0; got {value!r}")
    return float(value)


def check_samples(name: str, samples: Iterable[float]) -> list[float]:
    """Raw observations (e.g. latencies from SQL) as floats; NULL/NaN rows are a query problem."""
    values = list(samples)
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{name}[{i}] is {v!r}: samples must be finite numbers; "
                             "filter NULL/NaN rows in the query")
    return [float(v) for v in values]


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """What the audit keeps of a raw sample: thousands of latencies are summarised, not stored."""
    if not values:
        return {"n": 0, "min": None, "median": None, "mean": None, "max": None}
    ordered = sorted(values)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return {"n": len(ordered), "min": ordered[0], "median": median,
            "mean": math.fsum(ordered) / len(ordered), "max": ordered[-1]}
