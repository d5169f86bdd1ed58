"""Scheduled rollback drills inside the daemon (`targets.T.drill: {every: 24h}`, or the
top-level `drill:` for every target without its own), and the drill alert.

`DrillSchedule.due(now)` (on the tick, under the daemon's tick lock) says which guarded
targets' drills are due; `DrillSchedule.run(job)` runs one, the same drill as `model-watchdog
drill` (watchdog.rollback.drill: plan, guards, each actuator's read-back), on the daemon's
`DrillWorker` thread: its reads happen without the tick lock, only its record takes it, so a
slow actuator never delays a tick. A drill the `version_unknown` guard defers (as it defers
rollbacks) is recorded once as `drill_deferred` and is due again on every tick until it runs. The first
is due `every` after the target's last recorded drill (by anyone), so a restart does not
re-run one. The history is the record: `DrillAlerts.observe` is fed every drill event the
daemon reads back (watchdog.rollback.drill.DrillMetrics), so a drill run from the CLI counts too. A
drill that finds the target not ready fires a `drill_failed` alert (dedup key
`TARGET/drill`); the next drill that passes resolves it.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Callable, Iterable

from watchdog.alerters.base import Alert
from watchdog.clock import rfc3339
from watchdog.config.loader import LoadedConfig
from watchdog.rollback.drill import Drill, prepare_drill, probe_drill, record_drill
from watchdog.state.base import HistoryEvent, StateStore

log = logging.getLogger("watchdog.drills")

BY = "schedule"  # the operator recorded for scheduled drills

AlertFn = Callable[[str, Alert], None]  # (target, alert)


def every(loaded: LoadedConfig, target: str) -> float | None:
    """Seconds between the target's scheduled drills; None: not scheduled."""
    schedule = loaded.config.targets[target].drill or loaded.config.drill
    return max(schedule.every, loaded.config.interval) if schedule is not None else None


@dataclass(frozen=True)
class DrillJob:
    target: str
    now: float
    version_problem: str | None  # the engine's knowledge at `now` (watchdog.rollback.version_gate)


Record = Callable[[Callable[[], None]], None]  # runs its argument under the daemon's tick lock


def _directly(write: Callable[[], None]) -> None:
    write()


class DrillSchedule:
    """Which drills are due (asked on the tick, under the tick lock) and how one runs: its
    store reads and actuator reads without the lock, only its record under it (`record`)."""

    def __init__(self, loaded: LoadedConfig, store: StateStore):
        self.loaded = loaded
        self.store = store
        self._next: dict[str, float] = {}
        self._in_flight: set[str] = set()
        self._deferred: dict[str, str] = {}  # target -> the deferral recorded last (recorded once per episode)

    def due(self, now: float, targets: Iterable[str],
            version_problem: Callable[[str], str | None] = lambda _: None) -> list[DrillJob]:
        """The drills due at `now` for these (owned) targets, not already running."""
        jobs = []
        for target in sorted(targets):
            period = every(self.loaded, target) if target in self.loaded.config.targets else None
            if period is None or target in self._in_flight:
                continue
            if target not in self._next:
                last = self.store.history(target, limit=1, kinds=["drill"])
                self._next[target] = last[0].at + period if last else now
            if now + 1e-6 < self._next[target]:
                continue
            self._next[target] = now + period
            self._in_flight.add(target)
            jobs.append(DrillJob(target, now, version_problem(target)))
        return jobs

    def run(self, job: DrillJob, record: Record = _directly) -> Drill | None:
        """Run one due drill; recorded in the history through `record`. A drill deferred by a
        guard (version_unknown) is due again on the next tick, its deferral recorded once."""
        try:
            prepared = prepare_drill(self.loaded, self.store, job.target, job.now, BY, job.version_problem)
            drill = probe_drill(self.loaded, prepared)
            record(lambda: self._record(job, drill))
            return drill
        except Exception as exc:  # one target's drill must not stop the others, or the tick
            log.exception("scheduled drill for %s failed to run: %s", job.target, exc)
            return None
        finally:
            self._in_flight.discard(job.target)

    def _record(self, job: DrillJob, drill: Drill) -> None:
        if not drill.deferred:
            self._deferred.pop(job.target, None)
            record_drill(self.store, drill, job.now, BY)
            return
        self._next[job.target] = job.now  # deferred, not dropped: asked again on the next tick
        if self._deferred.get(job.target) != drill.deferred:
            self._deferred[job.target] = drill.deferred
            record_drill(self.store, drill, job.now, BY)
            log.warning("scheduled drill for %s deferred: %s", job.target, drill.deferred)

    def run_due(self, now: float, targets: Iterable[str],
                version_problem: Callable[[str], str | None] = lambda _: None) -> list[Drill]:
        """Run the drills due at `now` for these (owned) targets, one after the other, here."""
        ran = [self.run(job) for job in self.due(now, targets, version_problem)]
        return [d for d in ran if d is not None]


class DrillWorker:
    """One thread that runs the scheduled drills, so that a slow actuator read never holds up
    a tick; started on the first drill, ended by `close`."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Callable[[], object] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def submit(self, work: Callable[[], object]) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="drills", daemon=True)
            self._thread.start()
        self._queue.put(work)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the drills submitted so far are done; False when `timeout` passed first."""
        done = self._queue.all_tasks_done
        with done:
            return done.wait_for(lambda: self._queue.unfinished_tasks == 0, timeout)

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)

    def _loop(self) -> None:
        while True:
            work = self._queue.get()
            try:
                if work is None:
                    return
                work()
            except Exception:  # DrillSchedule.run logs its own; this is a last resort
                log.exception("drill worker: unexpected failure")
            finally:
                self._queue.task_done()


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
