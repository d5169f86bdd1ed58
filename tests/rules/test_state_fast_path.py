"""`step`'s shortcuts (a quiet series judged OK again; a series not pending that is still warming
up) against the full transition (`_step`),
on random states, verdicts and rules; and `same_course` compares every field but the four
that every evaluation overwrites."""

from __future__ import annotations

import dataclasses
import random

import pytest

from watchdog.config.schema import Rule
from watchdog.rules.evaluate import Outcome, Verdict
from watchdog.rules.state import QUIET_COURSE, Phase, SeriesState, _step, step

OVERWRITTEN = {"evaluated_at", "value", "outcome", "reason"}


def random_state(rng: random.Random) -> SeriesState:
    maybe = lambda value: value if rng.random() < 0.3 else None  # noqa: E731
    phase = rng.choice(list(Phase)) if rng.random() < 0.5 else Phase.INACTIVE
    return SeriesState(
        phase=phase, pending_since=rng.uniform(0, 100) if phase is Phase.PENDING else maybe(rng.uniform(0, 100)),
        firing_since=rng.uniform(0, 100) if phase is Phase.FIRING else maybe(rng.uniform(0, 100)),
        no_data_since=maybe(rng.uniform(0, 100)), value=maybe(rng.uniform(-1, 1)),
        outcome=rng.choice(["", "ok", "breach"]), reason=rng.choice(["", "x"]), evaluated_at=maybe(rng.uniform(0, 100)),
        decision_id=maybe("d1"), errors=rng.choice([0, 0, 0, 1, 3]),
        breaches=rng.choice([(), (), (50.0,), (10.0, 90.0)]), memory=maybe('{"n": 1}'),
        insufficient_since=maybe(rng.uniform(0, 100)), insufficient_alerted=rng.random() < 0.2)


def random_rule(rng: random.Random) -> Rule:
    return Rule(name="r", source="s", query="x", above=1.0, for_=rng.choice([0.0, 30.0]),
                failure_limit=rng.choice([None, None, 2]), error_limit=rng.choice([0, 4]),
                max_inconclusive=rng.choice([None, 60.0]), on_no_data=rng.choice(["alert", "ignore", "rollback"]))


@pytest.mark.parametrize("seed", range(20))
def test_the_shortcut_gives_what_the_full_step_gives(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(500):
        prev, rule = random_state(rng), random_rule(rng)
        verdict = Verdict((), rng.choice([Outcome.OK, Outcome.OK, Outcome.BREACH, Outcome.NO_DATA, Outcome.WARMING_UP,
                                          Outcome.WARMING_UP, Outcome.INSUFFICIENT]),
                          rng.choice([None, 0.5]), "why", memory=rng.choice([None, '{"n": 2}']))
        now = 100.0 + rng.choice([0.0, 5.0, 50.0])
        max_gap = rng.choice([None, 20.0])
        assert step(prev, verdict, rule, now, max_gap) == _step(prev, verdict, rule, now, max_gap)


def test_the_shortcut_is_taken_for_a_quiet_series() -> None:
    rule = Rule(name="r", source="s", query="x", above=1.0)
    prev = SeriesState(outcome="ok", value=0.1, evaluated_at=1.0)
    state, events = step(prev, Verdict((), Outcome.OK, 0.2, "fine"), rule, 2.0)
    assert events == [] and state == dataclasses.replace(prev, value=0.2, reason="fine", evaluated_at=2.0)


def test_the_warming_up_shortcut_is_taken_unless_a_timer_is_pending(monkeypatch: pytest.MonkeyPatch) -> None:
    rule = Rule(name="r", source="s", query="x", above=1.0, for_=30.0)
    warming = Verdict((), Outcome.WARMING_UP, None, "warming up", memory='{"n": 2}')
    full = _step
    prev = SeriesState(phase=Phase.FIRING, firing_since=1.0, errors=2, no_data_since=3.0, value=0.4, decision_id="d")
    expected = full(prev, warming, rule, 100.0, 20.0)
    calls: list[SeriesState] = []
    monkeypatch.setattr("watchdog.rules.state._step", lambda p, *a: calls.append(p) or full(p, *a))
    assert step(prev, warming, rule, 100.0, 20.0) == expected and not calls
    assert expected[0] == dataclasses.replace(prev, errors=0, outcome="warming_up", reason="warming up",
                                              evaluated_at=100.0, memory='{"n": 2}')
    step(SeriesState(), warming, rule, 100.0, 20.0)
    assert not calls  # a new series (a fleet's first tick: 7,000 of them) as well
    pending = SeriesState(phase=Phase.PENDING, pending_since=10.0, evaluated_at=50.0)
    assert step(pending, warming, rule, 100.0, 20.0) == full(pending, warming, rule, 100.0, 20.0)
    assert calls == [pending]  # a gap restarts the timer: the full transition says so


def test_same_course_compares_every_field_but_the_overwritten_ones() -> None:
    base = SeriesState()
    changed = {"phase": Phase.PENDING, "pending_since": 1.0, "firing_since": 1.0, "no_data_since": 1.0,
               "value": 1.0, "outcome": "ok", "reason": "r", "evaluated_at": 1.0, "decision_id": "d",
               "errors": 1, "breaches": (1.0,), "memory": "{}", "insufficient_since": 1.0,
               "insufficient_alerted": True}
    assert set(changed) == {f.name for f in dataclasses.fields(SeriesState)}  # a new field needs a decision here
    for name, value in changed.items():
        other = dataclasses.replace(base, **{name: value})
        assert other.same_course(base) == (name in OVERWRITTEN), name


def test_course_is_what_same_course_compares_and_the_quiet_one_is_shared() -> None:
    rng = random.Random(7)
    states = [random_state(rng) for _ in range(300)] + [SeriesState(), SeriesState(value=0.5, reason="fine")]
    for a in states:
        for b in rng.sample(states, 20) + [dataclasses.replace(a, value=2.0, reason="y", evaluated_at=9.0)]:
            assert (a.course() == b.course()) == a.same_course(b)
    assert SeriesState(outcome="ok", value=0.1, evaluated_at=1.0).course() is QUIET_COURSE
    assert QUIET_COURSE == (lambda s: (s.phase, s.pending_since, s.firing_since, s.no_data_since, s.decision_id,
                                       s.errors, s.breaches, s.memory, s.insufficient_since,
                                       s.insufficient_alerted))(SeriesState())
