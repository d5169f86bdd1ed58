"""The scrape source with several targets: instance labels, `up`, per-target staleness."""

from __future__ import annotations

import time
from typing import Iterator

import pytest

from tests.http_receiver import Receiver, Reply
from watchdog.demo.model_server import Mode, SimulatedModelServer
from watchdog.errors import SourceError
from watchdog.sources.scrape import PartialScrapeError, ScrapeOptions, ScrapeSource

pytestmark = pytest.mark.timeout(60)

T0 = 1_700_000_000.0


@pytest.fixture
def models() -> Iterator[tuple[SimulatedModelServer, SimulatedModelServer]]:
    with SimulatedModelServer(version="v7") as a, SimulatedModelServer(version="v8") as b:
        yield a, b


def instance(model: SimulatedModelServer) -> str:
    return f"127.0.0.1:{model.port}"


def values(source: ScrapeSource, query: str, now: float) -> dict[str | None, float]:
    return {s.label("instance"): s.value for s in source.query(query, now).samples}


def test_each_target_gets_an_instance_label_and_an_up_series(models: tuple[SimulatedModelServer, ...]) -> None:
    a, b = models
    source = ScrapeSource("fleet", ScrapeOptions(urls=[a.url + "/metrics", b.url + "/metrics"], timeout=2.0))

    assert source.begin_tick(T0) is None

    assert values(source, "up", T0) == {instance(a): 1.0, instance(b): 1.0}
    versions = {s.label("instance"): s.label("version") for s in source.query("model_info", T0).samples}
    assert versions == {instance(a): "v7", instance(b): "v8"}
    assert set(values(source, 'sum by (instance) (requests_total{status="ok"})', T0)) == {instance(a), instance(b)}


def test_one_target_down_goes_stale_and_reports_up_0_while_the_other_still_answers(
        models: tuple[SimulatedModelServer, ...]) -> None:
    a, b = models
    source = ScrapeSource("fleet", ScrapeOptions(urls=[a.url + "/metrics", b.url + "/metrics"], timeout=2.0))
    assert source.begin_tick(T0) is None

    b.set_mode(Mode.DOWN)
    error = source.begin_tick(T0 + 15)

    assert isinstance(error, PartialScrapeError) and error.partial
    assert f"1 of 2 targets failed: {instance(b)}:" in str(error)
    assert values(source, "up", T0 + 15) == {instance(a): 1.0, instance(b): 0.0}
    assert set(values(source, "model_accuracy", T0 + 15)) == {instance(a)}  # b's series are stale at once
    health = source.health()
    assert not health.up
    assert health.details["targets"][instance(a)]["up"] and not health.details["targets"][instance(b)]["up"]

    b.set_mode(Mode.HEALTHY)
    assert source.begin_tick(T0 + 30) is None
    assert set(values(source, "model_accuracy", T0 + 30)) == {instance(a), instance(b)}


def test_all_targets_down_is_a_plain_source_error(models: tuple[SimulatedModelServer, ...]) -> None:
    a, b = models
    a.set_mode(Mode.HTML)
    b.set_mode(Mode.HTML)
    source = ScrapeSource("fleet", ScrapeOptions(urls=[a.url + "/metrics", b.url + "/metrics"], timeout=2.0))

    error = source.begin_tick(T0)

    assert error is not None and not isinstance(error, PartialScrapeError)
    assert "2 of 2 targets failed" in str(error) and error.kind == "http_5xx"
    assert values(source, "up", T0) == {instance(a): 0.0, instance(b): 0.0}


def test_targets_are_scraped_concurrently() -> None:
    with Receiver(default=Reply(200, "x 1\n", {"Content-Type": "text/plain; version=0.0.4"}, delay=1.0)) as r1, \
         Receiver(default=Reply(200, "x 2\n", {"Content-Type": "text/plain; version=0.0.4"}, delay=1.0)) as r2:
        source = ScrapeSource("fleet", ScrapeOptions(urls=[r1.url("/metrics"), r2.url("/metrics")], timeout=5.0))
        started = time.monotonic()
        assert source.begin_tick(T0) is None
        elapsed = time.monotonic() - started
        source.close()
    assert elapsed < 1.8  # one delay, not two (2s)
    assert sorted(values(source, "x", T0).values()) == [1.0, 2.0]


def test_a_target_instance_label_is_kept_as_exported_instance() -> None:
    body = 'jobs_total{instance="worker-1"} 3\n'
    with Receiver(default=Reply(200, body, {"Content-Type": "text/plain; version=0.0.4"})) as r1, \
         Receiver(default=Reply(200, body, {"Content-Type": "text/plain; version=0.0.4"})) as r2:
        source = ScrapeSource("fleet", ScrapeOptions(urls=[r1.url("/metrics"), r2.url("/metrics")]))
        source.begin_tick(T0)
        source.close()
    [first, _] = sorted(source.query("jobs_total", T0).samples, key=lambda s: s.labels)
    assert first.label("exported_instance") == "worker-1"
    assert first.label("instance") in (f"127.0.0.1:{r1.port}", f"127.0.0.1:{r2.port}")


def test_a_single_url_keeps_its_labels_and_gets_an_unlabelled_up(models: tuple[SimulatedModelServer, ...]) -> None:
    a, _ = models
    source = ScrapeSource("model", ScrapeOptions(url=a.url + "/metrics"))
    source.begin_tick(T0)

    [info] = source.query("model_info", T0).samples
    assert info.label("instance") is None
    assert [(s.labels, s.value) for s in source.query("up", T0).samples] == [((("__name__", "up"),), 1.0)]

    a.set_mode(Mode.DOWN)
    error = source.begin_tick(T0 + 15)
    assert isinstance(error, SourceError) and not isinstance(error, PartialScrapeError)
    assert source.query("model_info", T0 + 15).samples == []
    assert source.query("up", T0 + 15).samples[0].value == 0.0


@pytest.mark.parametrize("options, message", [
    ({}, "exactly one of url"),
    ({"url": "http://a:1/metrics", "urls": ["http://b:1/metrics"]}, "exactly one of url"),
    ({"urls": ["http://a:1/metrics", "http://a:1/other"]}, "the same instance a:1"),
    ({"urls": ["ftp://a/metrics"]}, "http:// or https://"),
])
def test_target_lists_are_checked_when_the_config_loads(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScrapeSource("fleet", ScrapeOptions(**options))  # type: ignore[arg-type]


@pytest.mark.parametrize("mode, kind, words", [
    (Mode.DOWN, "connection", "cannot connect"),
    (Mode.HTML, "http_5xx", "answered HTTP 503"),
    (Mode.GARBAGE, "parse", "not the Prometheus exposition format"),
    (Mode.SLOW, "timeout", "timed out after 0.5s"),
])
def test_a_misbehaving_target_is_a_clear_source_error(models: tuple[SimulatedModelServer, ...], mode: Mode,
                                                      kind: str, words: str) -> None:
    a, _ = models
    a.set_mode(mode)
    source = ScrapeSource("model", ScrapeOptions(url=a.url + "/metrics", timeout=0.5))

    error = source.begin_tick(T0)

    assert error is not None and error.kind == kind
    assert words in str(error) and f"{a.url}/metrics" in str(error)
    assert source.query("model_info", T0).samples == []
    assert words in source.query("model_info", T0).note


def test_series_with_instance_and_exported_instance_stay_apart() -> None:
    """A federated page carries both labels: the target's `instance` moves to
    `exported_exported_instance` (as Prometheus resolves such a conflict), it does not overwrite
    the page's `exported_instance`. Before, two series collapsed into one label set and one of
    them was lost: sum(jobs_total) was 3 where the page says 3 + 4."""
    body = ('jobs_total{instance="a",exported_instance="x"} 3\n'
            'jobs_total{instance="a",exported_instance="y"} 4\n')
    with Receiver(default=Reply(200, body, {"Content-Type": "text/plain; version=0.0.4"})) as r1, \
         Receiver(default=Reply(200, body, {"Content-Type": "text/plain; version=0.0.4"})) as r2:
        source = ScrapeSource("fleet", ScrapeOptions(urls=[r1.url("/metrics"), r2.url("/metrics")]))
        source.begin_tick(T0)
        source.close()
    ours = f"127.0.0.1:{r1.port}"
    assert values(source, f'sum(jobs_total{{instance="{ours}"}})', T0) == {None: 7.0}
    found = {(s.label("exported_instance"), s.label("exported_exported_instance"))
             for s in source.query(f'jobs_total{{instance="{ours}"}}', T0).samples}
    assert found == {("x", "a"), ("y", "a")}


@pytest.mark.parametrize("scrape_interval", [None, 15.0])
def test_a_clock_stepped_back_does_not_leave_the_source_without_data_for_the_jump(scrape_interval) -> None:  # type: ignore[no-untyped-def]
    """The wall clock stepped back an hour (it was an hour fast). The samples held lie in the
    new clock's future: every new one was dropped as out of order (or, with scrape_interval, not
    even scraped) and every query answered nothing for an hour, so every rule on the source
    went to no data (on_no_data: alert, or rollback). The source starts its samples afresh."""
    body = "jobs_total 3\n"
    with Receiver(default=Reply(200, body, {"Content-Type": "text/plain; version=0.0.4"})) as r:
        source = ScrapeSource("model", ScrapeOptions(url=r.url("/metrics"), scrape_interval=scrape_interval))
        for k in range(3):
            assert source.begin_tick(T0 + 15 * k) is None
        assert [s.value for s in source.query("jobs_total", T0 + 30).samples] == [3.0]
        stepped = T0 + 30 - 3600
        assert source.begin_tick(stepped) is None
        assert [s.value for s in source.query("jobs_total", stepped).samples] == [3.0]
        assert source.query("rate(jobs_total[1m])", stepped).warming_up  # windows fill again from the step
        source.close()
