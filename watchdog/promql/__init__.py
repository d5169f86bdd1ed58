"""A PromQL subset, evaluated over samples we scraped ourselves.

    expr = parse('sum(rate(requests_total{status="error"}[1m])) / sum(rate(requests_total[1m]))')
    store = SeriesStore()
    store.append_scrape(t, samples)            # every scrape; staleness handled
    evaluate(expr, store, now)                 # -> list[Sample], instant-query semantics

Supported (everything else is rejected with a PromQLError that names it):

- numbers: `1`, `0.5`, `1e-3`, `0x1f`, `NaN`, `Inf`; strings only as label matcher values
- selectors: `name`, `name{a="x", b!="y", c=~"re", d!~"re"}`, `{__name__="x"}`, `{job="x"}`;
  at least one matcher must not match the empty string; regexes are RE2 (google-re2), fully
  anchored, `.` matches newline as in Prometheus 3
- range selectors `x[5m]` with durations `500ms 30s 1m30s 1h 1d 1w 1y`, only as function arguments
- functions: rate, increase, avg_over_time, max_over_time, min_over_time, sum_over_time,
  count_over_time, histogram_quantile, abs, clamp_min, clamp_max, vector, scalar
- aggregations: sum, avg, min, max, count, with `by (...)` / `without (...)` before or after
- operators by precedence: `^` (right-assoc) > unary `-`/`+` > `* / %` > `+ -` >
  `== != > < >= <=` (filter, or 0/1 with `bool`) > `and unless` > `or`;
  vector/vector matching is one-to-one on equal labels (ignoring `__name__`), or with
  `on (...)` / `ignoring (...)`
- not supported: offset, `@`, subqueries, group_left/group_right, atan2, other functions and
  aggregations (topk, quantile, ...)

The instant selector looks back 5 minutes (SeriesStore's `lookback`) and honours
stale markers; rate/increase follow Prometheus' extrapolation exactly.
"""

from watchdog.errors import PromQLError

from .ast import Expr
from .evaluator import evaluate
from .parser import parse
from .store import DEFAULT_LOOKBACK, SeriesStore

__all__ = ["DEFAULT_LOOKBACK", "Expr", "PromQLError", "SeriesStore", "evaluate", "parse"]
