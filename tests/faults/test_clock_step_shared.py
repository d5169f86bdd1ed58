"""Fault: the wall clock steps (NTP, a VM resumed). The step is seen once, by the scheduler's
watcher (the wall clock against the monotonic one), and reaches every part that keeps times on
the same tick through the daemon's one `watchdog.clock.StepBack`: the guards, the notifier, the
scrape source, the rule states and the sources' circuits (docs/operations.md, "Wall-clock
steps"). The daemon's wiring (watchdog/daemon.py) on fakes and a fake clock, in process: the
scheduler is not started, its watcher's look is `check_clock()`."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from tests.fixtures.rules import ERROR_RULE
from tests.http_receiver import Receiver, Reply
from watchdog.clock import FakeClock, StepBack
from watchdog.config.loader import load
from watchdog.engine import Engine, TickReport
from watchdog.errors import SourceError
from watchdog.metrics import DaemonMetrics
from watchdog.rollback.executor import RollbackExecutor
from watchdog.runtime.notify import Notifier
from watchdog.runtime.scheduler import TickScheduler
from watchdog.sources.base import Source
from watchdog.sources.scrape import ScrapeOptions, ScrapeSource
from watchdog.state.sqlite import SQLiteStateStore
from watchdog.testing import FakeActuator, FakeAlerter, FakeSource, series

pytestmark = pytest.mark.timeout(60)

HOUR = 3600.0
INTERVAL = 10.0

CONFIG = """\
interval: 10s
state: state.db
rule_files: [{rule_files}]
sources:
  model: {{type: scrape, url: "http://127.0.0.1:9/metrics"}}
  scraped: {{type: scrape, url: "http://127.0.0.1:9/metrics"}}
  flaky: {{type: scrape, url: "http://127.0.0.1:9/metrics"}}
actuators:
  first: {{type: webhook, url: "http://127.0.0.1:9/first"}}
alerters:
  ops: {{type: log}}
targets:
{targets}
"""

TARGET = """\
  {name}:
    version: {{source: model, query: model_info, label: version}}
    rollback: [first]
    alert: [ops]
    cooldown: 10m
{extra}"""

RULES = ERROR_RULE + """\
- name: jobs
  source: scraped
  query: rate(jobs_total[1m])
  above: 1000
- name: flaky
  source: flaky
  query: x
  above: 1
"""


class StillClock(FakeClock):
    """A fake clock whose monotonic one moves only with `advance` (not with real time): the
    wall clock against it changes by exactly the steps the test makes."""

    def monotonic(self) -> float:
        return self._advanced


class Wired:
    """What watchdog/daemon.py wires: one StepBack for the daemon, fed by the scheduler's
    watcher and by every tick, handed to the notifier and the engine (which hands it on)."""

    def __init__(self, tmp_path: Path, extra: str = "", targets: tuple[str, ...] = ("fraud-model",),
                 scraped: Source | None = None):
        files = []
        for name in targets:
            (tmp_path / f"{name}.yaml").write_text(f"target: {name}\nrules:\n" + "".join(
                f"  {line}\n" for line in RULES.splitlines()))
            files.append(f"{name}.yaml")
        (tmp_path / "watchdog.yaml").write_text(CONFIG.format(rule_files=", ".join(files), targets="".join(
            TARGET.format(name=name, extra=extra) for name in targets)))
        self.loaded = load(tmp_path / "watchdog.yaml")
        self.clock = StillClock()
        self.version = "v2"
        self.model = FakeSource("model")
        self.model.set("model_info", lambda now: [series(1, version=self.version)])
        self.model.set("error_ratio", 0.01)
        self.flaky = FakeSource("flaky")
        self.flaky.set("x", SourceError("connection refused", "connection"))
        self.scraped = scraped or FakeSource("scraped")
        if isinstance(self.scraped, FakeSource):
            self.scraped.set("rate(jobs_total[1m])", 0.0)
        self.actuator = FakeActuator("first")
        self.alerter = FakeAlerter("ops")
        metrics, stop = DaemonMetrics(), threading.Event()
        self.steps = StepBack()
        self.scheduler = TickScheduler(INTERVAL, lambda at: None, clock=self.clock, steps=self.steps)
        self.store = SQLiteStateStore(str(tmp_path / "state.db"))
        self.notifier = Notifier({"ops": self.alerter}, metrics, stop, store=self.store, clock=self.clock.now,
                                 steps=self.steps)
        executor = RollbackExecutor(self.store, {"first": self.actuator}, metrics, stop)
        self.engine = Engine(self.loaded, self.store, {"model": self.model, "scraped": self.scraped,
                                                       "flaky": self.flaky}, executor, self.notifier, metrics,
                             clock=self.clock, steps=self.steps)

    def tick(self) -> TickReport:
        report = self.engine.tick(self.clock.now())
        self.notifier.drain(timeout=0)
        self.clock.advance(INTERVAL)
        return report

    def run_for(self, seconds: float) -> list[TickReport]:
        return [self.tick() for _ in range(int(seconds // INTERVAL))]

    def decided(self) -> list[float]:
        return sorted(d.created_at for d in self.store.decisions(target="fraud-model") if d.status != "skipped")

    def approvals(self) -> list[str]:
        return [a.status for a in self.alerter.sent if a.kind == "approval_required"]


def test_one_step_back_seen_by_the_watcher_reaches_every_part_on_the_same_tick(tmp_path: Path) -> None:
    with Receiver(default=Reply(200, "jobs_total 3\n", {"Content-Type": "text/plain; version=0.0.4"})) as r:
        scraped = ScrapeSource("scraped", ScrapeOptions(url=r.url("/metrics")))
        w = Wired(tmp_path, scraped=scraped)
        w.model.set("error_ratio", 0.2)
        w.run_for(60)
        (rolled,) = w.decided()  # a rollback: the cooldown (10 min) counts from it
        w.version, _ = "v1", w.model.set("error_ratio", 0.01)
        w.run_for(60)
        w.version, _ = "v3", w.model.set("error_ratio", 0.2)
        w.run_for(20)
        key = ("fraud-model", "error-rate", "{}")
        assert w.engine.states[key].phase.value == "pending"
        circuit = w.engine.runner._circuits["flaky"]
        assert circuit.state == "open"
        assert not scraped.query("rate(jobs_total[1m])", w.clock.now()).warming_up

        w.clock.advance(-HOUR)  # the wall clock steps back an hour between two ticks
        assert w.scheduler.check_clock()  # the watcher's look (every second in the daemon)
        assert w.steps.last == (HOUR, w.clock.now())  # the step itself, not the distance between two ticks
        # one object: the notifier (its own thread) sees the step before any tick does
        assert w.notifier._steps is w.steps is w.engine.rollbacks.guards.steps is w.engine.runner.steps
        assert w.steps.seen(rolled, w.clock.now()) == rolled - HOUR
        epoch = w.steps.epoch

        stepped = w.tick()  # the first tick on the new clock takes the step, once, for every part
        assert w.steps.epoch == epoch + 1
        # kept in the store for the CLI, another replica and the next start (rollback/guards.py)
        assert json.loads(w.store.get_meta("clock_step_back") or "null") == {"step": HOUR, "at": w.steps.last[1]}
        gap = [e.message for e in w.store.history(kinds=["state"], limit=5) if e.at == stepped.at]
        assert any("pending → inactive: the clock stepped back 1h" in m for m in gap), gap  # rule states
        # the scrape source dropped the samples held (they lie in the clock's future) and scraped anew
        assert [s.value for s in scraped.query("jobs_total", stepped.at).samples] == [3.0]
        assert scraped.query("rate(jobs_total[1m])", stepped.at).warming_up
        assert circuit.opened_at is not None and circuit.opened_at <= stepped.at  # cools down from the step
        # guards: the cooldown left at the step (10 min less the 2 min 20 s before it), to the second
        w.run_for(15 * 60)
        assert w.decided()[0] == rolled - HOUR + 600
        w.engine.runner.close()
        scraped.close()


def test_a_step_the_watcher_saw_is_taken_once_though_the_next_tick_is_earlier_too(tmp_path: Path) -> None:
    """The tick after a step back is earlier than the one before (what the parts used to detect
    on their own): it is the same step, taken once, with the watcher's length."""
    w = Wired(tmp_path)
    w.run_for(30)
    w.clock.advance(-HOUR)
    w.scheduler.check_clock()
    w.run_for(30)
    assert w.steps.epoch == 1 and w.steps.last[0] == HOUR


def test_the_tick_asks_the_watcher_first(tmp_path: Path) -> None:
    """A tick that comes before the watcher's next look still takes the step (StepBack.probe)."""
    w = Wired(tmp_path)
    w.run_for(30)
    w.clock.advance(-30)  # back 30 s: the next tick (20 s on) is still later than the last one
    w.tick()
    assert w.steps.epoch == 1 and w.steps.last == (30.0, w.clock.now() - INTERVAL)


def test_the_clock_is_observed_once_per_tick_not_once_per_target(tmp_path: Path) -> None:
    class Counted(StepBack):
        observed = 0

        def observe(self, now: float) -> tuple[float, ...]:
            self.observed += 1
            return super().observe(now)

    w = Wired(tmp_path, targets=("fraud-model", "search-model", "ads-model"))
    w.steps = w.engine.steps = w.engine.rollbacks.guards.steps = Counted()
    w.run_for(50)
    assert w.steps.observed == 5


def test_after_a_step_forward_the_cooldown_keeps_what_it_had_left(tmp_path: Path) -> None:
    """A step forward the watcher saw is not time that passed: the cooldown after a rollback
    ends what it had left at the step after it, not at the first firing after the step."""
    w = Wired(tmp_path)
    w.model.set("error_ratio", 0.2)
    w.run_for(60)
    (rolled,) = w.decided()
    w.version, _ = "v1", w.model.set("error_ratio", 0.01)
    w.run_for(120)
    w.clock.set(w.clock.now() + HOUR)  # the monotonic clock did not move
    assert w.scheduler.check_clock()
    w.version, _ = "v3", w.model.set("error_ratio", 0.2)
    w.run_for(15 * 60)
    assert w.decided()[1] == rolled + HOUR + 600


def test_after_a_step_forward_an_approval_waits_the_time_it_had_left(tmp_path: Path) -> None:
    w = Wired(tmp_path, extra="    approve: required\n    approve_timeout: 5m\n")
    w.model.set("error_ratio", 0.2)
    w.run_for(60)
    assert w.approvals() == ["firing"]
    w.clock.set(w.clock.now() + HOUR)
    assert w.scheduler.check_clock()
    w.run_for(4 * 60)
    assert w.approvals() == ["firing"]  # not expired by the step
    w.run_for(60)
    assert w.approvals() == ["firing", "resolved", "firing"]  # expired 5 min after it was asked, in real time


def test_a_step_forward_restarts_a_pending_for(tmp_path: Path) -> None:
    """Shorter than a gap the rule states notice on their own (2 intervals between two
    evaluations): the watcher's step restarts the `for`, so nothing fires on the jump alone."""
    w = Wired(tmp_path)
    w.model.set("error_ratio", 0.2)
    w.run_for(20)
    w.clock.set(w.clock.now() + 5)
    w.scheduler.check_clock()
    w.run_for(20)
    assert w.decided() == []
    w.run_for(20)
    assert len(w.decided()) == 1


def test_the_daemon_owns_one_step_back_for_its_lifetime(tmp_path: Path) -> None:
    from tests.test_metrics import DAEMON_CONFIG
    from watchdog.daemon import Daemon

    (tmp_path / "watchdog.yaml").write_text(DAEMON_CONFIG)
    daemon = Daemon(load(tmp_path / "watchdog.yaml"), clock=FakeClock())
    try:
        parts = lambda: (daemon.engine.steps, daemon.engine.runner.steps,  # noqa: E731
                         daemon.engine.rollbacks.guards.steps, daemon.notifier._steps)
        assert all(part is daemon.steps for part in parts())
        assert daemon.reload()[0]
        assert all(part is daemon.steps for part in parts())  # the reloaded engine's too
        daemon.run_once()
        daemon.steps.clock_stepped(-HOUR, daemon.clock.now())  # the watcher's report, then a reload
        assert daemon.reload()[0]
        daemon.run_once()  # the tick that takes it keeps it in the store
        assert json.loads(daemon.store.get_meta("clock_step_back") or "null") == {"step": HOUR, "at": daemon.clock.now()}
    finally:
        daemon.close()
