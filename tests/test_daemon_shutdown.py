"""Shutdown finishes the evaluation in progress, then closes the state store (in that order)."""

from __future__ import annotations

import threading

import pytest

from tests.harness import Harness
from tests.fixtures.rules import ERROR_RULE
from watchdog.config.loader import load
from watchdog.daemon import Daemon
from watchdog.state.sqlite import SQLiteStateStore

pytestmark = pytest.mark.timeout(60)


class RecordingStore(SQLiteStateStore):
    def __init__(self, path: str, events: list[str]):
        super().__init__(path)
        self.events = events
        self.daemon: Daemon | None = None

    inside_tick: threading.Event | None = None

    def close(self) -> None:
        if self.inside_tick is not None:
            done = not self.inside_tick.is_set()
        else:
            done = self.daemon is not None and self.daemon.last_tick is not None  # set once a tick completed
        self.events.append("store closed after the tick" if done else "store closed mid-tick")
        super().close()


def test_shutdown_abandons_the_tick_in_progress_then_closes_the_store(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    config = tmp_path / "watchdog.yaml"
    config.write_text(config.read_text() + 'listen: "127.0.0.1:0"\n')
    events: list[str] = []
    in_source, release = threading.Event(), threading.Event()

    def held_scrape(now: float) -> float:
        in_source.set()
        release.wait(30)  # the source is mid-request until the test lets it answer
        return 0.01

    h.source.set("error_ratio", held_scrape)
    store = RecordingStore(str(tmp_path / "state.db"), events)
    daemon = Daemon(load(config), clock=h.clock, store=store)
    store.daemon = daemon
    daemon.engine.sources["model"] = daemon.sources["model"] = h.source
    inside = threading.Event()
    ticking = daemon.engine.tick

    def tick(now: float):  # type: ignore[no-untyped-def]
        inside.set()
        try:
            return ticking(now)
        finally:
            inside.clear()

    daemon.engine.tick = tick  # type: ignore[method-assign]
    store.inside_tick = inside
    daemon.start()  # the scheduler runs the first tick at once
    assert in_source.wait(20), "the first tick never reached the source"

    stopped = threading.Event()
    shutdown = threading.Thread(target=lambda: (daemon.shutdown(), stopped.set()))
    shutdown.start()
    try:
        # The held source does not hold the shutdown: the tick is abandoned at once ...
        assert stopped.wait(10), "shutdown waited for a source that does not answer"
    finally:
        release.set()
    shutdown.join(5)
    # ... and the store was closed only after the tick had left, with nothing of it written.
    assert events == ["store closed after the tick"]
    assert daemon.last_tick is None
    reopened = SQLiteStateStore(str(tmp_path / "state.db"))
    assert reopened.load_rule_states() == {}
    reopened.close()
