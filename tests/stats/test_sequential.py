"""Wald's SPRT for an error rate: a published plan, persistence, guard rails and simulations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.fuzzing import examples

from watchdog.stats import Counts, SprtState, sprt_result, sprt_start, sprt_update

# NIST/SEMATECH e-Handbook of Statistical Methods, 6.2.6 "What is a sequential sampling plan?":
# p1 = 0.01 (acceptable), p2 = 0.10 (rejectable), α = 0.05, β = 0.10. Its lines are
# accept at d ≤ −0.939 + 0.0397·n and reject at d ≥ 1.205 + 0.0397·n; for n = 24 the
# acceptance number is 0 and the rejection number is 3.
NIST = {"min_effect": 9.0, "confidence": 0.95, "power": 0.90}


def items(state: SprtState, outcomes: str) -> tuple[SprtState, list[str]]:
    """Feed one inspected item at a time: 'x' defective (an error), '.' good."""
    seen = []
    for o in outcomes:
        state, decision = sprt_update(state, Counts(1 if o == "x" else 0, 1))
        seen.append(decision)
    return state, seen


def test_nist_plan_lines():
    state = sprt_start(Counts(1, 100), **NIST)
    g = math.log(state.alternative_rate * (1 - state.baseline_rate) / (state.baseline_rate * (1 - state.alternative_rate)))
    slope = math.log((1 - state.baseline_rate) / (1 - state.alternative_rate)) / g
    assert -state.lower / g == pytest.approx(0.939, abs=1e-3)
    assert state.upper / g == pytest.approx(1.205, abs=1e-3)
    assert slope == pytest.approx(0.0397, abs=1e-4)


def test_nist_plan_accepts_after_24_good_items_not_23():
    state, seen = items(sprt_start(Counts(1, 100), **NIST), "." * 24)
    assert seen[22] == "inconclusive" and seen[23] == "ok"
    assert state.total == 24 and "ruled out" in state.reason


def test_nist_plan_rejects_at_the_third_defective_by_item_24():
    _, seen = items(sprt_start(Counts(1, 100), **NIST), "." * 21 + "xxx")
    assert seen[-2] == "inconclusive" and seen[-1] == "breach"


def test_batches_give_the_same_llr_as_single_items():
    one_by_one, _ = items(sprt_start(Counts(1, 100), **NIST), "." * 10 + "x")
    batched, _ = sprt_update(sprt_start(Counts(1, 100), **NIST), Counts(1, 11))
    assert batched.llr == pytest.approx(one_by_one.llr)


def test_decisions_are_final():
    state, _ = items(sprt_start(Counts(1, 100), **NIST), "xx")
    assert state.outcome == "breach"
    again, decision = sprt_update(state, Counts(0, 10_000))
    assert decision == "breach" and again == state


def test_state_round_trips_through_json():
    state, _ = sprt_update(sprt_start(Counts(20, 1000), min_effect=0.5), Counts(3, 150))
    assert SprtState.from_json(state.to_json()) == state
    assert sprt_result(state).details["llr"] == state.llr


def test_result_explains_the_decision():
    state, _ = items(sprt_start(Counts(1, 100), **NIST), "xx")
    result = sprt_result(state)
    assert result.verdict == "breach" and result.statistic == state.llr
    assert result.details["upper_boundary"] == pytest.approx(math.log(0.9 / 0.05))
    assert result.details["observed_rate"] == 1.0 and result.confidence == pytest.approx(0.95)


@pytest.mark.parametrize("baseline,min_effect,why", [
    (Counts(0, 10_000), 0.2, "no errors"),
    (Counts(3, 40), 0.2, "need 100"),
    (Counts(600, 1000), 1.0, "100%"),
])
def test_unusable_baseline_stays_inconclusive(baseline, min_effect, why):
    state = sprt_start(baseline, min_effect=min_effect)
    assert why in state.blocked
    state, decision = sprt_update(state, Counts(50, 100))
    assert decision == "inconclusive" and state.total == 100 and why in sprt_result(state).reason


@pytest.mark.parametrize("kwargs,message", [
    ({"min_effect": 0.0}, "min_effect must be > 0"),
    ({"min_effect": 0.2, "confidence": 0.5, "power": 0.4}, "power"),
    ({"min_effect": 0.2, "confidence": 95}, "percentage"),
])
def test_impossible_settings_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sprt_start(Counts(10, 1000), **kwargs)


def test_bad_counts_raise():
    state = sprt_start(Counts(10, 1000), min_effect=0.2)
    with pytest.raises(ValueError, match="exceed total"):
        sprt_update(state, Counts(5, 4))


@settings(max_examples=examples(60), deadline=None)
@given(rate=st.floats(0.001, 0.3), min_effect=st.floats(0.05, 2.0),
       batches=st.lists(st.integers(1, 5000), min_size=1, max_size=200))
def test_never_breaches_when_current_matches_baseline_exactly(rate, min_effect, batches):
    # Counts at exactly the baseline rate make every step lower the LLR (by total·KL(p0‖p1)).
    baseline = Counts(rate * 100_000, 100_000)
    state = sprt_start(baseline, min_effect=min_effect)
    for total in batches:
        state, decision = sprt_update(state, Counts(baseline.rate * total, total))
        assert decision != "breach"


def simulate(true_rate: float, runs: int, seed: int) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    outcomes = {"breach": 0, "ok": 0, "inconclusive": 0}
    for _ in range(runs):
        state = sprt_start(Counts(200, 10_000), min_effect=0.5, confidence=0.95, power=0.8)
        decision = "inconclusive"
        for errors in rng.binomial(50, true_rate, size=400):
            state, decision = sprt_update(state, Counts(int(errors), 50))
            if decision != "inconclusive":
                break
        outcomes[decision] += 1
    return outcomes


def test_false_alarm_rate_stays_near_alpha_when_nothing_changed():
    outcomes = simulate(true_rate=0.02, runs=400, seed=7)
    assert outcomes["breach"] / 400 <= 0.10  # α = 0.05; generous bound
    assert outcomes["ok"] / 400 >= 0.85


def test_detects_the_minimum_effect_with_roughly_the_stated_power():
    outcomes = simulate(true_rate=0.03, runs=200, seed=11)
    assert outcomes["breach"] / 200 >= 0.7  # power 0.8
