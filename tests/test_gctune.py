"""runtime.gctune: the serving daemon's collector settings, and that memory stays bounded
(what a reload drops is freed, though start-up's objects were frozen)."""

from __future__ import annotations

import gc
import weakref

import pytest

from tests.test_metrics import RELOAD_CONFIG, RELOAD_RULES
from watchdog.clock import FakeClock
from watchdog.runtime import gctune

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _restore_gc():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_settle_freezes_the_survivors_and_raises_the_young_threshold():
    gc.unfreeze()
    kept = _Cycle()
    gctune.settle()
    assert gc.get_threshold() == gctune.THRESHOLD
    assert gc.get_freeze_count() > 0
    assert kept not in gc.get_objects()  # frozen: no collection traverses it any more


def test_a_frozen_cycle_dropped_later_is_freed_by_the_next_settle():
    cycle = _Cycle()
    gctune.settle()
    gone = weakref.ref(cycle)
    del cycle
    gc.collect()
    assert gone() is not None  # frozen: even a full collection leaves it (the price of freezing) ...
    gctune.settle()
    assert gone() is None  # ... until the next settle (a reload) unfreezes first


def test_the_serving_daemon_settles_at_start_and_a_reload_frees_the_old_engine(tmp_path):
    from watchdog.config.loader import load
    from watchdog.daemon import Daemon

    (tmp_path / "watchdog.yaml").write_text(RELOAD_CONFIG.replace("interval: 10s", "interval: 1h"))
    (tmp_path / "rules.yaml").write_text(RELOAD_RULES)
    gc.set_threshold(700, 10, 10)
    daemon = Daemon(load(tmp_path / "watchdog.yaml"), clock=FakeClock())
    assert gc.get_threshold() == (700, 10, 10)  # building a daemon (tests, CLI commands) changes nothing
    daemon.start()
    try:
        assert gc.get_threshold() == gctune.THRESHOLD
        assert gc.get_freeze_count() > 0
        old_engine = weakref.ref(daemon.engine)
        assert daemon.reload()[0] is True
        assert daemon.engine is not old_engine()
        assert old_engine() is None  # the reload's settle() unfroze and collected the old configuration
    finally:
        daemon.shutdown()


def test_the_start_collects_the_young_generations_only_and_a_reload_all(tmp_path):
    """Daemon.start's settle: young cycles freed, no full traversal (0.03 s of a fleet's first
    tick for nothing found: runtime/gctune.py); a reload's settle is a full one."""
    from watchdog.config.loader import load
    from watchdog.daemon import Daemon

    (tmp_path / "watchdog.yaml").write_text(RELOAD_CONFIG.replace("interval: 10s", "interval: 1h"))
    (tmp_path / "rules.yaml").write_text(RELOAD_RULES)
    daemon = Daemon(load(tmp_path / "watchdog.yaml"), clock=FakeClock())
    generations: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            generations.append(info["generation"])

    gc.collect()
    young = _Cycle()
    gone = weakref.ref(young)
    del young
    gc.callbacks.append(seen)
    try:
        daemon.start()
        assert gone() is None  # a young cycle: collected before the freeze
        assert 2 not in generations and 1 in generations
        generations.clear()
        assert daemon.reload()[0] is True
        assert 2 in generations
    finally:
        gc.callbacks.remove(seen)
        daemon.shutdown()
