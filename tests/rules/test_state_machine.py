"""The rule state machine in isolation, including property-based checks."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.fuzzing import examples

from watchdog.config.schema import Rule
from watchdog.rules.evaluate import Outcome, Verdict
from watchdog.rules.state import Event, Phase, SeriesState, step


def rule(**kw) -> Rule:  # type: ignore[no-untyped-def]
    base = dict(name="r", source="s", query="q", above=1.0, for_=30.0)
    base.update(kw)
    return Rule(**base)  # type: ignore[arg-type]


def verdict(outcome: Outcome, value: float | None = None) -> Verdict:
    return Verdict((), outcome, value, outcome.value)


def run(r: Rule, outcomes: list[Outcome], interval: float = 10.0) -> tuple[SeriesState, list[Event]]:
    state, events = SeriesState(), []
    for i, o in enumerate(outcomes):
        state, new = step(state, verdict(o, 2.0 if o is Outcome.BREACH else 0.5), r, i * interval)
        events.extend(new)
    return state, events


def test_breach_goes_pending_then_fires_when_for_has_elapsed():
    state, events = run(rule(), [Outcome.BREACH] * 4)
    assert events == [Event.PENDING, Event.FIRED]
    assert state.phase is Phase.FIRING and state.firing_since == 30.0 and state.pending_since == 0.0


def test_for_zero_fires_at_once():
    _, events = run(rule(for_=0.0), [Outcome.BREACH])
    assert events == [Event.PENDING, Event.FIRED]


def test_recovery_resolves_a_firing_rule():
    state, events = run(rule(), [Outcome.BREACH] * 4 + [Outcome.OK])
    assert events[-1] is Event.RESOLVED and state.phase is Phase.INACTIVE


def test_warming_up_keeps_timers():
    state, _ = run(rule(), [Outcome.BREACH, Outcome.WARMING_UP, Outcome.WARMING_UP])
    assert state.phase is Phase.PENDING and state.pending_since == 0.0


def test_one_failed_scrape_pages_nobody_but_a_lasting_outage_does():
    state, events = run(rule(), [Outcome.OK] + [Outcome.NO_DATA] * 4)
    assert Event.NO_DATA_STARTED not in events and state.errors == 4
    state, events = run(rule(), [Outcome.OK] + [Outcome.NO_DATA] * 5)
    assert events == [Event.NO_DATA_STARTED]


def test_failure_limit_counts_breaches_within_for_like_argo():
    r = rule(for_=60.0, failure_limit=2)
    B, K = Outcome.BREACH, Outcome.OK
    state, events = run(r, [B, K, B, K, K])  # two breaches in a minute: tolerated
    assert Event.FIRED not in events and state.phase is Phase.PENDING
    state, events = run(r, [B, K, B, K, B])  # the third within 60 s fires
    assert events[-1] is Event.FIRED
    state, events = run(r, [B, K, K, K, K, K, K, B, K, B])  # the first one has left the window
    assert Event.FIRED not in events


def test_no_data_does_not_resolve_a_firing_rule():
    state, _ = run(rule(), [Outcome.BREACH] * 4 + [Outcome.NO_DATA] * 3)
    assert state.phase is Phase.FIRING


def test_state_round_trips_through_json():
    state, _ = run(rule(), [Outcome.BREACH] * 2)
    assert SeriesState.from_json(state.to_json()) == state


outcomes = st.lists(st.sampled_from(list(Outcome)), max_size=40)


@settings(max_examples=examples(300), deadline=None)
@given(outcomes, st.sampled_from([0.0, 10.0, 30.0, 60.0]))
def test_a_breach_shorter_than_for_never_fires(seq, for_):
    # Observed breaches are never `for` long if every run of BREACH spans less than `for`.
    # Warming up and up to `error_limit` consecutive no-data verdicts neither prove nor
    # disprove a breach, so they continue a run; anything else ends it.
    r = rule(for_=for_)
    state = SeriesState()
    run_start = None
    gaps = 0
    for i, o in enumerate(seq):
        now = i * 10.0
        state, new = step(state, verdict(o, 2.0 if o is Outcome.BREACH else 0.5), r, now)
        gaps = gaps + 1 if o is Outcome.NO_DATA else 0
        continues = o in (Outcome.BREACH, Outcome.WARMING_UP) or (o is Outcome.NO_DATA and gaps <= r.error_limit)
        run_start = (run_start if run_start is not None else now) if continues else None
        if Event.FIRED in new:
            assert run_start is not None and now - run_start >= for_


@settings(max_examples=examples(300), deadline=None)
@given(outcomes)
def test_no_data_never_fires_a_rule_that_ignores_it(seq):
    r = rule(on_no_data="ignore")
    seq = [o if o is not Outcome.BREACH else Outcome.NO_DATA for o in seq]
    _, events = run(r, seq)
    assert Event.FIRED not in events and Event.NO_DATA_STARTED not in events


@settings(max_examples=examples(200), deadline=None)
@given(outcomes)
def test_no_data_alerts_open_and_close_in_pairs(seq):
    _, events = run(rule(on_no_data="alert"), seq)
    opened = [e for e in events if e in (Event.NO_DATA_STARTED, Event.NO_DATA_ENDED)]
    assert all(a != b for a, b in zip(opened, opened[1:]))
    assert not opened or opened[0] is Event.NO_DATA_STARTED
