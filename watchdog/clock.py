"""The one place that reads the time.

Everything else is handed `now` (seconds since the epoch, float) or a `Clock`, so that
evaluation is pure and tests drive time with `FakeClock`: the daemon owns one clock and hands
it to the engine, the API, the CLI commands and the source runner.

`now()` is the wall clock (what rules are judged at, what the history records); `monotonic()`
measures elapsed time for budgets and deadlines (the tick budget, waits for a rollback, the
systemd keep-alive). Code that bounds real I/O with no clock handed to it (a socket timeout
inside a plugin, a subprocess's kill grace) reads `time.monotonic()` itself: only real time
bounds a real wait.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from datetime import datetime, timezone
from typing import Callable, Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for deadlines and durations."""
        ...

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
        """Sleep up to `seconds`; return True if `stop` was set meanwhile."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
        if stop is None:
            time.sleep(max(0.0, seconds))
            return False
        return stop.wait(max(0.0, seconds))


class FakeClock:
    """A wall clock that moves only when told to; sleeping advances it instantly.

    Its `monotonic()` moves with every `advance` and `sleep` (a deadline passes without
    waiting), never with `set` (a wall-clock jump, as a real monotonic clock ignores them),
    and also with real time: threads doing real work under a fake clock (a source runner's
    lanes) still reach their deadlines."""

    def __init__(self, start: float = 1_700_000_000.0):
        self._now = start
        self._advanced = 0.0
        self._real_start = time.monotonic()

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._advanced + (time.monotonic() - self._real_start)

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._advanced += max(0.0, seconds)

    def set(self, when: float) -> None:
        self._now = when

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
        if stop is not None and stop.is_set():
            return True
        self.advance(max(0.0, seconds))
        return False


def real_deadline(clock: Clock, deadline: float) -> float:
    """`deadline`, an instant of `clock.monotonic()`, as a `time.monotonic()` instant: for
    plugins that bound real I/O with it (a socket timeout, a retry's last start)."""
    return time.monotonic() + (deadline - clock.monotonic())


def rfc3339(ts: float) -> str:
    """UTC RFC 3339 with a `Z`, second precision plus milliseconds when present."""
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


STEP_TOLERANCE = 1.0  # seconds: a recorded time further than this in the clock's future was recorded before a step back


class StepBack:
    """The wall clock's steps as this process saw them: one per daemon (watchdog/daemon.py),
    shared by every part that keeps wall-clock times, so that all see the same step at the same
    moment. Two ways in:

    - `clock_stepped(length, at)`: the scheduler's watcher saw the wall clock move `length`
      seconds against the monotonic one (negative: back), on the new clock's `at`. Exact, and
      the only way a step *forward* is told from time that passed.
    - `observe(now)`: a tick at `now`, once per tick at the start of `Engine.tick`. It first
      asks `probe` (the watcher's look, when a scheduler runs), so a step that already happened
      is known before the tick acts; then the tick takes the steps seen since the tick before.
      With none seen, a tick earlier than the one before is a step back, taken as the distance
      between the two ticks (a little less than it was, so a guard never ends early). A part
      used on its own (a CLI command, the backtest, a test without a scheduler) owns one and
      observes its own ticks.

    Each tick that took a step raises `epoch`; a part reacts once to each (`since(mark)`), on
    the tick that took it: a pending `for` restarts, the scrape source drops samples that lie in
    the clock's future, an open circuit cools down from the step.

    `seen(recorded, now)` is the time to count from instead of `recorded` (a guard's last
    rollback, an alert's queueing): a time recorded before a step back lies in the new clock's
    future (beyond STEP_TOLERANCE); it is moved back by the last step back, and never later
    than the moment it was first seen in the future. A step back this process did not see (it
    happened before a restart) is taken to be as long as the first future time asked about lies
    ahead (the incident's start, asked on every tick): a lower bound. A time recorded before a
    step forward the watcher saw (at or before the clock's reading just before the step) is
    moved forward by it, never past the present: what was left of a guard at a step, either
    way, is what is left after it. Elapsed time counts from the step on: never negative, never
    the step's length."""

    LIMIT = 10_000  # first sightings kept at most (times recorded before a step, still in the future)
    KEPT = 16  # steps kept: the ticks' (for `since`) and the forward ones since the last step back

    def __init__(self, tolerance: float = STEP_TOLERANCE):
        self.tolerance = tolerance
        self.step = 0.0  # length of the last step back seen (seconds, positive)
        self.epoch = 0  # ticks that took a step
        #: the watcher's look (TickScheduler.check_clock), asked first on every tick
        self.probe: Callable[[], object] | None = None
        self._last: float | None = None
        self._at = 0.0  # when the last step back was seen (new clock)
        self._first: dict[float, float] = {}
        self._unticked: deque[float] = deque(maxlen=self.KEPT)  # steps the watcher saw since the last tick (signed)
        self._ticked: deque[tuple[int, tuple[float, ...]]] = deque(maxlen=self.KEPT)  # (epoch, steps taken)
        self._forward: deque[tuple[float, float]] = deque(maxlen=self.KEPT)  # (length, at) since the last step back
        self._lock = threading.Lock()

    def clock_stepped(self, length: float, at: float) -> None:
        """The watcher saw the wall clock move `length` seconds (negative: back) against the
        monotonic clock; `at`: the wall clock when it looked (after the step)."""
        with self._lock:
            self._unticked.append(length)
            if length < 0:
                self.step, self._at = -length, at
                self._forward.clear()
            else:
                self._forward.append((length, at))

    def observe(self, now: float) -> tuple[float, ...]:
        """A tick at `now` (once per tick): the steps it takes (signed lengths; empty: none)."""
        probe = self.probe
        if probe is not None:
            probe()
        with self._lock:
            taken = tuple(self._unticked)
            self._unticked.clear()
            if not taken and self._last is not None and now < self._last - self.tolerance:
                self.step, self._at = self._last - now, now
                self._forward.clear()
                taken = (now - self._last,)
            self._last = now
            if taken:
                self.epoch += 1
                self._ticked.append((self.epoch, taken))
            return taken

    def since(self, mark: int) -> tuple[float, ...]:
        """The steps taken by the ticks after epoch `mark` (the last KEPT of them)."""
        return self.taken(mark)[0]

    def taken(self, mark: int) -> tuple[tuple[float, ...], int]:
        """`since(mark)` and the epoch they go up to (the next mark), read at once: a tick on
        another thread between two reads would move the mark past a step never handed over."""
        with self._lock:
            return tuple(step for epoch, taken in self._ticked if epoch > mark for step in taken), self.epoch

    @property
    def last(self) -> tuple[float, float]:
        """(length, when seen on the new clock) of the last step back; (0, 0): none. Read
        under the lock: the watcher's thread may be writing the pair."""
        with self._lock:
            return self.step, self._at

    def remember(self, step: float, at: float) -> None:
        """A step back seen by another process (or before a restart), unless a later one is known."""
        with self._lock:
            if step > self.tolerance and at > self._at:
                self.step, self._at = step, at
                while self._forward and self._forward[0][1] <= at:  # steps forward before it: as if passed
                    self._forward.popleft()

    def seen(self, recorded: float, now: float) -> float:
        if recorded <= now + self.tolerance:
            return self._forwarded(recorded, now)
        with self._lock:
            # A time recorded before the last step lies ahead by at most what is left of the step;
            # one further ahead (another host's clock, a step not seen) is not moved by it.
            if self.step and recorded - now <= self.step - (now - self._at) + self.tolerance:
                return min(recorded - self.step, now)
            if not self.step:  # a step this process did not see: at least this long
                self.step, self._at = recorded - now, now
            first = self._first.get(recorded)
            if first is None or first > now + self.tolerance:  # (a second step back: from this one)
                if len(self._first) >= self.LIMIT:  # those no longer in the future are no longer asked about
                    self._first = {k: v for k, v in self._first.items() if k > now + self.tolerance}
                    while len(self._first) >= self.LIMIT:
                        self._first.pop(next(iter(self._first)))
                first = self._first[recorded] = now
            return first

    def _forwarded(self, recorded: float, now: float) -> float:
        """`recorded` moved forward by each step forward seen after it (oldest first): it was
        recorded before a step of D seen at `at` when it is no later than `at - D`, the clock's
        reading just before the step."""
        if not self._forward:
            return recorded
        moved = recorded
        with self._lock:
            for length, at in self._forward:
                if moved <= at - length:
                    moved += length
        return recorded if moved == recorded else min(moved, now)
