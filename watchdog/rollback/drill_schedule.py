"""Scheduled rollback drills inside the daemon (`targets.T.drill: {every: 24h}`, or the
top-level `drill:` for every target without its own), and the drill alert.

`DrillSchedule.run_due(now)` runs, for each guarded target whose drill is due, the same drill
as `model-watchdog drill` (watchdog.rollback.drill: plan, guards, each actuator's read-back). The first
is due `every` after the target's last recorded drill (by anyone), so a restart does not
re-run one. The history is the record: `DrillAlerts.observe` is fed every drill event the
daemon reads back (watchdog.rollback.drill.DrillMetrics), so a drill run from the CLI counts too. A
drill that finds the target not ready fires a `drill_failed` alert (dedup key
`TARGET/drill`); the next drill that passes resolves it.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable

from watchdog.alerters.base import Alert
from watchdog.clock import rfc3339
from watchdog.config.loader import LoadedConfig
from watchdog.rollback.drill import Drill, run_drill
from watchdog.state.base import HistoryEvent, StateStore

log = logging.getLogger("watchdog.drills")

BY = "schedule"  # the operator recorded for scheduled drills

AlertFn = Callable[[str, Alert], None]  # (target, alert)


def every(loaded: LoadedConfig, target: str) -> float | None:
    """Seconds between the target's scheduled drills; None: not scheduled."""
    schedule = loaded.config.targets[target].drill or loaded.config.drill
    return max(schedule.every, loaded.config.interval) if schedule is not None else None


class DrillSchedule:
    def __init__(self, loaded: LoadedConfig, store: StateStore):
        self.loaded = loaded
        self.store = store
        self._next: dict[str, float] = {}

    def run_due(self, now: float, targets: Iterable[str]) -> list[Drill]:
        """Run the drills due at `now` for these (owned) targets; each is recorded in the history."""
        ran = []
        for target in sorted(targets):
            period = every(self.loaded, target) if target in self.loaded.config.targets else None
            if period is None:
                continue
            if target not in self._next:
                last = self.store.history(target, limit=1, kinds=["drill"])
                self._next[target] = last[0].at + period if last else now
            if now + 1e-6 < self._next[target]:
                continue
            self._next[target] = now + period
            try:
                ran.append(run_drill(self.loaded, self.store, target, now, BY))
            except Exception as exc:  # one target's drill must not stop the others, or the tick
                log.exception("scheduled drill for %s failed to run: %s", target, exc)
        return ran


class DrillAlerts:
    def __init__(self, alert: AlertFn):
        self.alert = alert  # the daemon's: to the target's alerters (a target no longer configured: dropped)
        self._failing: dict[str, bool] = {}

    def observe(self, event: HistoryEvent, replayed: bool) -> None:
        """One drill from the history, oldest first. `replayed`: read back at start-up, to
        learn whether the target's last drill failed — not alerted again."""
        ready = bool((event.data.get("drill") or {}).get("ready"))
        was_failing = self._failing.get(event.target, False)
        self._failing[event.target] = not ready
        if replayed or was_failing == (not ready):
            return
        summary = (f"{event.target}: rollback drill passed: a rollback would run" if ready
                   else f"{event.target}: rollback drill failed: {event.message}")
        self.alert(event.target, Alert(
            status="resolved" if ready else "firing", kind="drill_failed", dedup_key=f"{event.target}/drill",
            target=event.target, rule="", severity="info" if ready else "warning", summary=summary,
            at=rfc3339(event.at)))
