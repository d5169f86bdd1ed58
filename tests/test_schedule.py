"""Evaluation times are the scheduled tick times, not jittery wall-clock reads."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from watchdog.daemon import scheduled_time
from watchdog.rules.evaluate import Outcome, Verdict
from watchdog.rules.state import Event, SeriesState, step

from tests.rules.test_state_machine import rule


@given(tick=st.integers(0, 10_000), jitter=st.floats(-0.3, 0.45), interval=st.sampled_from([0.5, 1.0, 10.0, 30.0]))
def test_a_late_or_early_run_stands_for_its_tick_on_the_grid(tick: int, jitter: float, interval: float) -> None:
    start = 1_764_000_000.0
    assert scheduled_time(start + tick * interval + jitter * interval, interval) == start + tick * interval


def test_for_2s_at_1s_interval_fires_on_exactly_the_second_tick_after_pending() -> None:
    breach = Verdict((), Outcome.BREACH, 0.2, "x = 0.2 > 0.1")
    r = rule(for_=2.0)
    for jitter in (0.0, 0.001, 0.013, 0.2, 0.31):  # jitter as the scheduler's threads see it
        state, fired_after = SeriesState(), None
        for n in range(4):
            now = scheduled_time(1_764_000_000.0 + n + (jitter if n == 0 else 0.0), 1.0)  # a late first read
            state, events = step(state, breach, r, now, max_gap=2.0)
            if Event.FIRED in events:
                fired_after = n
                break
        assert fired_after == 2 and state.firing_since - state.pending_since == 2.0  # type: ignore[operator]
