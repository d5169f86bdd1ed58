"""StepBack: times recorded before the wall clock stepped back, mapped onto the new clock."""

from __future__ import annotations

import threading
from typing import Callable

from watchdog.clock import StepBack

T0 = 1_700_000_000.0

T = 1_700_000_000.0


def test_a_time_not_in_the_future_is_itself() -> None:
    steps = StepBack()
    steps.observe(T)
    assert steps.seen(T - 60, T) == T - 60 and steps.seen(T + 0.5, T) == T + 0.5  # within the tolerance


def test_a_time_recorded_before_an_observed_step_moves_back_by_the_step() -> None:
    steps = StepBack()
    steps.observe(T)
    steps.observe(T + 10 - 3600)  # the next tick: the clock stepped back an hour (less the 10 s between)
    assert steps.step == 3590
    now = T + 10 - 3600
    assert steps.seen(T - 120, now) == T - 120 - 3590  # two minutes before the last tick
    assert steps.seen(T + 5, now) == now  # never later than the present
    assert steps.seen(T - 120, now + 600) == T - 120 - 3590  # the same, asked again later


def test_a_time_further_ahead_than_the_step_left_counts_from_its_first_sighting() -> None:
    """Another host's clock a few seconds ahead, a week after a step: not moved by that step."""
    steps = StepBack()
    steps.observe(T)
    steps.observe(T - 3600)
    week = T + 7 * 86400
    steps.observe(week)
    assert steps.seen(week + 5, week) == week
    assert steps.seen(week + 5, week + 3) == week  # counts from its first sighting, not again from now


def test_a_step_not_observed_is_taken_from_the_first_future_time_seen() -> None:
    steps = StepBack()  # a new process: the step happened before it started
    now = T - 3600
    assert steps.seen(T, now) == now  # the incident's start: counts from now
    assert steps.seen(T - 300, now) == T - 300 - 3600  # recorded before it: moved back as much
    assert steps.seen(T - 300, now + 60) == T - 300 - 3600


def test_first_sightings_are_bounded() -> None:
    steps = StepBack()
    steps.LIMIT = 100
    for i in range(1000):
        steps.seen(T + 10_000 + i, T)
    assert len(steps._first) <= 100


def test_a_step_the_watcher_reports_is_taken_by_the_next_tick_once() -> None:
    steps = StepBack()
    steps.observe(T)
    steps.clock_stepped(-3600.0, T + 5 - 3600)  # the scheduler's watcher: wall against monotonic
    assert steps.last == (3600.0, T + 5 - 3600)  # known at once (the notifier's thread reads it)
    assert steps.epoch == 0 and steps.since(0) == ()
    assert steps.observe(T + 10 - 3600) == (-3600.0,)  # the next tick takes it, with the watcher's length
    assert steps.epoch == 1 and steps.since(0) == (-3600.0,) and steps.since(1) == ()
    assert steps.observe(T + 20 - 3600) == ()


def test_the_tick_asks_the_probe_first() -> None:
    steps = StepBack()
    steps.probe = lambda: steps.clock_stepped(-30.0, T + 5)
    assert steps.observe(T + 10) == (-30.0,)


def test_a_time_recorded_before_a_step_forward_moves_forward_by_it() -> None:
    steps = StepBack()
    steps.observe(T)
    steps.clock_stepped(3600.0, T + 5 + 3600)  # at T + 5 the clock jumped an hour ahead
    now = T + 3600 + 20
    assert steps.seen(T - 120, now) == T - 120 + 3600  # two minutes before the step: still two minutes before
    assert steps.seen(T + 3600 + 10, now) == T + 3600 + 10  # recorded after the step: itself
    steps.clock_stepped(-3600.0, T + 60)  # stepped back again: the hour did not pass either way
    assert steps.seen(T - 120, T + 60) == T - 120


class _TickOnRelease:
    """The StepBack's lock, which lets another thread's tick run (`between`) the first time it
    is released once armed: what a scheduler may do between two of a reader's statements."""

    def __init__(self, between: Callable[[], object]) -> None:
        self._lock = threading.Lock()
        self.between: Callable[[], object] | None = None
        self._then = between

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
        between, self.between = self.between, None
        if between is not None:
            between()

    def arm(self) -> None:
        self.between = self._then


def test_a_step_taken_by_a_tick_while_a_source_reads_its_steps_is_not_lost() -> None:
    """A scrape source (or the runner's circuits) read the steps taken since its mark, then the
    epoch as its new mark, in two reads: a tick that took a step between them moved the mark
    past a step never handed over, so the source kept samples that lay in the clock's future."""
    from watchdog.sources.scrape import ScrapeOptions, ScrapeSource

    steps = StepBack()
    lock = _TickOnRelease(lambda: steps.observe(T0 - 3600))
    steps._lock = lock  # type: ignore[assignment]
    source = ScrapeSource("s", ScrapeOptions(url="http://127.0.0.1:9/metrics"))
    source.share_steps(steps)
    steps.observe(T0)
    lock.arm()
    assert not source._stepped_back(T0 + 10)  # (the step is taken while this one reads)
    assert source._stepped_back(T0 - 3590)  # ... and handed over on the next
    source.close()
