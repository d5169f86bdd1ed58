"""SourceRunner: once per tick, concurrent within limits, timeouts, retries, circuit breaker."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Iterator

import pytest
from prometheus_client import generate_latest

from watchdog.clock import FakeClock, StepBack
from watchdog.errors import QueryError, SourceError
from watchdog.metrics import DaemonMetrics
from watchdog.sources.base import QueryResult
from watchdog.sources.runner import RunnerSettings, SourceRunner
from watchdog.sources.scrape import PartialScrapeError
from watchdog.testing import FakeSource

pytestmark = pytest.mark.timeout(30)

NOW = 1_700_000_000.0


@dataclass(frozen=True)
class RetryOptions:
    retries: int = 2
    backoff: float = 0.01


class ParallelSource(FakeSource):
    max_concurrency = 2


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # lets abandoned slow calls end


def make_runner(*sources: FakeSource, clock: FakeClock | None = None, metrics: DaemonMetrics | None = None,
                **settings: object) -> SourceRunner:
    return SourceRunner({s.name: s for s in sources}, metrics, clock or FakeClock(NOW),
                        RunnerSettings(**settings))  # type: ignore[arg-type]


def test_identical_requests_run_once_per_tick() -> None:
    model = FakeSource("model")
    model.set("error_ratio", 0.01)
    runner = make_runner(model)

    runner.begin_tick(NOW)
    runner.prefetch([("model", "error_ratio", None)] * 3, NOW)
    first = runner.query("model", "error_ratio", NOW)
    second = runner.query("model", "error_ratio", NOW)
    runner.begin_tick(NOW + 15)
    runner.query("model", "error_ratio", NOW + 15)

    assert isinstance(first, QueryResult) and first is second
    assert model.queries == [("error_ratio", NOW), ("error_ratio", NOW + 15)]


def test_end_tick_drops_the_ticks_answers_and_equal_params_share_one_key_tuple() -> None:
    model = FakeSource("model")
    model.set("error_ratio", 0.01)
    runner = make_runner(model)
    runner.begin_tick(NOW)
    runner.prefetch([("model", "error_ratio", {"version": "v1"}), ("model", "other", {"version": "v1"}),
                     ("model", "third", {"version": "v2"})], NOW)
    keys = list(runner._cache)
    assert keys[0][3] == (("version", "v1"),) and keys[0][3] is keys[1][3] and keys[2][3] == (("version", "v2"),)
    assert runner.query("model", "error_ratio", NOW, {"version": "v1"}) is runner._cache[keys[0]]
    runner.end_tick()
    assert runner._cache == {} and runner._params == {}
    runner.query("model", "error_ratio", NOW, {"version": "v1"})  # asked anew, as in a later tick
    assert [q for q, _ in model.queries].count("error_ratio") == 2


def test_a_query_at_an_earlier_time_is_its_own_entry_and_keeps_the_ticks_answers() -> None:
    model = FakeSource("model")
    model.set("error_ratio", lambda now: 0.01 if now == NOW else 0.02)
    runner = make_runner(model)
    runner.begin_tick(NOW)

    now = runner.query("model", "error_ratio", NOW)
    hour_ago = runner.query("model", "error_ratio", NOW - 3600)  # a compare baseline `offset 1h`
    again = runner.query("model", "error_ratio", NOW)

    assert isinstance(now, QueryResult) and isinstance(hour_ago, QueryResult) and again is now
    assert (now.samples[0].value, hour_ago.samples[0].value) == (0.01, 0.02)
    assert model.queries == [("error_ratio", NOW), ("error_ratio", NOW - 3600)]


def test_errors_are_returned_not_raised_and_cached_too() -> None:
    model = FakeSource("model")
    model.set("bad", QueryError("unsupported function"))
    runner = make_runner(model)
    runner.begin_tick(NOW)

    assert isinstance(runner.query("model", "bad", NOW), QueryError)
    assert isinstance(runner.query("model", "missing", NOW), SourceError)
    assert isinstance(runner.query("model", "bad", NOW), QueryError)
    assert [q for q, _ in model.queries] == ["bad", "missing"]


def test_params_reach_sources_that_take_them_and_are_part_of_the_cache_key() -> None:
    class Versioned(FakeSource):
        def query_with(self, query: str, now: float, params: dict[str, str] | None) -> QueryResult:
            return self.query(f"{query}@{(params or {}).get('version')}", now)

    db = Versioned("db")
    db.set("accuracy@v7", 0.9)
    db.set("accuracy@v6", 0.8)
    runner = make_runner(db)
    runner.begin_tick(NOW)
    runner.prefetch([("db", "accuracy", {"version": "v7"}), ("db", "accuracy", {"version": "v6"})], NOW)

    v7 = runner.query("db", "accuracy", NOW, {"version": "v7"})
    v6 = runner.query("db", "accuracy", NOW, {"version": "v6"})
    assert isinstance(v7, QueryResult) and v7.samples[0].value == 0.9
    assert isinstance(v6, QueryResult) and v6.samples[0].value == 0.8


def test_a_source_runs_no_more_calls_at_once_than_its_limit() -> None:
    in_flight, peak = [0], {"parallel": 0, "serial": 0}
    lock = threading.Lock()

    def tracked(kind: str) -> object:
        def answer(now: float) -> float:
            with lock:
                in_flight[0] += 1
                peak[kind] = max(peak[kind], in_flight[0])
            time.sleep(0.1)
            with lock:
                in_flight[0] -= 1
            return 1.0
        return answer

    parallel, serial = ParallelSource("parallel"), FakeSource("serial")
    for i in range(6):
        parallel.set(f"q{i}", tracked("parallel"))
    runner = make_runner(parallel, max_concurrency=8)
    runner.begin_tick(NOW)
    runner.prefetch([("parallel", f"q{i}", None) for i in range(6)], NOW)

    for i in range(4):
        serial.set(f"q{i}", tracked("serial"))
    runner2 = make_runner(serial)
    runner2.begin_tick(NOW)
    runner2.prefetch([("serial", f"q{i}", None) for i in range(4)], NOW)

    assert peak == {"parallel": 2, "serial": 1}  # a source without max_concurrency gets one at a time
    assert all(isinstance(runner.query("parallel", f"q{i}", NOW), QueryResult) for i in range(6))


def test_a_slow_source_does_not_delay_a_fast_one_beyond_the_query_timeout(release: threading.Event) -> None:
    slow, fast = FakeSource("slow"), FakeSource("fast")
    slow.set("x", lambda now: 1.0 if release.wait(10) else 1.0)
    fast.set("y", 2.0)
    runner = make_runner(slow, fast, query_timeout=0.5)
    runner.begin_tick(NOW)

    started = time.monotonic()
    runner.prefetch([("slow", "x", None), ("fast", "y", None)], NOW)
    elapsed = time.monotonic() - started

    assert elapsed < 2.0
    fast_result, slow_result = runner.query("fast", "y", NOW), runner.query("slow", "x", NOW)
    assert isinstance(fast_result, QueryResult) and fast_result.samples[0].value == 2.0
    assert isinstance(slow_result, SourceError) and slow_result.kind == "timeout"
    assert "did not finish within the 0.5s query timeout" in str(slow_result)


def test_many_queued_queries_of_a_slow_source_do_not_starve_a_fast_one(release: threading.Event) -> None:
    slow, fast = FakeSource("slow"), FakeSource("fast")
    for i in range(40):
        slow.set(f"x{i}", lambda now: 1.0 if release.wait(10) else 1.0)
    fast.set("y", 2.0)
    runner = make_runner(slow, fast, query_timeout=0.5)
    runner.begin_tick(NOW)

    started = time.monotonic()
    runner.prefetch([("slow", f"x{i}", None) for i in range(40)] + [("fast", "y", None)], NOW)

    assert time.monotonic() - started < 2.0
    assert isinstance(runner.query("fast", "y", NOW), QueryResult)
    assert all(isinstance(runner.query("slow", f"x{i}", NOW), SourceError) for i in range(40))
    assert len(slow.queries) == 1  # one at a time: the others never started


def test_the_ticks_deadline_bounds_the_wait_too(release: threading.Event) -> None:
    slow = FakeSource("slow")
    slow.set("x", lambda now: 1.0 if release.wait(10) else 1.0)
    runner = make_runner(slow, query_timeout=30)
    runner.begin_tick(NOW)

    started = time.monotonic()
    runner.prefetch([("slow", "x", None)], NOW, deadline=runner.clock.monotonic() + 0.3)  # deadlines are on the runner's clock

    assert time.monotonic() - started < 2.0
    assert isinstance(runner.query("slow", "x", NOW), SourceError)


def test_transient_failures_are_retried_and_query_errors_are_not() -> None:
    flaky = FakeSource("flaky")
    flaky.options = RetryOptions()  # type: ignore[assignment]
    answers = iter([SourceError("reset", "connection"), SourceError("503", "http_5xx"), 0.5])
    flaky.set("x", lambda now: next(answers))
    flaky.set("bad", QueryError("no such function"))
    runner = make_runner(flaky)
    runner.begin_tick(NOW)

    result = runner.query("flaky", "x", NOW)
    assert isinstance(result, QueryResult) and result.samples[0].value == 0.5
    assert isinstance(runner.query("flaky", "bad", NOW), QueryError)
    assert [q for q, _ in flaky.queries] == ["x", "x", "x", "bad"]


def test_the_circuit_opens_after_consecutive_failures_probes_after_the_cooldown_and_closes() -> None:
    clock = FakeClock(NOW)
    db = FakeSource("db")
    healthy = [False]
    db.set("acc", lambda now: 0.9 if healthy[0] else SourceError("connection refused", "connection"))
    runner = make_runner(db, clock=clock, failure_threshold=3, cooldown=60)

    def tick() -> QueryResult | Exception:
        clock.advance(15)
        runner.begin_tick(clock.now())
        return runner.query("db", "acc", clock.now())

    for _ in range(3):
        assert isinstance(tick(), SourceError)
    assert runner.circuit("db") == "open" and len(db.queries) == 3

    skipped = tick()  # fails fast, the source is not asked
    assert isinstance(skipped, SourceError) and skipped.kind == "circuit_open"
    assert "circuit open after 3 consecutive failures" in str(skipped) and "connection refused" in str(skipped)
    assert len(db.queries) == 3 and not runner.health()["db"].up

    clock.advance(45)  # cool-down over: one probe, which fails → open again
    assert isinstance(tick(), SourceError) and runner.circuit("db") == "open" and len(db.queries) == 4
    assert tick().kind == "circuit_open"  # type: ignore[union-attr]

    healthy[0] = True
    clock.advance(60)
    assert isinstance(tick(), QueryResult) and runner.circuit("db") == "closed"
    assert isinstance(tick(), QueryResult) and len(db.queries) == 6
    assert runner.health()["db"].details["circuit"] == "closed"


def test_a_failed_refresh_counts_and_an_open_circuit_skips_the_refresh() -> None:
    clock = FakeClock(NOW)

    class Scraping(FakeSource):
        refreshes = 0

        def begin_tick(self, now: float) -> SourceError | None:
            self.refreshes += 1
            return SourceError("cannot connect", "connection")

    model = Scraping("model")
    model.set("up", 0.0)  # answered from kept data even while scrapes fail
    runner = make_runner(model, clock=clock, failure_threshold=2, cooldown=60)

    clock.advance(15)
    assert runner.begin_tick(clock.now())["model"] is not None
    assert isinstance(runner.query("model", "up", clock.now()), QueryResult)  # does not reset the count
    clock.advance(15)
    assert runner.begin_tick(clock.now())["model"] is not None
    assert runner.circuit("model") == "open"

    clock.advance(15)
    skipped = runner.begin_tick(clock.now())["model"]
    assert skipped is not None and skipped.kind == "circuit_open" and model.refreshes == 2


def test_a_partial_refresh_failure_does_not_count_towards_the_circuit() -> None:
    class Fleet(FakeSource):
        def begin_tick(self, now: float) -> SourceError | None:
            return PartialScrapeError("1 of 2 targets failed", "connection")

    fleet = Fleet("fleet")
    fleet.set("up", 1.0)
    runner = make_runner(fleet, failure_threshold=1)

    for i in range(3):
        runner.begin_tick(NOW + i)
        runner.query("fleet", "up", NOW + i)
    assert runner.circuit("fleet") == "closed"


def test_health_and_metrics_per_source() -> None:
    metrics = DaemonMetrics()
    ok, broken = FakeSource("ok"), FakeSource("broken")
    ok.set("x", 1.0)
    broken.set("x", SourceError("HTML page", "parse"))
    runner = make_runner(ok, broken, metrics=metrics)

    runner.begin_tick(NOW)
    runner.prefetch([("ok", "x", None), ("broken", "x", None)], NOW)

    text = generate_latest(metrics.registry).decode()
    assert 'model_watchdog_source_up{source="ok"} 1.0' in text
    assert 'model_watchdog_source_up{source="broken"} 0.0' in text
    assert 'model_watchdog_source_errors_total{kind="parse",source="broken"} 1.0' in text
    assert 'model_watchdog_source_query_duration_seconds_count{source="ok"} 1.0' in text
    assert metrics.registry.get_sample_value("model_watchdog_source_last_success_timestamp_seconds",
                                             {"source": "ok"}) == NOW
    health = runner.health()
    assert health["ok"].up and health["ok"].details["circuit"] == "closed"
    assert health["broken"].details["consecutive_failures"] == 1


def test_an_open_circuit_is_not_kept_open_for_the_length_of_a_backward_clock_step() -> None:
    """The wall clock stepped back an hour while a source's circuit was open: `now - opened_at`
    stayed negative, so the source was refused (no data for every rule on it) for an hour
    instead of being probed after its cool-down."""
    clock = FakeClock(NOW)
    db = FakeSource("db")
    healthy = [False]
    db.set("acc", lambda now: 0.9 if healthy[0] else SourceError("connection refused", "connection"))
    runner = make_runner(db, clock=clock, failure_threshold=2, cooldown=60)

    def tick() -> QueryResult | Exception:
        clock.advance(15)
        runner.begin_tick(clock.now())
        return runner.query("db", "acc", clock.now())

    for _ in range(2):
        assert isinstance(tick(), SourceError)
    assert runner.circuit("db") == "open"
    healthy[0] = True
    clock.advance(-3600)
    answers = [tick() for _ in range(6)]  # 90 s on the new clock
    assert isinstance(answers[-1], QueryResult) and runner.circuit("db") == "closed", answers


def test_a_runner_on_the_engines_step_back_reacts_to_the_steps_it_takes() -> None:
    """In the daemon the engine observes each tick's `now` (once, first) and the runner reads
    the same StepBack: a step the scheduler's watcher saw reaches the open circuit on the
    tick that takes it; the runner does not take steps of its own."""
    clock, steps = FakeClock(NOW), StepBack()
    db = FakeSource("db")
    db.set("acc", SourceError("connection refused", "connection"))
    runner = SourceRunner({"db": db}, None, clock, RunnerSettings(failure_threshold=1, cooldown=60), steps=steps)
    runner.begin_tick(clock.now())
    assert isinstance(runner.query("db", "acc", clock.now()), SourceError)
    circuit = runner._circuits["db"]
    assert circuit.state == "open" and circuit.opened_at == NOW
    clock.advance(-3600)
    runner.begin_tick(clock.now())  # not observed by the runner: no step taken yet
    assert circuit.opened_at == NOW
    steps.clock_stepped(-3600, clock.now())
    steps.observe(clock.now())  # the engine's tick takes it
    runner.begin_tick(clock.now())
    assert circuit.opened_at == clock.now()
