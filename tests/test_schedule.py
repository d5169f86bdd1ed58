"""Evaluation times are the scheduled tick times, not jittery wall-clock reads."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fixtures.rules import ERROR_RULE
from tests.harness import Harness
from watchdog.clock import FakeClock, StepBack
from watchdog.daemon import scheduled_time
from watchdog.runtime.scheduler import GridTrigger, TickScheduler
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


# -- the tick grid (GridTrigger, the APScheduler trigger the ticks run on) -----------------------

START = 1_764_000_000.0


def fires(trigger: GridTrigger, now: float, count: int) -> list[tuple[float, float]]:
    """The first `count` (fire time, slot it stands for) the trigger hands APScheduler from `now`."""
    out, previous = [], None
    for _ in range(count):
        fire, slot = trigger.next_fire(previous, now)
        out.append((fire, slot))
        previous = fire
    return out


@given(tick=st.integers(0, 10_000), phase=st.floats(0.0, 0.999), interval=st.sampled_from([0.5, 1.0, 2.5, 15.0]),
       offset=st.floats(0.0, 0.999))
def test_the_fire_times_are_the_grid_points_one_interval_apart_never_drifting(
        tick: int, phase: float, interval: float, offset: float) -> None:
    trigger = GridTrigger(interval, offset * interval)
    now = START + (tick + phase) * interval
    handed = fires(trigger, now, 20)
    grid = [fire for fire, slot in handed if fire == slot]
    assert len(grid) >= 19  # all but a tick at once
    for k, fire in enumerate(grid):
        assert fire == round(grid[0] + k * interval, 6)  # no drift, however many
        assert abs(((fire - trigger.offset) / interval) - round((fire - trigger.offset) / interval)) < 1e-6
    assert grid[0] >= now - 1e-6 and grid[0] - now <= interval + 1e-6


def test_a_far_first_slot_gets_a_tick_at_once_standing_for_the_slot_in_progress() -> None:
    trigger = GridTrigger(15.0)
    assert fires(trigger, START + 3.0, 3) == [(START + 3.0, START), (START + 15.0, START + 15.0),
                                               (START + 30.0, START + 30.0)]
    assert fires(trigger, START + 14.7, 2) == [(START + 15.0, START + 15.0), (START + 30.0, START + 30.0)]
    assert fires(GridTrigger(15.0, at_once=False), START + 3.0, 1) == [(START + 15.0, START + 15.0)]


def test_the_grid_can_be_shifted_by_an_offset() -> None:
    assert [round(f - START, 6) for f, _ in fires(GridTrigger(1.0, 0.35), START + 0.2, 4)] == [0.35, 1.35, 2.35, 3.35]


def test_a_run_stands_for_the_latest_fire_time_that_has_come() -> None:
    trigger = GridTrigger(1.0)
    for fire in (START + 1.0, START + 2.0, START + 3.0):  # as APScheduler asks: the one due, then the next
        trigger.get_next_fire_time(datetime.fromtimestamp(fire - 1.0, timezone.utc),
                                   datetime.fromtimestamp(fire - 0.5, timezone.utc))
    assert trigger.slot_due(START + 2.0004) == START + 2.0  # the run fired at 2 (3 is handed out, not come)
    assert trigger.slot_due(START + 3.9) == START + 3.0
    assert trigger.slot_due(START + 0.5) is None


# -- APScheduler running the grid: real time, short interval, generous bounds -------------------

def test_ticks_run_on_the_grid_one_at_a_time_and_a_long_one_skips_the_slots_it_overran() -> None:
    interval, runs, running, overlaps = 0.3, [], [0], []
    done = threading.Event()

    def job(at: float) -> None:
        running[0] += 1
        overlaps.append(running[0] > 1)
        runs.append((at, time.time()))
        time.sleep(0.75 if len(runs) == 3 else 0.01)  # the third overruns two slots and a half
        running[0] -= 1
        if len(runs) >= 7:
            done.set()

    scheduler = TickScheduler(interval, job)
    scheduler.start()
    try:
        assert done.wait(30), f"only {len(runs)} ticks in 30 s"
    finally:
        scheduler.stop()
    ats = [at for at, _ in runs[:7]]
    assert not any(overlaps)  # never two at once
    assert all(abs(at / interval - round(at / interval)) < 1e-6 for at in ats)  # each stands for a grid point
    assert all(b > a for a, b in zip(ats, ats[1:]))
    assert all(started >= at - 0.002 for at, started in runs)  # never before its slot
    assert ats[3] - ats[2] >= 3 * interval - 1e-6  # the two slots passed during the long tick were skipped
    assert scheduler.skipped >= 1


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


# -- the wall clock steps (NTP, a VM resumed) ----------------------------------------------------

class _SteppedClock:
    """The real clocks, the wall clock shifted by `step` seconds."""

    def __init__(self) -> None:
        self.step = 0.0

    def now(self) -> float:
        return time.time() + self.step

    def monotonic(self) -> float:
        return time.monotonic()


def test_a_wall_clock_stepped_back_does_not_stop_the_ticks(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """APScheduler waits for a wall-clock time: after the clock stepped back an hour, the next
    fire time lay an hour ahead, and the daemon evaluated nothing for that hour (while its
    health said ok: the last tick was not 'long ago' on the stepped clock). The scheduler
    notices the step and plans the next tick from the clock's present."""
    from datetime import timedelta

    from watchdog.runtime import scheduler as schedule

    monkeypatch.setattr(schedule, "CLOCK_CHECK_EVERY", 0.05)
    interval, clock, runs = 0.2, _SteppedClock(), []
    ticked = threading.Event()

    def job(at: float) -> None:
        runs.append(at)
        ticked.set()

    scheduler = TickScheduler(interval, job, clock=clock)
    scheduler.start()
    try:
        assert ticked.wait(10)
        # What APScheduler sees once the wall clock stepped back an hour: its next fire time an hour away.
        clock.step = -3600.0
        ticked.clear()
        scheduler._scheduler.modify_job(schedule.JOB_ID, next_run_time=datetime.now(timezone.utc) + timedelta(hours=1))
        assert ticked.wait(3), "no tick after the wall clock stepped back"
    finally:
        scheduler.stop()


def test_apscheduler_is_imported_with_the_plugin_registrys_one_scan_of_entry_points() -> None:
    """runtime.scheduler imports APScheduler with `importlib.metadata.entry_points` served
    from the plugin registry's one read (BaseScheduler scanned every distribution three
    times as its class was made). In a fresh interpreter: one scan in all, the aliases
    APScheduler knows are those a plain `entry_points(group=…)` gives, and nothing stays patched."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import importlib.metadata as m
        real, scans = m.distributions, []
        def counted(*a, **k):
            scans.append(1)
            return real(*a, **k)
        m.distributions = counted
        import watchdog.runtime.scheduler
        from apscheduler.schedulers import base
        m.distributions = real
        assert m.entry_points is base.entry_points, "left patched"
        for group, kept in (("triggers", base.BaseScheduler._trigger_plugins),
                            ("executors", base.BaseScheduler._executor_plugins),
                            ("jobstores", base.BaseScheduler._jobstore_plugins)):
            plain = {ep.name: ep for ep in m.entry_points(group="apscheduler." + group)}
            assert kept == plain and plain, group
        print(len(scans))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"


def test_the_watcher_reports_each_step_to_the_step_back_either_way() -> None:
    """The wall clock against the monotonic one (runtime/scheduler.py): a step back and a step
    forward go to the daemon's StepBack, with their sign, even with the scheduler not running;
    the next tick takes both. A step the clock did not make (time passing) is not one."""
    clock, steps = FakeClock(), StepBack()
    scheduler = TickScheduler(10.0, lambda at: None, clock=clock, steps=steps)
    clock.advance(30)
    assert not scheduler.check_clock()
    clock.set(clock.now() - 3600)
    assert scheduler.check_clock()
    clock.set(clock.now() + 120)
    assert scheduler.check_clock()
    assert steps.observe(clock.now()) == pytest.approx((-3600.0, 120.0), abs=0.5)
    assert steps.probe is not None  # the tick asks it first (StepBack.observe)


class _SlowReport(StepBack):
    """The watcher thread held (GIL, a loaded machine) between its look and its report."""

    def __init__(self) -> None:
        super().__init__()
        self.reporting = threading.Event()

    def clock_stepped(self, length: float, at: float) -> None:
        self.reporting.set()
        time.sleep(0.3)
        super().clock_stepped(length, at)


def test_a_tick_that_looks_while_the_watcher_reports_a_step_takes_it_once() -> None:
    """The watcher had moved the skew but not yet reported the step when a tick's own look
    (StepBack.probe) came: the tick found no step, counted a step forward as time a pending
    `for` held (a rollback on a clock step), and the next tick took the step after all."""
    clock, steps = FakeClock(), _SlowReport()
    scheduler = TickScheduler(10.0, lambda at: None, clock=clock, steps=steps)
    assert steps.observe(clock.now()) == ()
    clock.set(clock.now() + 120)
    watcher = threading.Thread(target=scheduler.check_clock)
    watcher.start()
    assert steps.reporting.wait(5)
    taken = steps.observe(clock.now())  # the tick, while the watcher reports
    watcher.join(5)
    assert taken == pytest.approx((120.0,), abs=0.5)
    assert steps.observe(clock.now() + 10) == ()  # and not once more


class _HeldClock(FakeClock):
    """A thread held `pause` seconds right after it read the wall clock (the GIL held by a long
    parse, a GC pause): both clocks move on meanwhile, the wall reading is the one before."""

    pause = 0.0

    def now(self) -> float:
        wall = super().now()
        if self.pause:
            self.advance(self.pause)
            self.pause = 0.0
        return wall


def test_a_thread_held_between_its_two_readings_sees_no_step() -> None:
    """Wall minus monotonic from a wall reading and a later monotonic one: a watcher held 1.5 s
    between them saw the clock step back 1.5 s, and forward 1.5 s at the next look: every
    pending `for` restarted twice, the guards moved their times, for a step that never was."""
    clock, steps = _HeldClock(), StepBack()
    scheduler = TickScheduler(10.0, lambda at: None, clock=clock, steps=steps)
    assert steps.observe(clock.now()) == ()
    clock.pause = 1.5
    assert not scheduler.check_clock()
    assert not scheduler.check_clock()
    assert steps.observe(clock.now()) == ()
    clock.set(clock.now() - 60)  # a real step is still seen
    assert scheduler.check_clock()
    assert steps.observe(clock.now()) == pytest.approx((-60.0,), abs=0.5)
