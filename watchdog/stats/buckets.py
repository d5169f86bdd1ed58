"""Histograms as Prometheus exposes them: cumulative `le` buckets, the last one `+Inf`.

A *cumulative* histogram maps each upper edge `le` to the number of observations ≤ `le`; the
`+Inf` bucket holds the total. Keys may be floats or the label strings ("0.5", "+Inf").
Everything here returns new sorted dicts with float keys; nothing is modified in place.

Aligning two histograms with different edges (`align_buckets`):

- `edges="common"` (default) keeps only the edges both have. Both histograms are then exact
  (merging adjacent buckets loses resolution, never invents data), so identical distributions
  stay identical: PSI 0, KS 0.
- `edges="union"` keeps every edge; a histogram's count at an edge it does not have is
  *interpolated linearly* inside the bucket around it (observations assumed uniform in a
  bucket; the first bucket starts at 0 when its edge is positive, as Prometheus'
  `histogram_quantile` assumes; observations in the `+Inf` bucket are assumed to lie above
  every finite edge). More resolution, but the uniform guess can differ from the other
  histogram's real split and show drift that is not there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import pairwise
from typing import Literal

from watchdog.stats._checks import check_count

Buckets = Mapping[float, float] | Mapping[str, float] | Mapping[float | str, float]
EdgeMode = Literal["common", "union"]
INF = math.inf


def le_label(edge: float) -> str:
    """The `le` label text of an edge, for messages and audit details ("0.25", "+Inf")."""
    return "+Inf" if edge == INF else repr(float(edge))


def cumulative_buckets(buckets: Buckets, name: str = "histogram") -> dict[float, float]:
    """Validate cumulative buckets and return them sorted with float edges.

    Raises ValueError when an edge is not a number, the `+Inf` bucket is missing, a count is
    NaN/negative, or counts decrease with the edge (buckets must be cumulative).
    """
    parsed = {_edge(name, key): check_count(f"{name}[le={key}]", value) for key, value in buckets.items()}
    if INF not in parsed:
        raise ValueError(f"{name} has no '+Inf' bucket: cumulative buckets need it as the total count "
                         "(Prometheus always exposes it; from SQL, add the row count)")
    ordered = dict(sorted(parsed.items()))
    pairs = list(ordered.items())
    for (lower, below), (edge, count) in pairwise(pairs):
        if count < below:
            raise ValueError(f"{name}: the count at le={le_label(edge)} ({count:g}) is below the count at "
                             f"le={le_label(lower)} ({below:g}); buckets must be cumulative "
                             "(observations ≤ le), not per-bucket counts: see bucket_counts()")
    return ordered


def bucket_counts(buckets: Buckets, name: str = "histogram") -> dict[float, float]:
    """Per-bucket counts (observations in (previous edge, edge]) from cumulative buckets."""
    cumulative = cumulative_buckets(buckets, name)
    counts, previous = {}, 0.0
    for edge, count in cumulative.items():
        counts[edge] = count - previous
        previous = count
    return counts


def cumulative_at(buckets: Buckets, x: float) -> float:
    """The (interpolated) number of observations ≤ x; exact at the histogram's own edges."""
    if math.isnan(x):
        raise ValueError("cumulative_at: x is NaN; pass a bucket edge or a value such as 0.25")
    return _interpolate(cumulative_buckets(buckets), x)


def _interpolate(cumulative: dict[float, float], x: float) -> float:
    if x in cumulative:
        return cumulative[x]
    edges = list(cumulative)
    upper = next(e for e in edges if e > x)
    if upper == INF:
        return cumulative[edges[-2]] if len(edges) > 1 else 0.0
    index = edges.index(upper)
    lower = edges[index - 1] if index > 0 else (0.0 if upper > 0 else None)
    if lower is None or x < lower:
        return 0.0
    below = cumulative[lower] if index > 0 else 0.0
    return below + (cumulative[upper] - below) * (x - lower) / (upper - lower)


def align_buckets(a: Buckets, b: Buckets, *, edges: EdgeMode = "common") -> tuple[dict[float, float], dict[float, float]]:
    """Both histograms on one set of edges (see the module docstring for the two modes)."""
    first, second = cumulative_buckets(a, "first histogram"), cumulative_buckets(b, "second histogram")
    if edges == "common":
        shared = sorted(set(first) & set(second))
    elif edges == "union":
        shared = sorted(set(first) | set(second))
    else:
        raise ValueError(f"edges must be 'common' or 'union'; got {edges!r}")
    return ({e: _interpolate(first, e) for e in shared}, {e: _interpolate(second, e) for e in shared})


def counter_delta(previous: float, current: float) -> float:
    """Increase of a counter between two scrapes; a decrease means the process restarted.

    As in Prometheus, after a reset the counter counted from 0, so the increase is `current`.
    """
    previous, current = check_count("previous", previous), check_count("current", current)
    return current - previous if current >= previous else current


def histogram_delta(previous: Buckets, current: Buckets) -> dict[float, float]:
    """Cumulative buckets observed between two scrapes of the same histogram.

    A restart resets all buckets together, so any bucket that went down (or a change of the
    bucket layout, e.g. a new version with other edges) means the whole histogram restarted:
    the delta is then `current` itself. A reset followed by more traffic than before in every
    bucket cannot be seen from two scrapes (the same blind spot as Prometheus' `increase`).
    """
    before, after = cumulative_buckets(previous, "previous scrape"), cumulative_buckets(current, "current scrape")
    if set(before) != set(after) or any(after[e] < before[e] for e in after):
        return after
    return {e: after[e] - before[e] for e in after}


def total_count(cumulative: Mapping[float, float]) -> float:
    return cumulative[INF]


def _edge(name: str, key: float | str) -> float:
    try:
        edge = float(key)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: bucket edge {key!r} is not a number (expected an `le` value "
                         "such as 0.25 or '+Inf')") from None
    if math.isnan(edge):
        raise ValueError(f"{name}: bucket edge {key!r} is NaN")
    return edge
