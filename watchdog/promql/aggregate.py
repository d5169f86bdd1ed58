"""sum, avg, min, max and count across series, grouped `by` or `without` labels."""

from __future__ import annotations

import math
from collections.abc import Callable

from watchdog.samples import NAME, Labels, Sample

from .numeric import kahan_sum, mean


def _extreme(better: Callable[[float, float], bool]) -> Callable[[list[float]], float]:
    def pick(values: list[float]) -> float:
        best = values[0]
        for v in values[1:]:
            # NaN loses to any number, as in Prometheus; only all-NaN yields NaN.
            if better(v, best) or math.isnan(best):
                best = v
        return best

    return pick


_REDUCERS: dict[str, Callable[[list[float]], float]] = {
    "sum": kahan_sum,
    "avg": mean,
    "min": _extreme(lambda a, b: a < b),
    "max": _extreme(lambda a, b: a > b),
    "count": lambda values: float(len(values)),
}


def group_labels(labels: Labels, grouping: tuple[str, ...], without: bool) -> Labels:
    if without:
        return tuple(p for p in labels if p[0] != NAME and p[0] not in grouping)
    return tuple(p for p in labels if p[0] in grouping)


def aggregate(op: str, vector: list[Sample], grouping: tuple[str, ...], without: bool) -> list[Sample]:
    groups: dict[Labels, list[float]] = {}
    for sample in vector:
        groups.setdefault(group_labels(sample.labels, grouping, without), []).append(sample.value)
    reduce = _REDUCERS[op]
    return [Sample(labels, reduce(values)) for labels, values in groups.items()]
