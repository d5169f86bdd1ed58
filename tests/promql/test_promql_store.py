"""The sample buffer we scrape into: lookback, staleness, pruning, selection."""

from __future__ import annotations

import time

from watchdog.promql import SeriesStore, evaluate, parse
from watchdog.promql.ast import Matcher
from watchdog.samples import NAME, Sample, labels_of

T0 = 1_700_000_000.0


def sample(name: str, value: float, **labels: str) -> Sample:
    return Sample(labels_of({NAME: name, **labels}), value)


def query(store: SeriesStore, q: str, now: float) -> dict[str, float]:
    """Result as {rendered labels: value} for compact assertions."""
    return {",".join(f"{k}={v}" for k, v in s.labels): s.value for s in evaluate(parse(q), store, now)}


def by_name(name: str) -> list[Matcher]:
    return [Matcher(NAME, "=", name)]


def test_instant_selector_sees_latest_value_not_future_ones() -> None:
    store = SeriesStore()
    store.append_scrape(T0, [sample("queue_depth", 3)])
    store.append_scrape(T0 + 15, [sample("queue_depth", 7)])
    store.append_scrape(T0 + 30, [sample("queue_depth", 9)])
    assert query(store, "queue_depth", T0 + 20) == {"__name__=queue_depth": 7.0}
    assert query(store, "queue_depth", T0 + 30) == {"__name__=queue_depth": 9.0}
    assert query(store, "queue_depth", T0 - 1) == {}


def test_instant_selector_looks_back_five_minutes_left_open() -> None:
    store = SeriesStore()
    store.append_scrape(T0, [sample("up", 1)])
    assert query(store, "up", T0 + 299) == {"__name__=up": 1.0}
    # Prometheus 3: the lookback window is (now - 5m, now], so exactly 5m old is gone.
    assert query(store, "up", T0 + 300) == {}
    longer = SeriesStore(lookback=600)
    longer.append_scrape(T0, [sample("up", 1)])
    assert longer.instant(by_name("up"), T0 + 400) == [sample("up", 1)]


def test_series_missing_from_a_scrape_goes_stale_at_once() -> None:
    # A pod disappears: its series must vanish now, not linger for the 5 minute lookback.
    store = SeriesStore()
    store.append_scrape(T0, [sample("up", 1, pod="a"), sample("up", 1, pod="b")])
    store.append_scrape(T0 + 10, [sample("up", 1, pod="a")])
    assert query(store, "up", T0 + 10) == {"__name__=up,pod=a": 1.0}
    # Before the marker the old value is still the latest.
    assert query(store, "up", T0 + 5) == {"__name__=up,pod=a": 1.0, "__name__=up,pod=b": 1.0}


def test_failed_scrape_marks_everything_of_that_target_stale() -> None:
    store = SeriesStore()
    store.append_scrape(T0, [sample("requests_total", 100, instance="model-a")], target="model-a")
    store.append_scrape(T0, [sample("requests_total", 5, instance="model-b")], target="model-b")
    store.mark_stale(T0 + 15, target="model-a")
    # model-a is down: its series are absent; model-b is untouched.
    assert store.instant(by_name("requests_total"), T0 + 15) == [sample("requests_total", 5, instance="model-b")]


def test_range_selector_still_uses_points_before_the_stale_marker() -> None:
    store = SeriesStore()
    for i in range(4):  # counter 0, 10, 20, 30 at T0 .. T0+30
        store.append_scrape(T0 + 10 * i, [sample("c_total", 10 * i)])
    store.mark_stale(T0 + 40)
    assert query(store, "c_total", T0 + 45) == {}
    # The window (T0-15, T0+45] still holds 4 real points; the marker is not a point.
    assert query(store, "count_over_time(c_total[1m])", T0 + 45) == {"": 4.0}
    assert query(store, "max_over_time(c_total[1m])", T0 + 45) == {"": 30.0}


def test_series_comes_back_after_staleness() -> None:
    store = SeriesStore()
    store.append_scrape(T0, [sample("up", 1)])
    store.mark_stale(T0 + 10)
    store.append_scrape(T0 + 20, [sample("up", 1)])
    assert query(store, "up", T0 + 20) == {"__name__=up": 1.0}


def test_out_of_order_and_duplicate_timestamps_are_ignored() -> None:
    store = SeriesStore()
    store.append_scrape(T0 + 10, [sample("x", 1)])
    store.append_scrape(T0 + 10, [sample("x", 2)])
    store.append_scrape(T0 + 5, [sample("x", 3)])
    assert store.window(by_name("x"), T0, T0 + 20) == [(labels_of({NAME: "x"}), [(T0 + 10, 1.0)])]


def test_range_window_is_left_open_right_closed() -> None:
    store = SeriesStore()
    for i in range(5):
        store.append_scrape(T0 + 15 * i, [sample("x", i)])
    (_, points), = store.window(by_name("x"), T0 + 15, T0 + 45)
    assert [t - T0 for t, _ in points] == [30, 45]


def test_prune_forgets_old_points_but_keeps_the_lookback() -> None:
    store = SeriesStore()
    for i in range(100):
        store.append_scrape(T0 + 10 * i, [sample("x", i)])
    now = T0 + 990
    store.prune(keep_seconds=60, now=now)  # lookback (300 s) wins over 60 s
    (_, points), = store.window(by_name("x"), 0, now)
    assert points[0][0] == now - 300
    store.prune(keep_seconds=600, now=now)
    assert len(store) == 1


def test_prune_drops_series_that_ended() -> None:
    store = SeriesStore()
    store.append_scrape(T0, [sample("x", 1, pod="old"), sample("x", 1, pod="new")])
    store.append_scrape(T0 + 10, [sample("x", 1, pod="new")])
    store.append_scrape(T0 + 1000, [sample("x", 1, pod="new")])
    store.prune(keep_seconds=300, now=T0 + 1000)
    assert len(store) == 1  # only the marker of pod="old" was left, so the series is gone
    assert query(store, "x", T0 + 1000) == {"__name__=x,pod=new": 1.0}


def test_matchers_select_like_prometheus() -> None:
    store = SeriesStore()
    store.append_scrape(
        T0,
        [
            sample("http_requests_total", 1, code="200", job="api"),
            sample("http_requests_total", 2, code="500", job="api"),
            sample("http_requests_total", 3, code="1500", job="batch"),
            sample("process_cpu_seconds_total", 4, job="api"),
        ],
    )

    def values(q: str) -> list[float]:
        return sorted(query(store, q, T0).values())

    assert values('http_requests_total{code=~"5.."}') == [2.0]  # anchored: "1500" does not match
    assert values('http_requests_total{code!~"2..|5.."}') == [3.0]
    assert values('{job="api"}') == [1.0, 2.0, 4.0]
    assert values('{__name__=~"http_.*", job!="api"}') == [3.0]
    assert values('http_requests_total{missing=""}') == [1.0, 2.0, 3.0]  # absent label matches ""


def test_a_busy_store_stays_fast() -> None:
    # 2000 series scraped every 15 s for 30 minutes, then a typical error-ratio rule.
    store = SeriesStore()
    started = time.perf_counter()
    for step in range(120):
        store.append_scrape(
            T0 + 15 * step,
            [sample("requests_total", step * (i % 7 + 1), pod=f"p{i}", status=str(200 + i % 3)) for i in range(2000)],
        )
    now = T0 + 15 * 119
    result = evaluate(parse('sum(rate(requests_total{status="202"}[5m])) / sum(rate(requests_total[5m]))'), store, now)
    assert len(result) == 1
    store.prune(keep_seconds=3600, now=now)
    assert time.perf_counter() - started < 10
