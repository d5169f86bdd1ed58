"""The engine's fast paths against its reference paths, on random fleets: the same verdicts,
the same history and the same rule states.

- production: a `scrape` source answers a tick's queries in one batch (`query_many`, the
  templated queries evaluated as one), `step` takes its shortcut for quiet series, and a quiet
  series' state is written only when its course changes (its overwritten fields later);
- reference: one query at a time (no `query_many`), the full `_step`, every state written.

The production engine also "crashes" (restarts without a clean close) at random ticks."""

from __future__ import annotations

import json
import math
import random
import threading
from pathlib import Path

import pytest

import watchdog.engine as engine_module
from watchdog.clock import FakeClock
from watchdog.config.loader import load
from watchdog.engine import FLUSH_TICKS, Engine
from watchdog.metrics import DaemonMetrics
from watchdog.rollback.executor import RollbackExecutor
from watchdog.rules.state import Phase, SeriesState, _step
from watchdog.runtime.notify import Notifier
from watchdog.samples import NAME, Sample, labels_of
from watchdog.sources.scrape import ScrapeOptions, ScrapeSource
from watchdog.state.sqlite import SQLiteStateStore
from watchdog.testing import FakeAlerter

INSTANCES = [f"10.0.0.{i}:80" for i in range(1, 7)]
RULES = [
    ("ratio", 'sum(rate(req{{instance="{{{{instance}}}}",status="error"}}[1m])) / '
              'sum(rate(req{{instance="{{{{instance}}}}"}}[1m]))', "above: 0.2\n    for: 20s"),
    ("p90", 'histogram_quantile(0.9, sum by (le) (rate(lat_bucket{{instance="{{{{instance}}}}"}}[1m])))',
     "above: 0.5\n    failure_limit: 1\n    for: 30s"),
    ("acc", 'acc{{instance="{{{{instance}}}}"}}', "below: 0.5\n    on_no_data: alert\n    error_limit: 1"),
    ("pods", 'max by (pod) (acc{{instance="{{{{instance}}}}"}})', "below: 0.3\n    on_no_data: ignore"),
    ("up", 'up{{instance="{{{{instance}}}}"}}', "below: 1\n    max_inconclusive: 20s\n    min_samples: {at_least: 2}"),
]


def write(directory: Path, split: bool = False) -> None:
    urls = ", ".join(f"http://{i}/metrics" for i in INSTANCES)
    targets = "\n".join(f"  m{n}: {{alert: [log], variables: {{instance: '{i}'}}}}" for n, i in enumerate(INSTANCES))
    (directory / "watchdog.yaml").write_text(
        f"interval: 10s\nstate: state.db\nrule_files: [rules.yaml]\nsources:\n  fleet:\n    type: scrape\n"
        f"    urls: [{urls}]\nalerters:\n  log: {{type: log}}\ntargets:\n{targets}\n")
    lines = [f"targets: [{', '.join(f'm{n}' for n in range(len(INSTANCES)))}]", "rules:"]
    for name, query, extra in RULES:
        lines += [f"  - name: {name}", "    source: fleet", f"    query: '{query.format()}'", f"    {extra}",
                  "    action: alert"]
    (directory / "rules.yaml").write_text("\n".join(lines) + "\n")


class Fleet:
    """An engine on a scrape source whose store the test fills (no network)."""

    def __init__(self, directory: Path, clock: FakeClock, reference: bool) -> None:
        self.directory, self.clock, self.reference = directory, clock, reference
        self.loaded = load(directory / "watchdog.yaml")
        self.source = ScrapeSource("fleet", ScrapeOptions(urls=[f"http://{i}/metrics" for i in INSTANCES]))
        self.source.begin_tick_within = lambda now, deadline: None  # type: ignore[method-assign]
        self.source.begin_tick = lambda now: None  # type: ignore[method-assign]
        if reference:
            self.source.query_many = None  # type: ignore[assignment,method-assign]
        self.start()

    def start(self) -> None:
        self.store = SQLiteStateStore(str(self.directory / "state.db"))
        stop = threading.Event()
        metrics = DaemonMetrics()
        self.alerter = FakeAlerter("log")
        notifier = Notifier({"log": self.alerter}, metrics, stop, store=self.store, clock=self.clock.now)
        executor = RollbackExecutor(self.store, {}, metrics, stop)
        self.engine = Engine(self.loaded, self.store, {"fleet": self.source}, executor, notifier, metrics,
                             clock=self.clock)

    def crash(self) -> None:
        self.store.close()  # no flush_states: what a killed process leaves
        self.start()

    def tick(self, now: float, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, object]]:
        with monkeypatch.context() as m:
            if self.reference:
                m.setattr(engine_module, "step", _step)
                m.setattr(engine_module, "FLUSH_TICKS", 1)  # never skips: every quiet state every tick
            report = self.engine.tick(now)
            if self.reference:
                self.engine.flush_states()
        return [(t, r, v) for t, r, v, _ in report.verdicts]

    def history(self) -> list[tuple[object, ...]]:
        return [(e.at, e.target, e.rule, json.dumps(e.series, sort_keys=True), e.kind, e.message,
                 json.dumps(e.data, sort_keys=True, default=str)) for e in self.store.history(limit=100_000)]


def feed(rng: random.Random, sources: list[ScrapeSource], t: float, mood: dict[str, float]) -> None:
    for instance in INSTANCES:
        if rng.random() < 0.1:
            mood[instance] = rng.choice([0.0, 0.0, 0.4, 1.0])  # how bad this instance is now
        if rng.random() < 0.07:
            continue  # a failed scrape: its series go stale
        bad, n = mood[instance], t / 10
        samples = [Sample(labels_of({NAME: "up", "instance": instance}), 1.0)]
        if rng.random() > 0.05:
            samples += [Sample(labels_of({NAME: "req", "instance": instance, "status": "ok"}), 100 * n),
                        Sample(labels_of({NAME: "req", "instance": instance, "status": "error"}), 100 * n * bad)]
        for le, share in (("0.1", 0.6), ("0.5", 0.9 - 0.8 * bad), ("+Inf", 1.0)):
            samples.append(Sample(labels_of({NAME: "lat_bucket", "instance": instance, "le": le}), 50 * n * share))
        for pod in rng.sample(["a", "b", "c"], rng.randrange(0, 4)):
            value = math.nan if rng.random() < 0.05 else 1.0 - bad
            samples.append(Sample(labels_of({NAME: "acc", "instance": instance, "pod": pod}), value))
        for source in sources:
            source.store.append_scrape(t, samples, target=instance)
    for source in sources:
        if source._first_success is None:
            source._first_success = t


def stored_states(store: SQLiteStateStore) -> dict[tuple[str, str, str], SeriesState]:
    return {k: SeriesState.from_json(v) for k, v in store.load_rule_states().items()}


@pytest.mark.parametrize("seed", range(3))
def test_fast_paths_judge_record_and_store_what_the_reference_paths_do(tmp_path: Path, seed: int,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    (tmp_path / "fast").mkdir()
    (tmp_path / "ref").mkdir()
    write(tmp_path / "fast")
    write(tmp_path / "ref")
    clock = FakeClock()
    fast = Fleet(tmp_path / "fast", clock, reference=False)
    ref = Fleet(tmp_path / "ref", clock, reference=True)
    mood = {i: 0.0 for i in INSTANCES}
    for k in range(60):
        feed(rng, [fast.source, ref.source], clock.now(), mood)
        assert fast.tick(clock.now(), monkeypatch) == ref.tick(clock.now(), monkeypatch), k
        assert fast.history() == ref.history(), k
        # what the store holds: the same course for every series, the overwritten fields at most FLUSH_TICKS late
        on_disk, expected = stored_states(fast.store), stored_states(ref.store)
        assert on_disk.keys() == expected.keys()
        assert all(on_disk[key].same_course(expected[key]) for key in expected), k
        assert all(on_disk[key] == expected[key] for key in expected if expected[key].phase is not Phase.INACTIVE), k
        assert all(clock.now() - (on_disk[key].evaluated_at or 0) <= (FLUSH_TICKS + 1) * 10 for key in expected)
        if rng.random() < 0.08:
            fast.crash()
        clock.advance(10)
    fast.engine.flush_states()  # what a clean close writes: everything, exactly
    assert fast.store.load_rule_states() == ref.store.load_rule_states()
