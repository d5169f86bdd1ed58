"""Float arithmetic with Go/IEEE semantics, and the summation Prometheus uses.

Python raises where Go returns Inf or NaN (x/0, fmod(x, 0), pow overflow);
alert rules must see the same numbers Prometheus would show, never an exception.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def div(a: float, b: float) -> float:
    if b == 0.0:
        if a == 0.0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def mod(a: float, b: float) -> float:
    """Go's math.Mod: sign of the dividend, NaN for x%0 and Inf%y."""
    try:
        return math.fmod(a, b)
    except ValueError:
        return math.nan


def _is_odd_integer(y: float) -> bool:
    return math.isfinite(y) and y == math.floor(y) and math.fmod(y, 2.0) != 0.0


def pow_(a: float, b: float) -> float:
    """Go's math.Pow, including its answers where Python's raises."""
    try:
        return math.pow(a, b)
    except OverflowError:
        return -math.inf if a < 0 and _is_odd_integer(b) else math.inf
    except ValueError:
        if a == 0.0:  # 0 ** negative
            return math.copysign(math.inf, a) if _is_odd_integer(b) else math.inf
        return math.nan  # negative ** non-integer


def kahan_inc(inc: float, total: float, c: float) -> tuple[float, float]:
    """One step of Neumaier-compensated summation (Prometheus `kahansum.Inc`)."""
    t = total + inc
    if math.isinf(t):
        c = 0.0
    elif abs(total) >= abs(inc):
        c += (total - t) + inc
    else:
        c += (inc - t) + total
    return t, c


def kahan_sum(values: Iterable[float]) -> float:
    total, c = 0.0, 0.0
    for v in values:
        total, c = kahan_inc(v, total, c)
    return total if math.isinf(total) else total + c


def mean(values: list[float]) -> float:
    """Prometheus' avg: compensated direct mean, incremental once the sum would overflow."""
    total, c, count = values[0], 0.0, 1.0
    incremental, avg = False, 0.0
    for v in values[1:]:
        count += 1.0
        if not incremental:
            new_total, new_c = kahan_inc(v, total, c)
            if not math.isinf(new_total):
                total, c = new_total, new_c
                continue
            incremental = True
            avg = total / (count - 1)
            c /= count - 1
        q = (count - 1) / count
        avg, c = kahan_inc(v / count, q * avg, q * c)
    if incremental:
        return avg + c
    return total / count + c / count


def go_max(a: float, b: float) -> float:
    """Go's math.Max: +Inf beats NaN, NaN beats numbers, +0 beats -0."""
    if a == math.inf or b == math.inf:
        return math.inf
    if math.isnan(a) or math.isnan(b):
        return math.nan
    if a == b == 0.0:
        return a if math.copysign(1.0, a) > 0 else b
    return a if a > b else b


def go_min(a: float, b: float) -> float:
    """Go's math.Min: -Inf beats NaN, NaN beats numbers, -0 beats +0."""
    if a == -math.inf or b == -math.inf:
        return -math.inf
    if math.isnan(a) or math.isnan(b):
        return math.nan
    if a == b == 0.0:
        return a if math.copysign(1.0, a) < 0 else b
    return a if a < b else b
