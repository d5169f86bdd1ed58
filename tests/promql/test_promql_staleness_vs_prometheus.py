"""Differential test for staleness: a real Prometheus scrapes a target whose series vanish.

OpenMetrics backfill cannot carry stale markers (see tests/promql/differential.py), so here
Prometheus writes its own: it scrapes a local target every second while a series disappears
and comes back, and finally the target fails. The samples and scrape times are read back
from Prometheus and replayed into a SeriesStore scrape by scrape (a failed scrape, `up` 0,
is `mark_stale`), and both evaluate the same queries between the scrapes.
"""

from __future__ import annotations

import math

import pytest
import requests

from tests.http_receiver import Receiver, Reply, Request
from tests.servers import start_prometheus
from watchdog.errors import PromQLError
from watchdog.promql import SeriesStore, evaluate, parse
from watchdog.samples import Sample

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SCRAPES = 16  # b is present in scrapes 0-3 and 8-11; from scrape 12 on the target fails
QUERIES = ["b", "a", '{job="model", __name__=~"a|b"}', "count_over_time(b[3s])", "max_over_time(b[10s])",
           "avg_over_time(a[4s])", "sum(b)", "sum(b) + sum(a)", "count(b) or vector(0)", "b > 2"]


def exposition(scrape: int) -> Reply:
    if scrape >= 12:
        return Reply(500, "down")
    lines = [f"a {scrape}"]
    if scrape < 4 or 8 <= scrape < 12:
        lines.append(f'b{{x="1"}} {2 + scrape % 3}')
    return Reply(200, "\n".join(lines) + "\n", {"Content-Type": "text/plain; version=0.0.4"})


def api(url: str, query: str, at: float) -> dict:
    body = requests.post(f"{url}/api/v1/query", data={"query": query, "time": f"{at:.3f}"}, timeout=10).json()
    assert body["status"] == "success", body
    return body["data"]


def _ms(t: float) -> int:
    return round(t * 1000)


def test_staleness_agrees_with_prometheus() -> None:
    scrapes: list[int] = []

    def serve(request: Request) -> Reply:
        scrapes.append(1)
        return exposition(len(scrapes) - 1)

    with Receiver(default=serve) as target:
        prometheus = start_prometheus([f"127.0.0.1:{target.port}"], scrape_interval="1s")
        try:
            target.wait_for(SCRAPES + 1, timeout=60)
            end = requests.get(f"{prometheus.url}/api/v1/query", params={"query": "time()"}, timeout=5).json()
            now = float(end["data"]["result"][0])
            store, instants = _replay(prometheus.url, now)
            assert len(instants) >= SCRAPES - 2
            mismatches = []
            for query in QUERIES:
                for at in instants:
                    real = {tuple(sorted(r["metric"].items())): float(r["value"][1])
                            for r in api(prometheus.url, query, at)["result"]}
                    try:
                        mine = {tuple(sorted(s.labels)): s.value for s in evaluate(parse(query), store, at)}
                    except PromQLError as exc:
                        mine = {(("error", str(exc)),): math.nan}
                    if mine.keys() != real.keys() or any(not math.isclose(mine[k], real[k], rel_tol=1e-9) for k in mine):
                        mismatches.append(f"{query} @ {at:.3f}: ours {mine}, prometheus {real}")
            assert mismatches == [], "\n".join(mismatches[:20])
        finally:
            prometheus.stop()


def _replay(url: str, now: float) -> tuple[SeriesStore, list[float]]:
    """Prometheus' own scrapes into a SeriesStore: (store, query instants between scrapes)."""
    up = api(url, 'up{job="model"}[5m]', now)["result"][0]["values"]
    series = api(url, '{job="model", __name__=~"a|b"}[5m]', now)["result"]
    points: dict[int, list[Sample]] = {}
    for s in series:
        labels = tuple(sorted(s["metric"].items()))
        for t, v in s["values"]:
            points.setdefault(_ms(t), []).append(Sample(labels, float(v)))
    store = SeriesStore()
    times = [_ms(t) for t, _ in up]
    for (t, value), ms in zip(up, times):
        if value == "1":
            store.append_scrape(ms / 1000, points.get(ms, []))
        else:
            store.mark_stale(ms / 1000)
    instants = [(a + (b - a) // 2) / 1000 for a, b in zip(times, times[1:])]
    down_from = next(ms for (t, v), ms in zip(up, times) if v == "0")
    return store, instants + [(times[-1] + 400) / 1000, (down_from + 200) / 1000]
