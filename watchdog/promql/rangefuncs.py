"""Functions over a range vector: rate, increase and the *_over_time family.

Each takes one series' points inside (end - range_, end] and returns a value,
or None when Prometheus would drop the series from the result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from .numeric import kahan_sum, mean

Points = Sequence[tuple[float, float]]
RangeFunction = Callable[[Points, float, float], float | None]


def _counter_delta(points: Points) -> float:
    """last - first, adding back the value before every decrease (a counter reset)."""
    delta = points[-1][1] - points[0][1]
    prev = points[0][1]
    for _, value in points[1:]:
        if value < prev:
            delta += prev
        prev = value
    return delta


def _extrapolated(points: Points, end: float, range_: float, per_second: bool) -> float | None:
    """Prometheus `extrapolatedRate` for counters (float operations in the same order)."""
    if len(points) < 2:
        return None
    first_t, first_v = points[0]
    last_t = points[-1][0]
    sampled = last_t - first_t
    if sampled <= 0:
        return None
    delta = _counter_delta(points)
    average_step = sampled / (len(points) - 1)
    # Extrapolate to a window edge only if a sample "should" be there (within
    # 1.1 steps); otherwise assume the series starts/ends half a step outside.
    threshold = average_step * 1.1
    to_start = first_t - (end - range_)
    to_end = end - last_t
    if to_start >= threshold:
        to_start = average_step / 2
    if delta > 0 and first_v >= 0:
        # A counter cannot go below zero: do not extrapolate past the point
        # where its trend line would cross zero.
        to_start = min(to_start, sampled * (first_v / delta))
    if to_end >= threshold:
        to_end = average_step / 2
    factor = (sampled + to_start + to_end) / sampled
    if per_second:
        factor /= range_
    return delta * factor


def rate(points: Points, end: float, range_: float) -> float | None:
    return _extrapolated(points, end, range_, per_second=True)


def increase(points: Points, end: float, range_: float) -> float | None:
    return _extrapolated(points, end, range_, per_second=False)


def avg_over_time(points: Points, end: float, range_: float) -> float | None:
    return mean([v for _, v in points]) if points else None


def sum_over_time(points: Points, end: float, range_: float) -> float | None:
    return kahan_sum(v for _, v in points) if points else None


def count_over_time(points: Points, end: float, range_: float) -> float | None:
    return float(len(points)) if points else None


def _pick(points: Points, better: Callable[[float, float], bool]) -> float | None:
    if not points:
        return None
    best = points[0][1]
    for _, value in points:
        # A NaN is replaced by any later value, as in Prometheus.
        if better(value, best) or math.isnan(best):
            best = value
    return best


def max_over_time(points: Points, end: float, range_: float) -> float | None:
    return _pick(points, lambda a, b: a > b)


def min_over_time(points: Points, end: float, range_: float) -> float | None:
    return _pick(points, lambda a, b: a < b)


RANGE_FUNCTIONS: dict[str, RangeFunction] = {
    "rate": rate,
    "increase": increase,
    "avg_over_time": avg_over_time,
    "max_over_time": max_over_time,
    "min_over_time": min_over_time,
    "sum_over_time": sum_over_time,
    "count_over_time": count_over_time,
}
