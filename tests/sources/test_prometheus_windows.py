"""The prometheus source's `window_of` parses each distinct query once (fleet rules repeat one
query for thousands of targets) and answers as the parser does."""

from __future__ import annotations

from watchdog.promql import parser as promql_parser
from watchdog.sources import prometheus
from watchdog.sources.prometheus import PrometheusOptions, PrometheusSource

QUERIES = [
    'sum by (instance) (rate(requests_total{status="error"}[1m])) / sum by (instance) (rate(requests_total[1m]))',
    "histogram_quantile(0.99, sum by (instance, le) (rate(request_latency_seconds_bucket[5m])))",
    "avg_over_time(model_accuracy[90s])",
    "up",
    "topk(3, rate(x[2m] offset 10m))",  # outside our subset: scanned from the text
    "max_over_time(rate(x[1m])[10m:30s])",
]


def test_each_distinct_query_is_parsed_once_and_answers_as_the_parser(monkeypatch) -> None:
    src = PrometheusSource("p", PrometheusOptions(url="http://127.0.0.1:9"))  # type: ignore[call-arg]
    expected = {q: prometheus._window_of(q) for q in QUERIES}
    parsed: list[str] = []
    real = promql_parser.parse

    def counting(text: str):  # type: ignore[no-untyped-def]
        parsed.append(text)
        return real(text)

    monkeypatch.setattr(promql_parser, "parse", counting)
    monkeypatch.setattr("watchdog.promql.parse", counting)
    answers = [src.window_of(q) for _ in range(50) for q in QUERIES]
    assert answers == [expected[q] for _ in range(50) for q in QUERIES]
    assert sorted(parsed) == sorted(QUERIES)  # 300 look-ups, 6 parses
