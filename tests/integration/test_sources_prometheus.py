"""A real Prometheus scraping a simulated model server: the same rule gives the same verdict
through the `prometheus` source as through our own `scrape` source, healthy and degraded."""

from __future__ import annotations

import time
from typing import Iterator

import pytest

from tests.servers import PrometheusServer, start_prometheus
from watchdog.config.schema import Rule
from watchdog.demo.model_server import Mode, SimulatedModelServer
from watchdog.errors import QueryError, WatchdogError
from watchdog.rules.evaluate import Outcome, Situation, Verdict, judge_rule
from watchdog.sources.base import QueryResult, Source
from watchdog.sources.prometheus import PrometheusOptions, PrometheusSource
from watchdog.sources.scrape import ScrapeOptions, ScrapeSource
from watchdog.sources.runner import invoke

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

RULE = Rule(name="error-rate", source="model",
            query='sum(rate(requests_total{status="error"}[5s])) / sum(rate(requests_total[5s]))', above=0.05)


@pytest.fixture(scope="module")
def model() -> Iterator[SimulatedModelServer]:
    with SimulatedModelServer(version="v7") as server:
        yield server


@pytest.fixture(scope="module")
def prometheus(model: SimulatedModelServer) -> Iterator[PrometheusServer]:
    server = start_prometheus([f"127.0.0.1:{model.port}"], "1s")
    yield server
    server.stop()


def verdict(source: Source, now: float) -> Verdict:
    def fetch(name: str, query: str, at: float, params: dict[str, str] | None = None) -> QueryResult | WatchdogError:
        try:
            return invoke(source, query, at, params)
        except WatchdogError as exc:
            return exc

    [v] = judge_rule(RULE, Situation(fetch=fetch, now=now, variables={}))
    return v


def both_until(scrape: ScrapeSource, prom: PrometheusSource, expected: Outcome, near: float,
               timeout: float) -> tuple[Verdict, Verdict]:
    """Scrape every second (as the daemon would) until both sources judge `expected` on a
    window that holds only the current traffic profile (value near `near`)."""
    deadline = time.monotonic() + timeout
    seen: list[tuple[str, float | None, str, float | None]] = []
    while time.monotonic() < deadline:
        now = time.time()
        scrape.begin_tick(now)
        ours, theirs = verdict(scrape, now), verdict(prom, now)
        seen.append((ours.outcome.value, ours.value, theirs.outcome.value, theirs.value))
        if all(v.outcome is expected and v.value is not None and abs(v.value - near) < 0.02 for v in (ours, theirs)):
            return ours, theirs
        time.sleep(1.0)
    raise AssertionError(f"not both {expected.value} near {near} within {timeout:g}s; "
                         f"(scrape, value, prometheus, value): {seen[-10:]}")


def test_the_same_rule_gives_the_same_verdict_through_prometheus_and_scrape(
        model: SimulatedModelServer, prometheus: PrometheusServer) -> None:
    scrape = ScrapeSource("model", ScrapeOptions(url=model.url + "/metrics", timeout=2.0))
    prom = PrometheusSource("model", PrometheusOptions(url=prometheus.url, timeout=4.5))

    # Different windows and scrape instants make the values differ a little; the verdicts match.
    both_until(scrape, prom, Outcome.OK, near=0.01, timeout=45)

    model.set_mode(Mode.DEGRADED)
    both_until(scrape, prom, Outcome.BREACH, near=0.20, timeout=30)

    # Labels come through as Prometheus adds them, and full PromQL works beyond our subset.
    now = time.time()
    [info] = prom.query("model_info", now).samples
    assert info.label("version") == "v7" and info.label("instance") == f"127.0.0.1:{model.port}"
    [top] = prom.query('topk(1, rate(requests_total[5s] offset 1s))', now).samples
    assert top.label("status") == "ok"
    with pytest.raises(QueryError, match="Prometheus rejected the query"):
        prom.query("sum(rate(requests_total[5s])", now)
    scrape.close()
    prom.close()
