"""Faults at the state store: locked by another process, disk full. The daemon stays up,
nothing committed is lost, and it carries on once the store is usable again."""

import errno
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from watchdog.config.loader import load
from watchdog.daemon import Daemon
from watchdog.state.sqlite import SQLiteStateStore
from watchdog.testing import series

from tests.harness import Harness
from tests.needs import missing
from tests.fixtures.rules import ERROR_RULE

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


# -- a real full disk: a small tmpfs, filled up ---------------------------------------------------

@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs mounted at a fresh folder (needs root; CI runs as root)."""
    if os.geteuid() != 0:
        missing("the real full-disk test mounts a 16 MB tmpfs and needs root (CI runs .ci/run as root)")
    point = tmp_path / "disk"
    point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(point)],
                             capture_output=True, text=True, timeout=30)
    if mounted.returncode != 0:
        missing(f"cannot mount a tmpfs here: {mounted.stderr.strip()} (a container without CAP_SYS_ADMIN?)")
    try:
        yield point
    finally:
        subprocess.run(["umount", "--lazy", str(point)], capture_output=True, timeout=30)


def fill(folder: Path) -> Path:
    """Write a ballast file until the filesystem has no byte left."""
    ballast = folder / "ballast"
    with open(ballast, "wb", buffering=0) as out:
        for size in (1 << 16, 1 << 9, 1):
            try:
                while True:
                    out.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    return ballast


def test_a_really_full_disk_loses_nothing_committed(small_disk: Path) -> None:
    h = Harness(small_disk, ERROR_RULE)
    h.source.set("error_ratio", 0.01)
    daemon = daemon_on(h)
    assert daemon.run_once() is not None
    committed = {(e.id, e.kind, e.message) for e in daemon.store.history(limit=1000)}
    assert committed
    ballast = fill(small_disk)

    h.source.set("error_ratio", [series(0.3, replica=f"replica-{i:04d}-" + "x" * 200) for i in range(300)])
    for _ in range(3):
        h.clock.advance(10)
        assert daemon.run_once() is None  # the tick fails...
    assert "full" in daemon.last_error.lower()  # ...says why, and the daemon lives on
    # Another process opening the file now, disk still full, sees every committed entry intact.
    reader = SQLiteStateStore(str(small_disk / "state.db"))
    assert committed <= {(e.id, e.kind, e.message) for e in reader.history(limit=100_000)}
    reader.close()
    assert sqlite3.connect(small_disk / "state.db").execute("PRAGMA integrity_check").fetchone() == ("ok",)

    ballast.unlink()  # room again: the next tick writes everything it has to
    h.clock.advance(10)
    assert daemon.run_once() is not None
    daemon.close()
    reopened = SQLiteStateStore(str(small_disk / "state.db"))  # what a restart reads back
    after = {(e.id, e.kind, e.message) for e in reopened.history(limit=100_000)}
    reopened.close()
    assert committed <= after and len(after) > len(committed)
