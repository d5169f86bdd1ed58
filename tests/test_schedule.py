"""Evaluation times are the scheduled tick times, not jittery wall-clock reads."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.fixtures.rules import ERROR_RULE
from tests.harness import Harness
from watchdog.clock import FakeClock
from watchdog.daemon import scheduled_time
from watchdog.runtime.scheduler import TickScheduler
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


# -- the tick scheduler on a fake clock: the grid, whatever the ticks' durations ---------------

START = 1_764_000_000.0


def drive(interval: float, durations: list[float], *, offset: float = 0.0, start: float = START + 0.25):
    """Run a TickScheduler on a fake clock; each tick takes its duration from `durations`
    (the job advances the clock) and the schedule stops after the last. Returns
    [(the time the tick stands for, the time it started)] and the scheduler."""
    clock = FakeClock(start)
    runs: list[tuple[float, float]] = []
    scheduler: TickScheduler

    def job(at: float) -> None:
        runs.append((at, clock.now()))
        clock.advance(durations[len(runs) - 1])
        if len(runs) == len(durations):
            scheduler.stop()

    scheduler = TickScheduler(interval, job, clock=clock, offset=offset)
    scheduler.run()
    return runs, scheduler


@given(durations=st.lists(st.floats(0.0, 0.99), min_size=1, max_size=40), interval=st.sampled_from([1.0, 2.5, 15.0]))
def test_tick_k_starts_at_its_grid_point_whatever_the_ticks_take(durations: list[float], interval: float) -> None:
    # (at most 0.89 of the interval: the tick at once starts 0.1 of it late, and may not overrun)
    runs, scheduler = drive(interval, [0.89 * d * interval for d in durations], start=START + 0.1 * interval)
    at_once = 0.9 * interval > 0.5  # the first slot is far: one tick at once, standing for START
    first = START if at_once else START + interval
    assert [at for at, _ in runs] == [round(first + k * interval, 6) for k in range(len(runs))]
    for at, started in runs[1 if at_once else 0:]:
        assert started == at  # no drift, no lateness: each tick starts on its slot
    assert scheduler.skipped == 0


def test_a_tick_that_overruns_its_slot_skips_it_and_the_next_runs_on_the_grid() -> None:
    runs, scheduler = drive(1.0, [0.1, 1.02, 0.1, 0.1], start=START)
    assert [at - START for at, _ in runs] == [0.0, 1.0, 3.0, 4.0]  # slot 2 passed during tick 1: skipped
    assert all(started == at for at, started in runs) and scheduler.skipped == 1


def test_a_tick_that_overruns_by_much_skips_to_the_next_grid_point_never_stacking_or_going_back() -> None:
    runs, scheduler = drive(1.0, [0.1, 3.6, 0.1, 0.1], start=START)
    assert [at - START for at, _ in runs] == [0.0, 1.0, 5.0, 6.0]  # slots 2–4 skipped
    assert all(started == at for at, started in runs) and scheduler.skipped == 3
    runs, scheduler = drive(1.0, [0.1, 3.0, 0.1], start=START)  # ends exactly on slot 4: it runs, on time
    assert [at - START for at, _ in runs] == [0.0, 1.0, 4.0] and scheduler.skipped == 2


def test_the_grid_can_be_shifted_by_an_offset() -> None:
    runs, _ = drive(1.0, [0.05] * 4, offset=0.35, start=START + 0.2)
    assert [round(at - START, 6) for at, _ in runs] == [0.35, 1.35, 2.35, 3.35]
    assert all(started == at for at, started in runs)


def test_a_far_first_slot_gets_a_tick_at_once_standing_for_the_slot_in_progress() -> None:
    runs, _ = drive(15.0, [1.0, 1.0, 1.0], start=START + 3.0)
    assert [(at - START, started - START) for at, started in runs] == [(0.0, 3.0), (15.0, 15.0), (30.0, 30.0)]
    runs, _ = drive(15.0, [1.0, 1.0], start=START + 14.7)  # the first slot is near: no extra tick
    assert [at - START for at, _ in runs] == [15.0, 30.0]


# -- a rule that fires in tick N starts its rollback in tick N ----------------------------------

def test_the_rollback_starts_in_the_tick_the_rule_fires_in(tmp_path) -> None:
    h = Harness(tmp_path, ERROR_RULE)  # for: 30s at a 10 s interval: fires on the fourth breaching tick
    h.source.set("error_ratio", 0.01)
    h.run_for(30)
    h.source.set("error_ratio", 0.2)
    calls_after, tick_times = [], []
    for _ in range(5):
        tick_times.append(h.clock.now())
        h.tick()
        calls_after.append(h.rollbacks())
    assert calls_after == [0, 0, 0, 1, 1]  # the actuator ran inside the firing tick, not the next one
    fired_tick = tick_times[3]
    decision = h.store.decisions(target="fraud-model", limit=1)[0]
    assert decision.created_at == fired_tick and decision.context.fired_at == fired_tick
    assert h.store.get_decision(decision.id).status == "succeeded"  # type: ignore[union-attr]
