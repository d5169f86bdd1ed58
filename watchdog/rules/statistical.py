"""Statistical and drift rules: fetch counts or distributions for the running version and
its baseline, hand them to `watchdog.stats`, and turn the answer into a verdict.

breach → BREACH, ok → OK, inconclusive → INSUFFICIENT (not judged; `max_inconclusive`
bounds how long that may last). The test's full result goes into the verdict's `details`,
so the audit history shows every number behind the decision.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

from watchdog import stats
from watchdog.config.schema import Compare, Drift, Rule
from watchdog.config.values import Change
from watchdog.errors import WatchdogError
from watchdog.rules.verdict import RULE_LEVEL, Outcome, Situation, Verdict, baseline_of, fetch_rendered
from watchdog.samples import without_name

_OUTCOMES = {"breach": Outcome.BREACH, "ok": Outcome.OK, "inconclusive": Outcome.INSUFFICIENT}


class _Missing(WatchdogError):
    """A query gave nothing usable: the rule has no data this time."""


def judge_statistical(rule: Rule, situation: Situation) -> list[Verdict]:
    try:
        if rule.drift is not None:
            return [_drift(rule, rule.drift, situation)]
        assert rule.compare is not None
        return [_compare(rule, rule.compare, situation)]
    except _Missing as exc:
        return [Verdict(RULE_LEVEL, Outcome.NO_DATA, None, f"{rule.name}: {exc}")]


def _verdict(rule: Rule, result: stats.StatResult, value: float | None, baseline: float | None,
             memory: str | None = None) -> Verdict:
    return Verdict(RULE_LEVEL, _OUTCOMES[result.verdict], value, f"{rule.name}: {result.reason}",
                   baseline=baseline, details={"test": result.to_dict()}, memory=memory)


def _relative(value: Change | None) -> float:
    return 0.0 if value is None else value.amount


# -- fetching ------------------------------------------------------------------------------------

def _total(situation: Situation, source: str, query: str, variables: Mapping[str, str | None], at: float) -> float:
    result = fetch_rendered(situation, source, query, at, variables)
    if isinstance(result, WatchdogError):
        raise _Missing(f"query failed: {result}")
    values = [s.value for s in result.samples if not math.isnan(s.value)]
    return sum(values)  # no series: nothing counted (e.g. no errors at all)


def _counts(situation: Situation, rule: Rule, compare: Compare, variables: Mapping[str, str | None],
            at: float) -> stats.Counts:
    assert compare.errors and compare.total
    total = _total(situation, rule.source, compare.total, variables, at)
    errors = _total(situation, rule.source, compare.errors, variables, at)
    return stats.Counts(errors=max(0.0, min(errors, total)), total=max(0.0, total))


def _buckets(situation: Situation, source: str, query: str, variables: Mapping[str, str | None],
             at: float) -> dict[str, float]:
    result = fetch_rendered(situation, source, query, at, variables)
    if isinstance(result, WatchdogError):
        raise _Missing(f"query failed: {result}")
    buckets: dict[str, float] = {}
    for sample in result.samples:
        le = sample.label("le")
        if le is not None and not math.isnan(sample.value):
            buckets[le] = buckets.get(le, 0.0) + sample.value
    if not buckets:
        raise _Missing(f"{query} returned no buckets with an `le` label")
    return buckets


def _observations(situation: Situation, source: str, query: str, variables: Mapping[str, str | None],
                  at: float) -> list[float]:
    result = fetch_rendered(situation, source, query, at, variables)
    if isinstance(result, WatchdogError):
        raise _Missing(f"query failed: {result}")
    return [s.value for s in result.samples if not math.isnan(s.value)]


def _classes(situation: Situation, source: str, query: str, variables: Mapping[str, str | None],
             at: float) -> dict[str, float]:
    result = fetch_rendered(situation, source, query, at, variables)
    if isinstance(result, WatchdogError):
        raise _Missing(f"query failed: {result}")
    out: dict[str, float] = {}
    for s in result.samples:
        key = json.dumps({k: v for k, v in without_name(s.labels) if k != "version"}, sort_keys=True)
        out[key] = out.get(key, 0.0) + (0.0 if math.isnan(s.value) else s.value)
    if not out:
        raise _Missing(f"{query} returned no classes")
    return out


# -- the tests -----------------------------------------------------------------------------------

def _compare(rule: Rule, c: Compare, situation: Situation) -> Verdict:
    base = baseline_of(c.baseline_value, situation)
    if isinstance(base, str):
        return Verdict(RULE_LEVEL, Outcome.INSUFFICIENT, None, f"{rule.name}: {base}")
    base_vars, base_at = base
    if c.test == "mann_whitney" and c.samples is not None:
        now_values = _observations(situation, rule.source, c.samples, situation.variables, situation.now)
        then_values = _observations(situation, rule.source, c.samples, base_vars, base_at)
        result = stats.mann_whitney_samples(now_values, then_values, confidence=c.confidence,
                                            min_effect=_relative(c.min_effect_value), min_samples=int(c.min_total))
        return _verdict(rule, result, result.effect, None)
    if c.test == "mann_whitney":
        assert c.histogram
        current = _buckets(situation, rule.source, c.histogram, situation.variables, situation.now)
        reference = _buckets(situation, rule.source, c.histogram, base_vars, base_at)
        result = stats.mann_whitney_buckets(current, reference, confidence=c.confidence, min_effect=_relative(c.min_effect_value),
                                            min_samples=int(c.min_total))
        return _verdict(rule, result, result.effect, None)
    current_counts = _counts(situation, rule, c, situation.variables, situation.now)
    baseline_counts = _counts(situation, rule, c, base_vars, base_at)
    if c.test == "proportion":
        result = stats.proportion_test(current_counts, baseline_counts, confidence=c.confidence,
                                       min_effect=_relative(c.min_effect_value), min_total=c.min_total)
        return _verdict(rule, result, current_counts.rate, baseline_counts.rate)
    return _sequential(rule, c, situation, current_counts, baseline_counts)


def _sequential(rule: Rule, c: Compare, situation: Situation, current: stats.Counts, baseline: stats.Counts) -> Verdict:
    """Wald's SPRT over the counts seen since the running version started; its state (and
    the last cumulative counts) persist between evaluations in the verdict's `memory`."""
    memory: dict[str, Any] = json.loads(situation.memory) if situation.memory else {}
    version = situation.variables.get("version")
    restart = memory.get("version") != version or "sprt" not in memory
    if not restart and stats.SprtState.from_json(memory["sprt"]).blocked and baseline.total >= c.min_total:
        restart = True  # the baseline was too small when the test started; it is big enough now
    if restart:
        state = stats.sprt_start(baseline, min_effect=_relative(c.min_effect_value), confidence=c.confidence,
                                 power=c.power, min_baseline_total=c.min_total)
        last = [0.0, 0.0]
    else:
        state = stats.SprtState.from_json(memory["sprt"])
        last = memory["last"]
    new_errors = current.errors - last[0] if current.errors >= last[0] else current.errors  # counter reset
    new_total = current.total - last[1] if current.total >= last[1] else current.total
    state, _ = stats.sprt_update(state, stats.Counts(max(0.0, min(new_errors, new_total)), max(0.0, new_total)))
    remembered = json.dumps({"version": version, "sprt": state.to_json(), "last": [current.errors, current.total]})
    return _verdict(rule, stats.sprt_result(state), current.rate if current.total else None, baseline.rate, remembered)


def _drift(rule: Rule, d: Drift, situation: Situation) -> Verdict:
    base = baseline_of(d.reference_value, situation)
    if isinstance(base, str):
        return Verdict(RULE_LEVEL, Outcome.INSUFFICIENT, None, f"{rule.name}: {base}")
    base_vars, base_at = base
    if d.classes is not None:
        current = _classes(situation, rule.source, d.classes, situation.variables, situation.now)
        reference = _classes(situation, rule.source, d.classes, base_vars, base_at)
        results = [stats.psi(current, reference, threshold=d.psi_above or 0.0, min_total=d.min_total)]
    else:
        assert d.histogram
        cur_b = _buckets(situation, rule.source, d.histogram, situation.variables, situation.now)
        ref_b = _buckets(situation, rule.source, d.histogram, base_vars, base_at)
        results = []
        if d.psi_above is not None:
            results.append(stats.psi_buckets(cur_b, ref_b, threshold=d.psi_above, min_total=d.min_total))
        if d.ks_above is not None:
            results.append(stats.ks_buckets(cur_b, ref_b, threshold=d.ks_above, confidence=None, min_total=d.min_total))
    worst = next((r for r in results if r.verdict == "breach"), None) or \
        next((r for r in results if r.verdict == "inconclusive"), results[0])
    reason = "; ".join(r.reason for r in results)
    verdict = _verdict(rule, worst, worst.statistic, None)
    return Verdict(verdict.labels, verdict.outcome, verdict.value, f"{rule.name}: {reason}", baseline=None,
                   details={"tests": [r.to_dict() for r in results]})
