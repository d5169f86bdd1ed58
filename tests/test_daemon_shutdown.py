"""Shutdown finishes the evaluation in progress, then closes the state store (in that order)."""

from __future__ import annotations

import threading

import pytest

from tests.harness import Harness
from tests.test_engine import ERROR_RULE
from watchdog.config.loader import load
from watchdog.daemon import Daemon
from watchdog.state.sqlite import SQLiteStateStore

pytestmark = pytest.mark.timeout(60)


class RecordingStore(SQLiteStateStore):
    def __init__(self, path: str, events: list[str]):
        super().__init__(path)
        self.events = events
        self.daemon: Daemon | None = None

    def close(self) -> None:
        done = self.daemon is not None and self.daemon.last_tick is not None  # set once a tick completed
        self.events.append("store closed after the tick" if done else "store closed mid-tick")
        super().close()


def test_shutdown_waits_for_the_tick_in_progress_then_closes_the_store(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    config = tmp_path / "watchdog.yaml"
    config.write_text(config.read_text() + 'listen: "127.0.0.1:0"\n')
    events: list[str] = []
    in_source, release = threading.Event(), threading.Event()

    def held_scrape(now: float) -> float:
        in_source.set()
        release.wait(30)  # the source is mid-request until the test lets it answer
        events.append("source answered")
        return 0.01

    h.source.set("error_ratio", held_scrape)
    store = RecordingStore(str(tmp_path / "state.db"), events)
    daemon = Daemon(load(config), clock=h.clock, store=store)
    store.daemon = daemon
    daemon.engine.sources["model"] = daemon.sources["model"] = h.source
    daemon.start()  # the scheduler runs the first tick at once
    assert in_source.wait(20), "the first tick never reached the source"

    stopped = threading.Event()
    shutdown = threading.Thread(target=lambda: (daemon.shutdown(), stopped.set()))
    shutdown.start()
    assert daemon.stop.wait(5)
    # Bounded window: while the source still holds its request, shutdown must not be over.
    assert not stopped.wait(1.5), "shutdown returned while the tick was still in progress"
    release.set()
    assert stopped.wait(20)
    shutdown.join(5)

    assert events == ["source answered", "store closed after the tick"]
    assert daemon.last_tick is not None and daemon.last_error == ""  # the held tick completed and was kept
