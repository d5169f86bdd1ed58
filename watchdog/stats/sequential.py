"""Wald's sequential probability ratio test (SPRT) for an error rate, evaluated as data arrives.

H0: the current error rate equals the baseline rate p₀; H1: it is p₁ = p₀·(1 + min_effect).
Each batch of `errors` out of `total` adds
    errors·ln(p₁/p₀) + (total − errors)·ln((1 − p₁)/(1 − p₀))
to the log-likelihood ratio (LLR). Wald's boundaries, with α = 1 − confidence and β = 1 − power:
    LLR ≥ ln((1 − β)/α)  → `breach` (H1: the rate rose by at least min_effect)
    LLR ≤ ln(β/(1 − α))  → `ok`     (H0: an increase of min_effect is ruled out)
    otherwise            → `inconclusive` (keep collecting)
Because the boundaries account for looking after every batch, the rule may evaluate as often
as it likes without inflating false alarms (unlike re-running a fixed-sample test).

The first decision is final: continuing past a boundary would void the error guarantees, so
later updates return it unchanged. Start a new state (`sprt_start`) for a new comparison,
e.g. when a new version is deployed.

Simplifications, stated: p₀ is taken as known — estimate it from a baseline much larger than
the current sample, or the false-alarm rate exceeds α; checking only at batch ends (not after
every request) can overshoot a boundary, which makes the test slightly conservative.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from watchdog.stats._checks import check_confidence, check_counts
from watchdog.stats.result import BREACH, INCONCLUSIVE, OK, Counts, Decision, StatResult


@dataclass(frozen=True)
class SprtState:
    """Everything the test needs between evaluations; persisted as JSON in the state store."""

    baseline_rate: float  # p₀
    alternative_rate: float  # p₁ = p₀·(1 + min_effect)
    alpha: float  # false-alarm probability (1 − confidence)
    beta: float  # probability of missing a real min_effect increase (1 − power)
    llr: float = 0.0
    errors: float = 0.0  # accumulated current-version counts
    total: float = 0.0
    steps: int = 0  # updates that carried data
    outcome: Decision = INCONCLUSIVE
    reason: str = ""
    blocked: str = ""  # non-empty: why this test cannot run (it then stays inconclusive)

    @property
    def upper(self) -> float:
        return math.log((1 - self.beta) / self.alpha)

    @property
    def lower(self) -> float:
        return math.log(self.beta / (1 - self.alpha))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> SprtState:
        data = json.loads(text)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def sprt_start(baseline: Counts, *, min_effect: float, confidence: float = 0.95, power: float = 0.8,
               min_baseline_total: float = 100) -> SprtState:
    """A fresh test against the baseline's error rate; `min_effect` is relative (0.2 = +20 %).

    Raises ValueError for impossible settings; a baseline that cannot support the test (too
    few events, no errors, p₁ ≥ 1) gives a *blocked* state that always answers inconclusive.
    """
    baseline = check_counts("baseline", baseline)
    alpha = 1 - check_confidence(confidence)
    beta = 1 - check_confidence(power, "power")
    if not isinstance(min_effect, (int, float)) or not min_effect > 0:
        raise ValueError(f"min_effect must be > 0, the relative increase to detect (0.2 = +20 %); got {min_effect!r}")
    if alpha + beta >= 1:
        raise ValueError(f"power ({power:g}) must exceed 1 − confidence ({alpha:g}), or the test cannot decide")
    p0 = baseline.rate
    p1 = p0 * (1 + min_effect)
    state = SprtState(baseline_rate=p0, alternative_rate=p1, alpha=alpha, beta=beta)
    blocked = _blocked(baseline, p1, min_baseline_total)
    return replace(state, blocked=blocked, reason=blocked or "no data yet")


def sprt_update(state: SprtState, new_counts: Counts) -> tuple[SprtState, Decision]:
    """Add one batch of current-version counts (a delta since the last update, not a running total)."""
    errors, total = check_counts("new_counts", new_counts)
    if state.outcome != INCONCLUSIVE:
        return state, state.outcome
    if state.blocked or total == 0:
        return replace(state, errors=state.errors + errors, total=state.total + total), state.outcome
    llr = state.llr + errors * math.log(state.alternative_rate / state.baseline_rate) + \
        (total - errors) * math.log((1 - state.alternative_rate) / (1 - state.baseline_rate))
    grown = replace(state, llr=llr, errors=state.errors + errors, total=state.total + total, steps=state.steps + 1)
    outcome = BREACH if llr >= state.upper else OK if llr <= state.lower else INCONCLUSIVE
    return replace(grown, outcome=outcome, reason=_reason(grown, outcome)), outcome


def sprt_result(state: SprtState) -> StatResult:
    """The state as a StatResult for the audit history (statistic = LLR)."""
    observed = state.errors / state.total if state.total else None
    effect = (observed / state.baseline_rate - 1) if observed is not None and state.baseline_rate > 0 else None
    details: dict[str, Any] = {**asdict(state), "upper_boundary": state.upper, "lower_boundary": state.lower,
                               "observed_rate": observed}
    return StatResult(name="sprt", statistic=state.llr, p_value=None, effect=effect, confidence=1 - state.alpha,
                      verdict=state.outcome, reason=state.reason, details=details)


def _blocked(baseline: Counts, p1: float, min_baseline_total: float) -> str:
    if baseline.total < min_baseline_total:
        return f"baseline has {baseline.total:g} events, need {min_baseline_total:g} to estimate its error rate"
    if baseline.errors == 0:
        return (f"baseline has no errors in {baseline.total:g} events: a relative increase of 0 cannot be "
                "tested; use a threshold rule or a proportion test")
    if p1 >= 1:
        return f"baseline rate {baseline.rate:.2%} × (1 + min_effect) reaches 100%: lower min_effect"
    return ""


def _reason(state: SprtState, outcome: Decision) -> str:
    observed = f"{state.errors:g}/{state.total:g} = {state.errors / state.total * 100:.4g}%"
    versus = f"vs H0 {state.baseline_rate * 100:.4g}% and H1 {state.alternative_rate * 100:.4g}%"
    llr = f"LLR {state.llr:.3f}"
    if outcome == BREACH:
        return f"{observed} {versus}; {llr} ≥ {state.upper:.3f}: the rate rose by at least min_effect"
    if outcome == OK:
        return f"{observed} {versus}; {llr} ≤ {state.lower:.3f}: an increase of min_effect is ruled out"
    return f"{observed} {versus}; {state.lower:.3f} < {llr} < {state.upper:.3f}: keep collecting"
