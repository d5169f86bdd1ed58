"""The tick schedule: run `job(at)` at every point `at = offset + k·interval` of a fixed grid.

Each run is handed the grid time it stands for (the engine judges rules at it), so the
evaluation time never comes from a jittery wall-clock read, and the grid never drifts however
long the ticks take. As in Prometheus' rule groups, a tick that overran the next slot makes
the schedule skip it (counted in `skipped`, logged) and go on at the next point of the grid:
ticks never stack and never run back to back, which leaves an overloaded daemon room for its
API and a failing source time between attempts. (Running a slightly late slot at once instead
was tried: under hostile 1 s scrape timeouts at a 1 s interval the ticks ran back to back and
tripped the source's circuit breaker sooner; tests/security/test_sources_hostile.py.)

`offset` shifts the grid (e.g. to evaluate just after Prometheus scrapes the targets); 0 puts
the ticks on multiples of the interval.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Callable

from watchdog.clock import Clock, SystemClock

log = logging.getLogger("watchdog.scheduler")

FIRST_AT_ONCE = 0.5  # seconds: a first slot further away than this gets a tick at once (ready sooner)


class TickScheduler:
    def __init__(self, interval: float, job: Callable[[float], object], clock: Clock | None = None,
                 offset: float = 0.0):
        if interval <= 0:
            raise ValueError(f"interval must be positive, not {interval}")
        self.interval = interval
        self.offset = offset % interval
        self._job = job
        self._clock = clock or SystemClock()  # the system's, unless testing this class
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shift: float | None = None  # a new offset, taken up after the tick in progress
        self.skipped = 0  # slots left out because a tick overran them by more than the allowed lateness

    def slot_at_or_after(self, when: float) -> float:
        """The first grid point at or after `when`."""
        return self._grid(math.ceil(round((when - self.offset) / self.interval, 9)))

    def _grid(self, k: int) -> float:
        return round(self.offset + k * self.interval, 6)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="ticks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """No new tick starts; the one in progress (if any) is not waited for."""
        self._stop.set()

    def shift(self, offset: float) -> None:
        """Move the grid to `offset` (any thread): the tick after the next one is on the new
        grid, at its first point after the tick before (never two ticks for one slot)."""
        self._shift = offset % self.interval

    def run(self) -> None:
        """The schedule, in the calling thread, until `stop()` (start() runs it in a thread)."""
        now = self._clock.now()
        at = self.slot_at_or_after(now)
        if at - now > FIRST_AT_ONCE:  # one at once, standing for the slot in progress, so the daemon is soon ready
            self._run(at - self.interval)
        while not self._stop.is_set():
            if self._clock.sleep(at - self._clock.now(), self._stop):
                return
            self._run(at)
            at = self._next(at) if self._shift is None else self._shifted(at)

    def _run(self, at: float) -> None:
        try:
            self._job(at)
        except Exception:  # the job reports its own failures; the schedule goes on
            log.exception("the tick at %.3f failed", at)

    def _shifted(self, done: float) -> float:
        offset, self._shift = self._shift, None
        assert offset is not None
        if abs(offset - self.offset) < 0.001:
            return self._next(done)
        log.info("ticks move from +%.3f s to +%.3f s of every %g s", self.offset, offset, self.interval)
        self.offset = offset
        return self.slot_at_or_after(max(self._clock.now(), done + 0.001))

    def _next(self, done: float) -> float:
        """The slot after `done`: the next grid point, or if the tick overran it, the first one
        still ahead (the slots passed meanwhile are skipped and counted)."""
        nxt = self._grid(round((done - self.offset) / self.interval) + 1)
        now = self._clock.now()
        if now <= nxt:
            return nxt
        chosen = self.slot_at_or_after(now)
        missed = round((chosen - nxt) / self.interval)
        self.skipped += missed
        log.info("a tick took %.3f s: %d evaluation(s) of the %gs schedule skipped", now - done, missed, self.interval)
        return chosen
