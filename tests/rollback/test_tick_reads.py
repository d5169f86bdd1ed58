"""The rollback part of a tick reads the store once per tick, not once per target: the holds
(for targets without an incident yet), the incidents (once per target, not twice) and the
current releases (one query for the fleet)."""

from __future__ import annotations

from collections import Counter

from tests.test_metrics import DAEMON_CONFIG
from watchdog.clock import FakeClock
from watchdog.state.base import Hold

TARGETS = [f"m{i}" for i in range(6)]


def _daemon(tmp_path):  # type: ignore[no-untyped-def]
    from watchdog.config.loader import load
    from watchdog.daemon import Daemon

    config = DAEMON_CONFIG.split("targets:")[0] + "targets:\n" + "".join(f"  {t}: {{rollback: [hook]}}\n" for t in TARGETS)
    (tmp_path / "watchdog.yaml").write_text(config)
    return Daemon(load(tmp_path / "watchdog.yaml"), clock=FakeClock())


def _counting(store, calls: Counter, *names: str) -> None:  # type: ignore[no-untyped-def]
    for name in names:
        real = getattr(store, name)

        def counted(*args, _real=real, _name=name, **kwargs):  # type: ignore[no-untyped-def]
            calls[_name] += 1
            return _real(*args, **kwargs)

        setattr(store, name, counted)


def test_a_tick_reads_the_holds_and_the_current_releases_once_and_each_incident_once(tmp_path):
    daemon = _daemon(tmp_path)
    try:
        daemon.run_once()  # the first tick adopts the targets
        calls: Counter[str] = Counter()
        _counting(daemon.store, calls, "holds", "incident", "releases", "current_releases")
        daemon.clock.advance(10)
        daemon.run_once()
        assert calls == {"holds": 1, "incident": len(TARGETS), "current_releases": 1}
    finally:
        daemon.close()


def test_a_hold_from_an_earlier_release_still_holds_its_target(tmp_path):
    daemon = _daemon(tmp_path)
    try:
        daemon.store.put_hold(Hold("m3", 5.0, "d-old", "v1", "held before incidents existed"))  # no incident row
        for _ in range(2):
            daemon.run_once()  # the second tick's loads see the holds its sync() read
            daemon.clock.advance(10)
        desk = daemon.engine.desk
        assert desk.load("m3").held and desk.load("m3").decision_id == "d-old" and not desk.load("m2").held
        assert daemon.metrics.registry.get_sample_value("model_watchdog_target_held", {"target": "m3"}) == 1
    finally:
        daemon.close()


def test_the_bake_marks_each_current_release_healthy_as_before(tmp_path):
    from watchdog.rollback.releases import Ledger

    daemon = _daemon(tmp_path)
    try:
        ledger = Ledger(daemon.store, daemon.loaded.config)
        old = ledger.record("m1", {"model": "a"}, 0.0)
        new = ledger.record("m1", {"model": "b"}, 1.0)
        other = ledger.record("m4", {"model": "c"}, 2.0)
        daemon.clock.advance(daemon.loaded.config.targets["m1"].bake + 10)
        daemon.run_once()
        states = {r.id: r.state for t in ("m1", "m4") for r in daemon.store.releases(t)}
        assert states == {old.id: "unknown", new.id: "healthy", other.id: "healthy"}  # the current ones only
    finally:
        daemon.close()
