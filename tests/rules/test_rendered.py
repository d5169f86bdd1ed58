"""The engine's per-target `Rendered` cache against rendering each time (`fetch_rendered`
without a cache): the same texts, errors and bound parameters reach the fetch, each query
rendered once."""

from __future__ import annotations

import random

from watchdog.errors import WatchdogError
from watchdog.rules.verdict import Rendered, Situation, fetch_rendered
from watchdog.samples import QueryResult

QUERIES = ['up{instance="{{instance}}"}', "errors{v=\"{{version}}\"}", "select 1 where v = :version",
           'x{a="{{unknown}}"}', "plain", 'p{prev="{{previous_version}}"}']


def test_the_cache_gives_the_fetch_what_rendering_each_time_gives() -> None:
    rng = random.Random(5)
    for _ in range(100):
        variables = {"instance": rng.choice(["a:1", 'b"2']), "target": rng.choice(["m1", ""]),
                     "version": rng.choice([None, "v1", "bad version!"]), "previous_version": rng.choice([None, "v0"])}
        asked: list[tuple[str, str, float, object]] = []

        def fetch(source, query, at, params=None):  # type: ignore[no-untyped-def]
            asked.append((source, query, at, params))
            return QueryResult([])

        rendered = Rendered.of(variables)
        with_cache, each_time = Situation(fetch, 1.0, variables, rendered=rendered), Situation(fetch, 1.0, variables)
        for query in rng.choices(QUERIES, k=8):
            got = fetch_rendered(with_cache, "s", query, 1.0)
            mine = asked[-1] if not isinstance(got, WatchdogError) else str(got)
            expected = fetch_rendered(each_time, "s", query, 1.0)
            theirs = asked[-1] if not isinstance(expected, WatchdogError) else str(expected)
            assert mine == theirs, (query, variables)
        assert set(rendered.texts) <= set(QUERIES)  # one entry per query, reused


def test_memo_answers_as_the_function_and_stays_bounded() -> None:
    from watchdog.rules.verdict import memo, shown_labels
    from watchdog.samples import format_labels

    calls: list[tuple] = []  # type: ignore[type-arg]

    def formatted(labels):  # type: ignore[no-untyped-def]
        calls.append(labels)
        return format_labels(labels)

    cached = memo(formatted, limit=4)
    sets = [(("a", str(i)),) for i in range(6)]
    for labels in sets + sets[:2] + sets:
        assert cached(labels) == format_labels(labels)
    assert len(cached.cache) <= 4  # type: ignore[attr-defined]
    assert cached(sets[5]) is cached(sets[5]) and len(calls) < 3 * len(sets)  # answered from the dict when held
    assert shown_labels((("job", "x"),)) == format_labels((("job", "x"),))
