"""The tick schedule: run `job(at)` at every point `at = offset + k·interval` of a fixed grid.

Each run is handed the grid time it stands for (the engine judges rules at it), so the
evaluation time never comes from a jittery wall-clock read, and the grid never drifts however
long the ticks take. As in Prometheus' rule groups, a tick that overran the next slot makes
the schedule skip it (counted in `skipped`, logged) and go on at the next point of the grid:
ticks never stack and never run back to back, which leaves an overloaded daemon room for its
API and a failing source time between attempts. (Running a slightly late slot at once instead
was tried: under hostile 1 s scrape timeouts at a 1 s interval the ticks ran back to back and
tripped the source's circuit breaker sooner; tests/security/test_sources_hostile.py.)

APScheduler runs it: `GridTrigger` is an APScheduler trigger holding the grid (pure, so the
tests drive it with any times), and the job runs with `max_instances=1` and `coalesce`, which
is exactly "skip a slot that passed while a tick was still running". APScheduler does not tell
a job which fire time it stands for, so the trigger keeps the fire times it handed out and
the job takes the latest one that has come.

The scheduler also watches the wall clock against the monotonic one: a step (NTP, a VM
resumed) re-plans the ticks and is reported to the daemon's `watchdog.clock.StepBack`, which
hands it to every part that keeps times (docs/operations.md, "Wall-clock steps"). The first
thing of every tick asks the same look (`StepBack.probe`), so a tick never acts on a step the
watcher has not looked at yet.

`offset` shifts the grid (e.g. to evaluate just after Prometheus scrapes the targets); 0 puts
the ticks on multiples of the interval.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from datetime import datetime, timezone
from importlib import metadata
from typing import Any, Callable

from watchdog.clock import Clock, StepBack, SystemClock
from watchdog.config.plugins import available


def _import_apscheduler() -> Any:
    """`apscheduler.schedulers.background`. Its BaseScheduler class reads the installed
    distributions' entry points three times as it is made (`entry_points(group=…)` for its
    trigger, executor and job store aliases, ≈ 7 ms each, before ready); the plugin registry
    has read them all once already, and `select(group=…)` of that one read is what each of
    the three would read. tests/runtime/test_scheduler.py checks the aliases are the same."""
    import sys
    if "apscheduler.schedulers.base" in sys.modules:
        import apscheduler.schedulers.background as imported
        return imported
    real = metadata.entry_points
    scanned = available.scanned()

    def from_one_scan(**selection: Any) -> Any:
        return scanned.select(**selection) if selection else scanned

    metadata.entry_points = from_one_scan  # type: ignore[assignment]
    try:
        import apscheduler.schedulers.background as imported
    finally:
        metadata.entry_points = real
        base = sys.modules.get("apscheduler.schedulers.base")
        if base is not None and getattr(base, "entry_points", None) is from_one_scan:
            base.entry_points = real  # as if imported plainly (it reads them only as the class is made)
    return imported


BackgroundScheduler = _import_apscheduler().BackgroundScheduler

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent  # noqa: E402
from apscheduler.triggers.base import BaseTrigger  # noqa: E402

log = logging.getLogger("watchdog.scheduler")

FIRST_AT_ONCE = 0.5  # seconds: a first slot further away than this gets a tick at once (ready sooner)
CLOCK_CHECK_EVERY = 1.0  # seconds between two looks at the wall clock against the monotonic one
CLOCK_STEP = 1.0  # seconds: a wall clock that moved this much against the monotonic one was stepped
CLOCK_READ = 0.1  # seconds: the most two monotonic readings around a wall one may lie apart (see _read_skew)
JOB_ID = "ticks"


class GridTrigger(BaseTrigger):
    """The points `offset + k·interval`; the first fire time is now when the first point is
    more than FIRST_AT_ONCE away (`at_once`), standing for the slot in progress."""

    __slots__ = ("interval", "offset", "at_once", "_handed", "_lock")

    def __init__(self, interval: float, offset: float = 0.0, at_once: bool = True):
        if interval <= 0:
            raise ValueError(f"interval must be positive, not {interval}")
        self.interval = interval
        self.offset = offset % interval
        self.at_once = at_once
        self._handed: deque[tuple[float, float]] = deque(maxlen=8)  # (fire time, the slot it stands for)
        self._lock = threading.Lock()

    def slot_at_or_after(self, when: float) -> float:
        """The first grid point at or after `when`."""
        return self._grid(math.ceil(round((when - self.offset) / self.interval, 9)))

    def slot_at_or_before(self, when: float) -> float:
        """The last grid point at or before `when`."""
        return self._grid(math.floor(round((when - self.offset) / self.interval, 9)))

    def _grid(self, k: int) -> float:
        return round(self.offset + k * self.interval, 6)

    def next_fire(self, previous: float | None, now: float) -> tuple[float, float]:
        """(the next fire time, the slot it stands for) after `previous` (None: the first)."""
        if previous is None:
            first = self.slot_at_or_after(now)
            if self.at_once and first - now > FIRST_AT_ONCE:  # one at once, so the daemon is soon ready
                return now, first - self.interval
            return first, first
        following = self.slot_at_or_after(previous)
        if following <= previous:  # `previous` is a grid point itself
            following = self._grid(round((following - self.offset) / self.interval) + 1)
        return following, following

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime:
        fire, slot = self.next_fire(None if previous_fire_time is None else previous_fire_time.timestamp(),
                                    now.timestamp())
        with self._lock:
            self._handed.append((fire, slot))
        return datetime.fromtimestamp(fire, timezone.utc)

    def slot_due(self, now: float) -> float | None:
        """The slot of the latest fire time handed out that has come by `now` (the run starting
        now stands for it); None if none has."""
        with self._lock:
            due = [slot for fire, slot in self._handed if fire <= now + 0.001]
        return due[-1] if due else None

    def __str__(self) -> str:
        return f"grid[every {self.interval:g}s +{self.offset:g}s]"


class TickScheduler:
    def __init__(self, interval: float, job: Callable[[float], object], offset: float = 0.0,
                 clock: Clock | None = None, steps: StepBack | None = None):
        self.interval = interval
        self._clock = clock or SystemClock()  # APScheduler fires on the system's wall clock: the same one
        self.trigger = GridTrigger(interval, offset)
        self._job = job
        self.skipped = 0  # slots left out because a tick was still running (or the scheduler woke too late)
        read = self._read_skew()  # wall minus monotonic: changes when the clock steps
        self._skew = read[1] if read is not None else self._clock.now() - self._clock.monotonic()
        self._skew_lock = threading.Lock()  # the watcher and the tick (StepBack.probe) both look
        self.steps = steps or StepBack()  # where the steps seen go (the daemon's, shared)
        self.steps.probe = self._look
        self._stopped = threading.Event()
        # misfire_grace_time: a slot whose run could not start within it is skipped, as one that
        # passed during a long tick (APScheduler takes whole seconds)
        self._scheduler = BackgroundScheduler(timezone=timezone.utc, job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": max(1, math.ceil(interval / 4))})
        self._scheduler.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        # APScheduler logs every skipped run at WARNING; we count and log them once, at INFO.
        logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
        logging.getLogger("apscheduler.executors.default").setLevel(logging.ERROR)

    @property
    def offset(self) -> float:
        return self.trigger.offset

    def start(self) -> None:
        self._scheduler.add_job(self._run, self.trigger, id=JOB_ID, name="evaluation tick")
        self._scheduler.start()
        threading.Thread(target=self._watch_clock, name="tick-clock", daemon=True).start()

    def _watch_clock(self) -> None:
        while not self._stopped.wait(CLOCK_CHECK_EVERY):
            self._look()

    def _look(self) -> None:
        try:
            self.check_clock()
        except Exception:  # e.g. the scheduler shut down meanwhile; the next look tries again
            log.debug("cannot re-plan the ticks after a clock step", exc_info=True)

    def check_clock(self) -> bool:
        """Look at the wall clock against the monotonic one (every CLOCK_CHECK_EVERY, and first
        on every tick through `StepBack.probe`). A step (NTP, a VM resumed) is reported to
        `steps`, and the next tick is planned again: APScheduler waits for a wall-clock time,
        so after a step back of an hour its next fire time lay an hour ahead and nothing was
        evaluated for that hour. The next tick is then the grid's first point after the clock's
        present. True when a step was seen."""
        with self._skew_lock:
            read = self._read_skew()
            if read is None:  # this thread kept being held between two readings: the next look
                return False
            now, skew = read
            step, self._skew = skew - self._skew, skew
            if abs(step) < CLOCK_STEP:
                return False
            # Reported under the lock: a tick's look (StepBack.probe) that finds the skew
            # already moved must find the step already reported, or it takes it a tick late
            # (a step forward then counts as time a pending `for` held) and twice.
            self.steps.clock_stepped(step, now)
        log.warning("the wall clock stepped %+.1f s: the next tick is planned again from the clock's present", step)
        if self._scheduler.running:
            self.trigger = GridTrigger(self.interval, self.trigger.offset, at_once=False)
            self._scheduler.reschedule_job(JOB_ID, trigger=self.trigger)
        return True

    def _read_skew(self) -> tuple[float, float] | None:
        """(the wall clock, wall minus monotonic), from a wall reading between two monotonic
        ones no more than CLOCK_READ apart: a thread held between the two readings (the GIL
        held by a long parse, a GC pause, a loaded machine) would otherwise see the wall clock
        step back by the time it was held, and forward again at the next look. None: every
        try was held that long."""
        for _ in range(3):
            before = self._clock.monotonic()
            now = self._clock.now()
            after = self._clock.monotonic()
            if after - before <= CLOCK_READ:
                return now, now - (before + after) / 2
        return None

    def stop(self) -> None:
        """No new tick starts; the one in progress (if any) is not waited for."""
        self._stopped.set()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def shift(self, offset: float) -> None:
        """Move the grid to `offset` (any thread): the next tick is at the new grid's first point
        after now; a tick in progress keeps its slot (never two ticks for one slot)."""
        offset %= self.interval
        if abs(offset - self.trigger.offset) < 0.001:
            return
        log.info("ticks move from +%.3f s to +%.3f s of every %g s", self.trigger.offset, offset, self.interval)
        self.trigger = GridTrigger(self.interval, offset, at_once=False)
        if self._scheduler.running:
            self._scheduler.reschedule_job(JOB_ID, trigger=self.trigger)

    def _run(self) -> None:
        now = self._clock.now()
        at = self.trigger.slot_due(now)
        if at is None:  # only if the clock stepped back past the fire time: the slot of the present
            at = self.trigger.slot_at_or_before(now)
        try:
            self._job(at)
        except Exception:  # the job reports its own failures; the schedule goes on
            log.exception("the tick at %.3f failed", at)

    def _skipped(self, event: JobEvent) -> None:
        self.skipped += 1
        times = getattr(event, "scheduled_run_times", None) or [getattr(event, "scheduled_run_time", None)]
        log.info("a tick was still running (or the scheduler woke late): the evaluation at %s of the %gs "
                 "schedule skipped", times[-1].isoformat() if times[-1] is not None else "?", self.interval)
