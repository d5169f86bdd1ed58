"""Functions over instant vectors and scalars: abs, clamp_*, vector, scalar, histogram_quantile.

Like Prometheus, every function result drops `__name__`: the value no longer
means what the metric name says.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from watchdog.samples import Sample, without_name

from .histogram import histogram_quantile
from .numeric import go_max, go_min

Value = float | list[Sample]


def _vector(value: Value) -> list[Sample]:
    assert isinstance(value, list), "the type checker guarantees an instant vector here"
    return value


def _scalar(value: Value) -> float:
    assert isinstance(value, float), "the type checker guarantees a scalar here"
    return value


def _clamp(vector: list[Sample], low: float, high: float) -> list[Sample]:
    if high < low:
        return []
    return [Sample(without_name(s.labels), go_max(low, go_min(high, s.value))) for s in vector]


def _scalar_of(vector: list[Sample]) -> float:
    # Exactly one element converts; anything else is NaN, not an error.
    return vector[0].value if len(vector) == 1 else math.nan


INSTANT_FUNCTIONS: dict[str, Callable[[Sequence[Value]], Value]] = {
    "abs": lambda a: [Sample(without_name(s.labels), math.fabs(s.value)) for s in _vector(a[0])],
    "clamp_min": lambda a: _clamp(_vector(a[0]), _scalar(a[1]), math.inf),
    "clamp_max": lambda a: _clamp(_vector(a[0]), -math.inf, _scalar(a[1])),
    "vector": lambda a: [Sample((), _scalar(a[0]))],
    "scalar": lambda a: _scalar_of(_vector(a[0])),
    "histogram_quantile": lambda a: histogram_quantile(_scalar(a[0]), _vector(a[1])),
}
