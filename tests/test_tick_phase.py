"""`align_ticks`: the tick grid shifted to just after Prometheus scrapes the targets."""

from __future__ import annotations

import json
import textwrap
import threading
from datetime import datetime, timezone

import pytest

from tests.config.test_loader import GOOD_CONFIG, problems, write
from tests.http_receiver import Receiver, Reply
from watchdog.config.loader import load
from watchdog.config.schema import AlignTicks
from watchdog.clock import FakeClock
from watchdog.runtime.phase import MARGIN, PhaseFollower, offset_after, rfc3339_seconds, scrape_ends
from watchdog.runtime.scheduler import GridTrigger, TickScheduler
from watchdog.sources.prometheus import PrometheusOptions, PrometheusSource

pytestmark = pytest.mark.timeout(30)

T0 = 1_764_000_000.0


def stamp(ts: float) -> str:
    """As Prometheus writes lastScrape: RFC 3339 with nanoseconds."""
    whole = int(ts)
    return datetime.fromtimestamp(whole, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{round((ts - whole) * 1e9):09d}Z"


def target(scraped: float, took: float = 0.004, every: str = "1s", job: str = "model") -> dict[str, object]:
    return {"labels": {"job": job, "instance": "127.0.0.1:1"}, "scrapeInterval": every, "health": "up",
            "lastScrape": stamp(scraped), "lastScrapeDuration": took}


def targets_doc(*targets: dict[str, object]) -> dict[str, object]:
    return {"status": "success", "data": {"activeTargets": list(targets), "droppedTargets": []}}


def test_lastscrape_is_read_to_the_nanosecond_and_the_zero_time_is_never_scraped() -> None:
    assert rfc3339_seconds("2026-12-03T13:40:01.123456789Z") == pytest.approx(
        datetime(2026, 12, 3, 13, 40, 1, tzinfo=timezone.utc).timestamp() + 0.123456789, abs=1e-6)
    assert rfc3339_seconds("2026-12-03T14:40:01.5+01:00") == pytest.approx(
        datetime(2026, 12, 3, 13, 40, 1, 500000, tzinfo=timezone.utc).timestamp())
    assert rfc3339_seconds("0001-01-01T00:00:00Z") is None
    assert rfc3339_seconds("yesterday") is None


def test_the_ticks_fall_a_margin_after_the_scrape_ends() -> None:
    ends = scrape_ends(targets_doc(target(T0 + 3.731, took=0.012)), 1.0)
    offset, _ = offset_after(ends, 1.0)
    assert offset == pytest.approx(0.731 + 0.012 + MARGIN, abs=1e-3)


def test_a_cluster_across_the_interval_boundary_ends_at_its_last_scrape() -> None:
    ends = [T0 + 0.95, T0 + 1.02, T0 + 2.05]  # phases 0.95, 0.02, 0.05: one cluster over the wrap
    offset, _ = offset_after(ends, 1.0)
    assert offset == pytest.approx(0.05 + MARGIN, abs=1e-3)


def test_scrapes_spread_over_the_interval_leave_the_grid_alone() -> None:
    offset, why = offset_after([T0 + 0.1, T0 + 0.45, T0 + 0.8], 1.0)
    assert offset is None and "spread" in why
    assert offset_after([], 1.0)[0] is None


def test_only_targets_scraped_at_our_interval_and_of_the_job_count() -> None:
    doc = targets_doc(target(T0 + 0.3), target(T0 + 0.7, every="15s"), target(T0 + 0.9, job="node"),
                      {**target(T0), "lastScrape": "0001-01-01T00:00:00Z"}, {"labels": "garbage"})
    assert scrape_ends(doc, 1.0, job="model") == [pytest.approx(T0 + 0.304)]
    assert len(scrape_ends(doc, 1.0)) == 2
    assert scrape_ends({"data": None}, 1.0) == [] and scrape_ends([], 1.0) == []


def follower(receiver: Receiver, **kw: float) -> PhaseFollower:
    prom = PrometheusSource("prom", PrometheusOptions(url=receiver.url(""), timeout=2.0))  # type: ignore[call-arg]
    return PhaseFollower(AlignTicks(source="prom"), lambda: {"prom": prom}, 1.0, **kw)


def test_the_daemon_reads_the_phase_from_prometheus_targets_api(receiver: Receiver) -> None:
    receiver.script(Reply(200, targets_doc(target(T0 + 0.42)), {"Content-Type": "application/json"}))
    assert follower(receiver).measure() == pytest.approx(0.424 + MARGIN, abs=1e-3)
    [request] = receiver.requests
    assert request.path == "/api/v1/targets?state=active"


def test_without_an_answer_the_ticks_stay_where_they_are(receiver: Receiver) -> None:
    receiver.script(503, Reply(200, b"not json"), Reply(200, targets_doc(), {"Content-Type": "application/json"}))
    f = follower(receiver)
    assert [f.measure(), f.measure(), f.measure()] == [None, None, None]


def test_the_follower_retries_until_prometheus_has_scraped_then_shifts_the_grid(receiver: Receiver) -> None:
    not_yet = {**target(T0), "lastScrape": "0001-01-01T00:00:00Z"}
    receiver.script(503, Reply(200, targets_doc(not_yet), {"Content-Type": "application/json"}),
                    Reply(200, targets_doc(target(T0 + 0.6)), {"Content-Type": "application/json"}),
                    Reply(200, targets_doc(target(T0 + 0.2)), {"Content-Type": "application/json"}))
    f, clock, stop, shifts = follower(receiver, every=600.0, retry=5.0), FakeClock(T0), threading.Event(), []

    def shift(offset: float) -> None:
        shifts.append((round(clock.now() - T0, 3), offset))
        if len(shifts) == 2:
            stop.set()

    f.follow(shift, stop, clock)
    # at once (503), retried after 5 s (not scraped yet) and 10 s (found), then after 600 s (a new phase)
    assert shifts == [(10.0, pytest.approx(0.654, abs=1e-3)), (610.0, pytest.approx(0.254, abs=1e-3))]


def test_a_shifted_grid_takes_over_at_its_first_point_after_now_never_two_ticks_for_one_slot() -> None:
    runs: list[float] = []
    scheduler = TickScheduler(1.0, runs.append)
    scheduler.shift(0.85)  # found while the tick at +1 runs (it ends at +1.02)
    fire, slot = scheduler.trigger.next_fire(None, T0 + 1.02)
    assert (round(fire - T0, 3), round(slot - T0, 3)) == (1.85, 1.85)  # the first point of the new grid after 1
    assert [round(f - T0, 3) for f, _ in fires_from(scheduler.trigger, fire, 3)] == [2.85, 3.85, 4.85]

    scheduler = TickScheduler(1.0, runs.append, offset=0.9)
    scheduler.shift(0.1)  # back to +0.1 during the tick at +1.9: 2.1 (not 1.1, which is before the last tick)
    fire, _ = scheduler.trigger.next_fire(None, T0 + 1.92)
    assert round(fire - T0, 3) == 2.1
    scheduler.shift(0.1 + 1e-4)  # the same phase again (measured anew): the grid stays
    assert scheduler.offset == pytest.approx(0.1)


def fires_from(trigger: GridTrigger, previous: float, count: int) -> list[tuple[float, float]]:
    out = []
    for _ in range(count):
        previous, slot = trigger.next_fire(previous, previous)
        out.append((previous, slot))
    return out


def test_align_ticks_loads_and_must_name_a_prometheus_source(tmp_path) -> None:
    config = GOOD_CONFIG + textwrap.dedent("""\
        align_ticks: {source: model}
        """)
    assert any("align_ticks: 'model' is not a prometheus source" in p for p in problems(write(tmp_path, config)))
    config = GOOD_CONFIG.replace("sources:\n", "sources:\n  prom: {type: prometheus, url: 'http://127.0.0.1:9090'}\n") \
        + "align_ticks: {source: prom, job: model}\n"
    loaded = load(write(tmp_path, config), environ={"TEST_ROLLBACK_TOKEN": "s3cr3t-token"})
    assert loaded.config.align_ticks == AlignTicks(source="prom", job="model")
    assert json.dumps(loaded.config.align_ticks.job) == '"model"'


def test_a_prometheus_with_no_phase_to_find_is_asked_less_and_less_often() -> None:
    """Scrapes spread over the interval (or none at ours): no phase, ever. The follower asked
    /api/v1/targets (a large answer on a large Prometheus, decoded whole) every 5 s for ever;
    after a minute of quick retries it now backs off to `every`."""
    class Prom:
        calls = 0

        def targets_api(self):  # type: ignore[no-untyped-def]
            Prom.calls += 1
            from watchdog.http.fetch import Fetched
            spread = targets_doc(*(target(T0 + k / 4) for k in range(4)))
            return Fetched(200, {"Content-Type": "application/json"}, json.dumps(spread).encode())

    f = PhaseFollower(AlignTicks(source="prom"), lambda: {"prom": Prom()}, 1.0, every=600.0, retry=5.0)
    waits: list[float] = []

    class Clock(FakeClock):
        def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
            waits.append(seconds)
            return len(waits) >= 30

    f.follow(lambda offset: None, threading.Event(), Clock(T0))
    assert waits[:6] == [5.0] * 6 and waits[-1] == 600.0 and sum(waits) > 3 * 3600
    assert Prom.calls == 30


def test_a_targets_answer_with_too_many_values_is_refused_before_it_is_decoded(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """json.loads of a 32 MiB answer (max_body) peaks near 400 MB: the answer is counted first,
    as the query API's are (sources/jsonlimits.py)."""
    from watchdog.http.fetch import Fetched
    from watchdog.runtime import phase

    monkeypatch.setattr(phase, "TARGETS_VALUE_LIMIT", 100_000)
    many = targets_doc(*(target(T0 + 0.42) for _ in range(phase.TARGETS_VALUE_LIMIT // 10)))
    body = json.dumps(many).encode()
    assert len(body) > 1 << 20  # counted (ijson) before json.loads builds anything

    class Prom:
        def targets_api(self):  # type: ignore[no-untyped-def]
            return Fetched(200, {"Content-Type": "application/json"}, body)

    assert PhaseFollower(AlignTicks(source="prom"), lambda: {"prom": Prom()}, 1.0).measure() is None
