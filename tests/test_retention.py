"""Memory stays bounded in a long-running daemon (issue 13): the hourly prune of old history
(`history_retention`), and the rule states and /metrics label sets of series that vanish."""

from __future__ import annotations

import logging

from tests.harness import Harness
from watchdog.clock import FakeClock
from watchdog.state.base import HistoryEvent
from watchdog.testing import series

DAY = 86400.0
CONFIG = """\
interval: 10s
state: state.db
listen: 127.0.0.1:0
{retention}
sources:
  model: {{type: scrape, url: "http://127.0.0.1:9/metrics"}}
actuators:
  hook: {{type: webhook, url: "http://127.0.0.1:9/rollback"}}
targets:
  fraud-model: {{rollback: [hook]}}
"""


def daemon_with_old_history(tmp_path, retention: str):  # type: ignore[no-untyped-def]
    from watchdog.config.loader import load
    from watchdog.daemon import Daemon
    from watchdog.state.sqlite import SQLiteStateStore

    (tmp_path / "watchdog.yaml").write_text(CONFIG.format(retention=retention))
    clock = FakeClock()
    with SQLiteStateStore(str(tmp_path / "state.db")) as store:
        for day in range(100, 0, -1):  # one state event a day for the last 100 days
            store.append(HistoryEvent(None, clock.now() - day * DAY, "fraud-model", "r", {}, "state", "x"))
    return Daemon(load(tmp_path / "watchdog.yaml"), clock=clock), clock


def pruned(daemon) -> float:  # type: ignore[no-untyped-def]
    return daemon.metrics.registry.get_sample_value("model_watchdog_history_pruned_rows_total",
                                                    {"table": "history"}) or 0.0


def test_the_daemon_prunes_history_older_than_the_retention_hourly_and_counts_it(tmp_path, caplog):
    daemon, clock = daemon_with_old_history(tmp_path, "history_retention: 30d")
    try:
        with caplog.at_level(logging.INFO, logger="watchdog.retention"):
            daemon.run_once()
            assert daemon.drill_worker.wait(10)
        # Days 100..31 ago are older than 30 days; the newest of them is not the newest
        # `state` event (yesterday's is), so all 70 go.
        assert len(daemon.store.history("fraud-model", limit=1000)) == 30
        assert pruned(daemon) == 70
        assert any("pruned the state store of rows older than" in r.getMessage() and "70 history" in r.getMessage()
                   for r in caplog.records)
        assert not daemon.store.history(kinds=["prune"])  # no audit row per prune
        clock.advance(1800)  # the 30-day-old event ages out, but the next prune is only due in an hour
        daemon.run_once()
        daemon.drill_worker.wait(10)
        assert pruned(daemon) == 70
        clock.advance(1800)
        daemon.run_once()
        daemon.drill_worker.wait(10)
        assert pruned(daemon) == 71
    finally:
        daemon.close()


def test_zero_keeps_the_history_forever(tmp_path):
    daemon, _ = daemon_with_old_history(tmp_path, "history_retention: 0")
    try:
        daemon.run_once()
        daemon.drill_worker.wait(10)
        assert len(daemon.store.history("fraud-model", limit=1000)) == 100
        assert pruned(daemon) == 0
    finally:
        daemon.close()


def test_the_default_retention_is_90_days(tmp_path):
    daemon, _ = daemon_with_old_history(tmp_path, "")
    try:
        assert daemon.loaded.config.history_retention == 90 * DAY
        daemon.run_once()
        daemon.drill_worker.wait(10)
        assert len(daemon.store.history("fraud-model", limit=1000)) == 90
    finally:
        daemon.close()


FLEET_RULE = """\
- name: error-rate
  source: model
  query: error_ratio
  above: 0.05
  for: 30s
  action: alert
"""


def sizes(h: Harness) -> tuple[object, ...]:
    rules = h.metrics.rules
    return (len(h.store.load_rule_states()), len(h.engine.states), len(h.engine._persisted), len(h.engine._unsaved),
            len(rules.values), len(rules.phases), len(rules.outcomes), len(rules._unvalued),
            frozenset(line.rsplit(b" ", 1)[0] for line in h.metrics.render().splitlines()))  # the label sets


def test_a_thousand_series_that_appear_then_vanish_leave_states_and_metrics_as_they_were(tmp_path):
    h = Harness(tmp_path, FLEET_RULE)
    steady = [series(0.01, pod="steady"), series(0.5, pod="hot")]  # every outcome is counted already
    h.source.set("error_ratio", steady)
    h.run_for(60)  # "hot" fires and its alert is sent
    h.engine.flush_states()
    before = sizes(h)
    # 1,000 pods appear (some breaching: pending states), then all but the steady ones vanish.
    h.source.set("error_ratio", steady +
                 [series(0.5 if i % 3 == 0 else 0.01, pod=f"p{i}") for i in range(1000)])
    h.run_for(20)
    assert sizes(h)[0] >= 1000 and len(h.engine.states) >= 1000
    h.source.set("error_ratio", steady)
    h.run_for(30)
    h.engine.flush_states()
    assert sizes(h) == before
