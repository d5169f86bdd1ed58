"""Faults at the state store: locked by another process, disk full. The daemon stays up,
nothing committed is lost, and it carries on once the store is usable again."""

import sqlite3

import pytest

from watchdog.config.loader import load
from watchdog.daemon import Daemon
from watchdog.state.sqlite import SQLiteStateStore
from watchdog.testing import series

from tests.harness import Harness
from tests.test_engine import ERROR_RULE

pytestmark = pytest.mark.timeout(60)


def daemon_on(h: Harness, busy_timeout: float = 0.2) -> Daemon:
    store = SQLiteStateStore(str(h.dir / "state.db"), busy_timeout=busy_timeout)
    daemon = Daemon(load(h.dir / "watchdog.yaml"), clock=h.clock, store=store)
    daemon.engine.sources["model"] = h.source
    daemon.sources["model"] = h.source
    daemon.actuators.update(h.actuators)  # the executor shares this dict
    return daemon


def test_a_locked_state_db_fails_the_tick_not_the_daemon(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    h.source.set("error_ratio", 0.01)
    daemon = daemon_on(h)
    assert daemon.run_once() is not None
    other = sqlite3.connect(tmp_path / "state.db")
    other.execute("BEGIN EXCLUSIVE")
    assert daemon.run_once() is None  # the tick failed...
    assert "locked" in daemon.last_error and daemon.metrics.evaluation_failures._value.get() == 1
    other.rollback()
    other.close()
    h.clock.advance(10)
    assert daemon.run_once() is not None  # ...and the next one works
    assert daemon.health()[0]


def test_a_full_disk_loses_nothing_committed(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    h.source.set("error_ratio", 0.01)
    daemon = daemon_on(h)
    daemon.run_once()
    committed = {(e.id, e.kind, e.message) for e in daemon.store.history(limit=1000)}
    assert committed
    pages = daemon.store._db.execute("PRAGMA page_count").fetchone()[0]  # simulate a full disk
    daemon.store._db.execute(f"PRAGMA max_page_count = {pages}")
    many = [series(0.3, replica=f"replica-{i:04d}-" + "x" * 200) for i in range(300)]
    h.source.set("error_ratio", many)  # 300 series breach: far more to write than the disk has room for
    for _ in range(3):
        h.clock.advance(10)
        daemon.run_once()
    assert "full" in daemon.last_error.lower()
    daemon.store._db.execute("PRAGMA max_page_count = 1073741823")
    h.clock.advance(10)
    assert daemon.run_once() is not None
    after = {(e.id, e.kind, e.message) for e in daemon.store.history(limit=100_000)}
    assert committed <= after  # every entry committed before the disk filled is still there, unchanged
    assert len(after) > len(committed)  # and writing resumed once there was room again
