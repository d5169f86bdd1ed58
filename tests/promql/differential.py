"""A corpus of series and a few hundred queries, for comparing our PromQL with Prometheus.

`corpus(t0)` generates, deterministically, the kinds of series rules meet: counters with
resets, a counter that starts late and one that ends, gauges with a gap longer than the
lookback and a NaN, classic histograms (one with a reset, one whose bounds are written two
ways), and metrics whose label sets clash once `__name__` is dropped. `openmetrics()` writes
it for `promtool tsdb create-blocks-from openmetrics`; `series_store()` loads the same points
into a SeriesStore.

Stale markers cannot be written in OpenMetrics (a `NaN` sample is a real NaN, not Prometheus'
stale-marker NaN), so the corpus has none: series end by stopping (visible for the 5-minute
lookback, as a scrape without a stale marker), and the SeriesStore gets each series as its
own target so it adds no stale markers either. Stale-marker behaviour is covered by
tests/promql/test_promql_store.py.

Timestamps sit on a 125 ms grid (exact in binary floating point, and in Prometheus'
milliseconds) with the query instants at .5 s, so no sample lies exactly on a window
boundary: Prometheus 2 (Debian's package) closes windows on the left, Prometheus 3 and we
leave them open, and the corpus does not depend on that difference.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from watchdog.promql import SeriesStore
from watchdog.samples import Sample, labels_of

STEP = 15.0  # the nominal scrape interval
SPAN = 50 * 60.0  # seconds of data
JITTER = (0.0, 0.125, 0.25, 0.375)


@dataclass
class Series:
    name: str
    labels: dict[str, str]
    points: list[tuple[float, float]] = field(default_factory=list)

    def key(self) -> tuple[tuple[str, str], ...]:
        return labels_of({"__name__": self.name, **self.labels})


def _times(rng: random.Random, t0: float, start: float = 0.0, end: float = SPAN,
           gaps: tuple[tuple[float, float], ...] = ()) -> list[float]:
    out = []
    n = 0
    while True:
        offset = n * STEP
        n += 1
        if offset < start:
            continue
        if offset > end:
            return out
        if any(a <= offset < b for a, b in gaps):
            continue
        out.append(t0 + offset + rng.choice(JITTER))


def _counter(rng: random.Random, times: list[float], rate: float, resets: int = 0) -> list[tuple[float, float]]:
    reset_at = set(rng.sample(range(5, len(times)), resets)) if resets else set()
    value, out = rng.uniform(0, 50), []
    for i, t in enumerate(times):
        if i in reset_at:
            value = rng.uniform(0, 3)
        else:
            value += rng.uniform(0, 2 * rate * STEP)
        out.append((t, round(value, 3)))
    return out


def _gauge(rng: random.Random, times: list[float], centre: float, nan_at: int | None = None) -> list[tuple[float, float]]:
    value, out = centre, []
    for i, t in enumerate(times):
        value += rng.uniform(-1, 1)
        out.append((t, math.nan if i == nan_at else round(value, 2)))
    return out


def _histogram(rng: random.Random, name: str, labels: dict[str, str], bounds: list[str], times: list[float],
               reset: bool = False) -> list[Series]:
    """Cumulative buckets that stay consistent (each le ≥ the one below), plus _count and _sum."""
    weights = [rng.uniform(0.2, 1.0) for _ in bounds]
    counts = [0.0] * len(bounds)
    total_sum = 0.0
    buckets = [Series(f"{name}_bucket", {**labels, "le": le}) for le in bounds]
    count, sums = Series(f"{name}_count", dict(labels)), Series(f"{name}_sum", dict(labels))
    reset_at = len(times) // 2 if reset else -1
    for i, t in enumerate(times):
        if i == reset_at:
            counts, total_sum = [0.0] * len(bounds), 0.0
        new = [rng.randint(0, 6) * w for w in weights]
        running = 0.0
        for j in range(len(bounds)):
            running += new[j]
            counts[j] += round(running)
        total_sum += rng.uniform(0, 3)
        for j, series in enumerate(buckets):
            series.points.append((t, counts[j]))
        count.points.append((t, counts[-1]))
        sums.points.append((t, round(total_sum, 3)))
    return [*buckets, count, sums]


def corpus(t0: float, seed: int = 14) -> list[Series]:
    rng = random.Random(seed)
    out: list[Series] = []
    for instance in ("a", "b", "c"):
        for code in ("200", "500"):
            start = 600.0 if instance == "c" else 0.0  # c starts late: windows that begin before it
            series = Series("http_requests_total", {"job": "api", "instance": instance, "code": code})
            series.points = _counter(rng, _times(rng, t0, start), rate=5 if code == "200" else 0.4,
                                     resets=1 if instance == "b" else 0)
            out.append(series)
    ended = Series("http_requests_total", {"job": "batch", "instance": "a", "code": "200"})
    ended.points = _counter(rng, _times(rng, t0, end=25 * 60), rate=2)  # stops halfway
    out.append(ended)
    for instance, env, centre in (("a", "prod", 40), ("b", "PROD", 55), ("c", "Production", -3), ("d", "dev", 20)):
        gaps = ((20 * 60, 27 * 60),) if instance == "b" else ()  # longer than the 5-minute lookback
        series = Series("temperature_celsius", {"instance": instance, "env": env})
        series.points = _gauge(rng, _times(rng, t0, gaps=gaps), centre, nan_at=100 if instance == "d" else None)
        out.append(series)
    for instance, path in (("a", "/api/v1"), ("b", "/api/v2"), ("c", "/healthz")):
        series = Series("queue_depth", {"instance": instance, "path": path})
        series.points = [(t, float(rng.randint(0, 9))) for t in _times(rng, t0)]
        out.append(series)
    for instance in ("a", "b", "c"):
        series = Series("up", {"job": "api", "instance": instance})
        series.points = [(t, 0.0 if 30 * 60 <= t - t0 < 33 * 60 and instance == "c" else 1.0) for t in _times(rng, t0)]
        out.append(series)
    latency = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"]
    out += _histogram(rng, "latency_seconds", {"job": "api", "instance": "a"}, latency, _times(rng, t0))
    out += _histogram(rng, "latency_seconds", {"job": "api", "instance": "b"}, latency, _times(rng, t0), reset=True)
    out += _histogram(rng, "size_bytes", {"job": "api", "instance": "a"}, ["100", "1000", "10000", "+Inf"],
                      _times(rng, t0))
    # One bound written two ways ("1" and "1.0"): Prometheus adds their counts.
    dup = _histogram(rng, "dup_seconds", {"job": "api"}, ["0.5", "1", "2", "+Inf"], _times(rng, t0))
    twin = Series("dup_seconds_bucket", {"job": "api", "le": "1.0"})
    twin.points = [(t, v / 2) for t, v in dup[1].points]
    out += [*dup[:4], twin]
    # Same labels under two names: dropping __name__ makes them clash.
    for name in ("jobs_done_total", "jobs_failed_total"):
        series = Series(name, {"job": "worker"})
        series.points = _counter(rng, _times(rng, t0), rate=1)
        out.append(series)
    return out


def openmetrics(series: list[Series]) -> str:
    lines: list[str] = []
    by_name: dict[str, list[Series]] = {}
    for s in series:
        by_name.setdefault(s.name, []).append(s)
    for name, family in by_name.items():
        lines.append(f"# TYPE {name} unknown")
        for s in family:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            for t, v in s.points:
                lines.append(f"{name}{{{labels}}} {_om_value(v)} {t:.3f}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _om_value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


def series_store(series: list[Series]) -> SeriesStore:
    store = SeriesStore()
    for i, s in enumerate(series):
        for t, v in s.points:
            store.append_scrape(t, [Sample(s.key(), v)], target=f"series-{i}")  # no stale markers, see above
    return store


# --- queries ------------------------------------------------------------------------------------

SELECTORS = [
    "http_requests_total", 'http_requests_total{code="500"}', 'http_requests_total{job="api", code!="500"}',
    'http_requests_total{instance=~"a|b"}', 'http_requests_total{instance!~"c"}', "temperature_celsius",
    'temperature_celsius{env=~"(?i)prod"}', 'temperature_celsius{env=~"((?i)PRO).*"}',
    'temperature_celsius{env!~"[[:lower:]]+"}', "queue_depth", 'queue_depth{path=~"/api/.*"}', "up",
    'latency_seconds_count{instance="a"}', "latency_seconds_sum", 'up{instance="c"}',
]
COUNTERS = ["http_requests_total", 'http_requests_total{code="500"}', 'http_requests_total{instance=~"b|c"}',
            "latency_seconds_count", "latency_seconds_sum", 'http_requests_total{job="batch"}']
RANGES = ["30s", "1m", "90s", "2m", "5m", "10m", "1m30s"]
LABELS = ["instance", "code", "job", "env", "path", "le"]
QUANTILES = ["0", "0.25", "0.5", "0.9", "0.99", "1", "-0.5", "1.5"]
ARITH = ["+", "-", "*", "/", "%", "^"]
COMPARE = ["==", "!=", ">", "<", ">=", "<="]


class QueryGen:
    """Random queries from our subset's grammar, typed (instant vector or scalar)."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def vector(self, depth: int = 0) -> str:
        r = self.rng
        if depth >= 3:
            return self._leaf()
        kind = r.choices(["leaf", "range", "agg", "hq", "func", "vs", "vv", "set", "neg", "vector"],
                         [3, 4, 4, 1, 2, 3, 2, 1, 1, 1])[0]
        if kind == "leaf":
            return self._leaf()
        if kind == "range":
            return self._range()
        if kind == "agg":
            op = r.choice(["sum", "avg", "min", "max", "count"])
            inner = self.vector(depth + 1)
            grouping = r.choice(["", f" by ({self._labels()})", f" without ({self._labels()})"])
            return f"{op}{grouping} ({inner})" if r.random() < 0.7 else f"{op}({inner}){grouping}"
        if kind == "hq":
            return self._histogram_quantile()
        if kind == "func":
            inner = self.vector(depth + 1)
            f = r.choice(["abs", "clamp_min", "clamp_max"])
            return f"abs({inner})" if f == "abs" else f"{f}({inner}, {self.scalar(depth + 1)})"
        if kind == "vs":
            op = r.choice(ARITH + COMPARE)
            bool_ = " bool" if op in COMPARE and r.random() < 0.5 else ""
            v, s = self.vector(depth + 1), self.scalar(depth + 1)
            return f"({v}) {op}{bool_} {s}" if r.random() < 0.6 else f"{s} {op}{bool_} ({v})"
        if kind == "vv":
            op = r.choice(ARITH + COMPARE)
            bool_ = " bool" if op in COMPARE and r.random() < 0.4 else ""
            matching = r.choice(["", "", f" on ({self._labels()})", f" ignoring ({self._labels()})"])
            lhs, rhs = self._matched_pair(depth)
            return f"({lhs}) {op}{bool_}{matching} ({rhs})"
        if kind == "set":
            op = r.choice(["and", "or", "unless"])
            matching = r.choice(["", f" on ({self._labels()})", f" ignoring ({self._labels()})"])
            return f"({self.vector(depth + 1)}) {op}{matching} ({self.vector(depth + 1)})"
        if kind == "neg":
            return f"-({self.vector(depth + 1)})"
        return f"vector({self.scalar(depth + 1)})"

    def scalar(self, depth: int = 0) -> str:
        r = self.rng
        kind = r.choices(["num", "scalar", "arith"], [6, 2 if depth < 3 else 0, 1 if depth < 3 else 0])[0]
        if kind == "num":
            return r.choice(["0", "1", "2", "0.5", "-1", "3.25", "10", "1e3", "0x10", "NaN", "Inf", "-Inf", "100"])
        if kind == "scalar":
            return f"scalar({self.vector(depth + 1)})"
        op = r.choice(ARITH + [f"{c} bool" for c in COMPARE])
        return f"({self.scalar(depth + 1)} {op} {self.scalar(depth + 1)})"

    def _leaf(self) -> str:
        return self.rng.choice(SELECTORS)

    def _range(self) -> str:
        r = self.rng
        f = r.choice(["rate", "increase", "avg_over_time", "max_over_time", "min_over_time", "sum_over_time",
                      "count_over_time"])
        selector = r.choice(COUNTERS) if f in ("rate", "increase") else r.choice(SELECTORS + COUNTERS)
        return f"{f}({selector}[{r.choice(RANGES)}])"

    def _histogram_quantile(self) -> str:
        r = self.rng
        q = r.choice(QUANTILES)
        metric = r.choice(["latency_seconds_bucket", 'latency_seconds_bucket{instance="b"}', "size_bytes_bucket",
                           "dup_seconds_bucket"])
        inner = r.choice([metric, f"rate({metric}[{r.choice(RANGES)}])",
                          f"sum by (le) (rate({metric}[{r.choice(RANGES)}]))",
                          f"sum by (le, instance) (increase({metric}[{r.choice(RANGES)}]))"])
        return f"histogram_quantile({q}, {inner})"

    def _labels(self) -> str:
        return ", ".join(sorted(set(self.rng.sample(LABELS, self.rng.randint(1, 2)))))

    def _matched_pair(self, depth: int) -> tuple[str, str]:
        """Two vectors likely to share label sets (else vector/vector ops are mostly empty)."""
        r = self.rng
        by = r.choice(["instance", "job", "code", "instance, job"])
        pools = [f"sum by ({by}) ({r.choice(COUNTERS)})", f"max by ({by}) (rate({r.choice(COUNTERS)}[5m]))",
                 f"count by ({by}) ({r.choice(SELECTORS)})", r.choice(SELECTORS), self._range()]
        return r.choice(pools), r.choice(pools)


EDGE_CASES = [
    # regex semantics (RE2)
    'temperature_celsius{env=~"((?i)PRO).*"}', 'temperature_celsius{env=~"(?i)prod|dev"}',
    'temperature_celsius{env=~"[[:upper:]]+"}', 'queue_depth{path=~"\\\\Q/api/v1\\\\E"}',
    'queue_depth{path=~"/api/(?!v1).*"}', 'queue_depth{path=~"(a"}', 'temperature_celsius{env=~".*"}',
    'temperature_celsius{env=~".+"}', 'temperature_celsius{env!~""}', '{__name__=~"temperature_.*"}',
    '{__name__=~"up|queue_depth", instance="a"}', 'up{instance=~"a)|(b"}',
    # counters: resets, a late start, a series that ended, too few points
    'rate(http_requests_total{instance="b"}[5m])', 'increase(http_requests_total{instance="b"}[10m])',
    'rate(http_requests_total{instance="c"}[10m])', 'increase(http_requests_total{job="batch"}[5m])',
    'rate(http_requests_total[15s])', 'rate(http_requests_total[16s])', 'count_over_time(up[1m])',
    'sum(rate(http_requests_total{code="500"}[5m])) / sum(rate(http_requests_total[5m]))',
    # gaps, NaN, lookback
    'temperature_celsius{instance="b"}', 'avg_over_time(temperature_celsius[10m])',
    'max_over_time(temperature_celsius{instance="d"}[10m])', 'min_over_time(temperature_celsius[10m])',
    'max(temperature_celsius)', 'min(temperature_celsius)', 'temperature_celsius > 30',
    'temperature_celsius == temperature_celsius', 'sum_over_time(temperature_celsius{instance="d"}[30m])',
    # histograms
    'histogram_quantile(0.9, rate(latency_seconds_bucket[5m]))',
    'histogram_quantile(0.5, sum by (le) (rate(latency_seconds_bucket[5m])))',
    'histogram_quantile(0.99, latency_seconds_bucket{instance="b"})',
    'histogram_quantile(0.25, dup_seconds_bucket)', 'histogram_quantile(0.75, rate(dup_seconds_bucket[5m]))',
    'histogram_quantile(0.5, {__name__=~"latency_seconds_bucket|size_bytes_bucket", instance="a"})',
    'histogram_quantile(0.5, rate({__name__=~"latency_seconds_bucket|size_bytes_bucket"}[5m]))',
    'histogram_quantile(NaN, latency_seconds_bucket)', 'histogram_quantile(0.5, up)',
    # name dropping and label-set clashes
    'rate({__name__=~"jobs_.*_total"}[5m])', '{__name__=~"jobs_.*_total"} * 2', '-{__name__=~"jobs_.*_total"}',
    'abs({__name__=~"jobs_.*_total"})', '{__name__=~"jobs_.*_total"} > 0', 'sum({__name__=~"jobs_.*_total"})',
    '{__name__=~"jobs_.*_total"} + 0 > 0',
    # matching
    'http_requests_total / on (instance) up', 'up / on (instance) http_requests_total',
    'http_requests_total / ignoring (code) http_requests_total', 'sum by (instance) (http_requests_total) / on (instance) up',
    'up == on (instance) up', 'up and on (instance) http_requests_total', 'http_requests_total unless on (instance) up == 0',
    'up or temperature_celsius', 'http_requests_total + ignoring (job) up',
    # arithmetic corner cases
    'up / 0', '-up / 0', '(up - 1) / 0', 'up % 0', '2 ^ 3 ^ 2', '-2 ^ 2', '1 / 0 - 1 / 0', 'up ^ NaN',
    '-temperature_celsius % 7', 'temperature_celsius % -7', '0x1f + 1e-3', 'scalar(up)', 'scalar(up{instance="a"})',
    'vector(1) + vector(2)', 'vector(NaN) == vector(NaN)', 'clamp_min(temperature_celsius, NaN)',
    'clamp_max(temperature_celsius, 10)', 'count(up) by (job)', 'count without (instance, code) (http_requests_total)',
    'avg by (job) (temperature_celsius)', 'sum without () (up)',
    # type errors and unsupported syntax that both must refuse
    'rate(up)', 'sum(up[5m])', '1 > 2', 'up[5m]', 'abs(1)', 'scalar(1)', 'foo{', '"text"',
]


def queries(count: int, seed: int = 14) -> list[str]:
    gen = QueryGen(seed)
    generated: list[str] = []
    seen = set(EDGE_CASES)
    while len(generated) < count:
        q = gen.vector() if gen.rng.random() < 0.9 else gen.scalar()
        if q not in seen:
            seen.add(q)
            generated.append(q)
    return EDGE_CASES + generated


# --- Prometheus < 2.51 --------------------------------------------------------------------------

def _extrapolated_before_2_51(points, end: float, range_: float, per_second: bool) -> float | None:  # type: ignore[no-untyped-def]
    """`extrapolatedRate` as in Prometheus 2.42 (Debian bookworm's package), before PR #13725.

    The zero point of a counter limited the extrapolation *before* the 1.1-step test, so
    a series starting inside the window could be extrapolated further than half a step.
    Upstream fixed that in 2.51; we follow the fixed version, and the differential test
    uses this only to confirm that a difference from an older Prometheus is this one.
    """
    from watchdog.promql.rangefuncs import _counter_delta

    if len(points) < 2:
        return None
    first_t, first_v = points[0]
    last_t = points[-1][0]
    sampled = last_t - first_t
    delta = _counter_delta(points)
    average = sampled / (len(points) - 1)
    to_start, to_end = first_t - (end - range_), end - last_t
    if delta > 0 and first_v >= 0:
        to_start = min(to_start, sampled * (first_v / delta))
    threshold = average * 1.1
    interval = sampled + (to_start if to_start < threshold else average / 2) + (to_end if to_end < threshold else average / 2)
    result = delta * (interval / sampled)
    return result / range_ if per_second else result


BEFORE_2_51 = {
    "rate": lambda points, end, range_: _extrapolated_before_2_51(points, end, range_, True),
    "increase": lambda points, end, range_: _extrapolated_before_2_51(points, end, range_, False),
}
