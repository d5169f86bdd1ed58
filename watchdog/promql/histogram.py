"""histogram_quantile over classic (`le`-labelled, cumulative) bucket series.

A port of Prometheus' `BucketQuantile` (promql/quantile.go): coalesce equal
bounds, repair float noise and non-monotonic buckets, then interpolate
linearly inside the bucket that holds the rank.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from watchdog.samples import NAME, Labels, Sample

from .numeric import div

BUCKET_LABEL = "le"

Bucket = tuple[float, float]  # (upper bound, cumulative count)


def histogram_quantile(q: float, vector: list[Sample]) -> list[Sample]:
    """One sample per bucket group (all labels but `le`), labelled without `le` and `__name__`.

    The name is part of the group, as in Prometheus: buckets of two metrics are never mixed,
    and two groups that differ only by name come out with the same labels, which the
    evaluator refuses ("vector cannot contain metrics with the same labelset").
    """
    groups: dict[Labels, list[Bucket]] = {}
    for sample in vector:
        upper = _parse_le(sample.label(BUCKET_LABEL))
        if upper is None:
            continue  # Prometheus skips series without a parseable `le` (with a warning).
        key = tuple(p for p in sample.labels if p[0] != BUCKET_LABEL)
        groups.setdefault(key, []).append((upper, sample.value))
    return [Sample(tuple(p for p in labels if p[0] != NAME), bucket_quantile(q, buckets))
            for labels, buckets in groups.items()]


def _parse_le(text: str | None) -> float | None:
    # Go's ParseFloat: no surrounding spaces, no digit separators.
    if text is None or text != text.strip() or "_" in text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def bucket_quantile(q: float, buckets: list[Bucket]) -> float:
    """The q-quantile; NaN without a +Inf bucket or observations, ±Inf for q outside [0, 1]."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(buckets, key=lambda b: b[0])
    if not ordered or ordered[-1][0] != math.inf:
        return math.nan
    bounds, counts = _coalesce(ordered)
    _fix_precision(counts, 1e-12)
    _ensure_monotonic(counts)
    if len(bounds) < 2:
        return math.nan
    observations = counts[-1]
    if observations == 0:
        return math.nan
    rank = q * observations
    b = _search(len(bounds) - 1, lambda i: counts[i] >= rank)
    if b == len(bounds) - 1:
        return bounds[-2]  # Rank in the +Inf bucket: the best we know is the highest finite bound.
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start, count = 0.0, counts[b]
    if b > 0:
        start = bounds[b - 1]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    return start + (bounds[b] - start) * div(rank, count)  # 0/0 (q=0, empty first bucket) is NaN, as in Go


def _coalesce(ordered: list[Bucket]) -> tuple[list[float], list[float]]:
    """Merge buckets with the same bound by adding their counts (as Prometheus does)."""
    bounds: list[float] = []
    counts: list[float] = []
    for upper, count in ordered:
        if bounds and bounds[-1] == upper:
            counts[-1] += count
        else:
            bounds.append(upper)
            counts.append(count)
    return bounds, counts


def _fix_precision(counts: list[float], tolerance: float) -> None:
    """Treat tiny relative differences between neighbours as float noise."""
    prev = counts[0]
    for i in range(1, len(counts)):
        curr = counts[i]
        delta = abs(curr - prev)
        if delta == 0:
            continue
        eps = delta / curr if curr != 0 else math.inf
        if eps <= tolerance:
            counts[i] = prev
        else:
            prev = curr


def _ensure_monotonic(counts: list[float]) -> None:
    """Take the running maximum: a cumulative count can never decrease."""
    highest = counts[0]
    for i in range(1, len(counts)):
        if counts[i] > highest:
            highest = counts[i]
        elif counts[i] < highest:
            counts[i] = highest


def _search(n: int, pred: Callable[[int], bool]) -> int:
    """Go's sort.Search: smallest i in [0, n) with pred(i), else n."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if not pred(mid):
            lo = mid + 1
        else:
            hi = mid
    return lo
