"""Judge one rule: pure, given a fetch function; no I/O of its own, no clock.

`judge_rule()` asks `fetch(source, query, at)` for what it needs — the rule's query, its
baseline (the previous version's value, or the value `offset` ago), the sample counts, the
conditions of a composite — and returns one `Verdict` per series: ok, breach, no data,
insufficient samples or warming up. The state machine (`rules.state`) decides what a verdict
means over time.
"""

from __future__ import annotations

import math
from dataclasses import replace

from watchdog.config.schema import Compare, Condition, Rule
from watchdog.errors import WatchdogError
from watchdog.rules.verdict import RULE_LEVEL, Outcome, Situation, Verdict, baseline_of, fetch_rendered, shown_labels, unnamed
from watchdog.samples import Labels, Sample, without_name


def is_breach(above: float | None, below: float | None, value: float) -> bool:
    return (above is not None and value > above) or (below is not None and value < below)


def describe_threshold(rule: Rule | Condition) -> str:
    parts = []
    if rule.above is not None and rule.below is not None:
        parts.append(f"outside [{rule.below:g}, {rule.above:g}]")
    elif rule.above is not None:
        parts.append(f"> {rule.above:g}")
    elif rule.below is not None:
        parts.append(f"< {rule.below:g}")
    if rule.compare is not None:
        parts.append(describe_compare(rule.compare))
    if isinstance(rule, Rule) and rule.query is None:
        kinds = [k for k in ("all", "any") if getattr(rule, k)]
        parts.append(f"{kinds[0]} of {len(getattr(rule, kinds[0]))} conditions" if kinds else "")
    return " or ".join(p for p in parts if p)


def describe_compare(compare: Compare) -> str:
    limits = [f"+{compare.max_increase}" if compare.max_increase is not None else "",
              f"-{compare.max_decrease}" if compare.max_decrease is not None else ""]
    return f"vs {compare.baseline} beyond {'/'.join(x for x in limits if x)}"


# -- the rule -----------------------------------------------------------------------------------

def judge_rule(rule: Rule, situation: Situation) -> list[Verdict]:
    if rule.is_statistical():
        # imported here: watchdog.stats (≈50 KB of tests) is for statistical rules only, not start-up
        from watchdog.rules.statistical import judge_statistical
        verdicts = judge_statistical(rule, situation)
    elif rule.query is not None:
        verdicts = judge_condition(_main_condition(rule), rule.source, situation, rule.name)
        verdicts = _apply_min_samples(rule, verdicts, situation)
    else:
        verdicts = _apply_min_samples(rule, [_combine(rule, situation)], situation)
    if rule.unless and any(v.outcome is Outcome.BREACH for v in verdicts):
        verdicts = _apply_unless(rule, verdicts, situation)
    return verdicts


_MAIN: dict[int, tuple[Rule, Condition]] = {}  # by id(rule), the rule kept so that the id stays its own


def _main_condition(rule: Rule) -> Condition:
    """The rule's own query and threshold as a condition (built once per rule, not per tick)."""
    found = _MAIN.get(id(rule))
    if found is None or found[0] is not rule:
        if len(_MAIN) > 100_000:
            _MAIN.clear()
        found = _MAIN[id(rule)] = (rule, Condition(query=rule.query, source=rule.source, above=rule.above,
                                                   below=rule.below, compare=rule.compare))
    return found[1]


def judge_condition(condition: Condition, default_source: str, situation: Situation, name: str) -> list[Verdict]:
    source = condition.source or default_source
    result = fetch_rendered(situation, source, condition.query, situation.now)
    if isinstance(result, WatchdogError):
        return [Verdict(RULE_LEVEL, Outcome.NO_DATA, None, f"query failed: {result}")]
    samples = [Sample(unnamed(s.labels), s.value) for s in result.samples]
    if not samples:
        if result.warming_up:
            return [Verdict(RULE_LEVEL, Outcome.WARMING_UP, None, "warming up: the query's window is not filled yet")]
        note = f" ({result.note})" if result.note else ""
        return [Verdict(RULE_LEVEL, Outcome.NO_DATA, None, f"query returned no series{note}")]
    if len(samples) > 1 and len({s.labels for s in samples}) < len(samples):
        return [_same_labels(samples)]
    baselines = _baselines(condition.compare, source, condition.query, situation) if condition.compare else None
    counts = result.counts
    return [_judge_series(condition, s, baselines, counts, name) for s in samples]


def _same_labels(samples: list[Sample]) -> Verdict:
    """Series that differ only in `__name__` (or a source repeating one): one state key cannot
    judge both, so the query fails, as a Prometheus alerting rule does."""
    seen: set[Labels] = set()
    twice: Labels = ()
    for sample in samples:
        if sample.labels in seen:
            twice = sample.labels
            break
        seen.add(sample.labels)
    return Verdict(RULE_LEVEL, Outcome.NO_DATA, None,
                   f"query failed: it returned several series with the same labels {shown_labels(twice)} once "
                   "__name__ is dropped; make them unique (aggregate them, or keep what tells them apart in a label)")


def _judge_series(condition: Condition, sample: Sample, baselines: dict[Labels, float] | str | None,
                  counts: dict[Labels, float] | None, name: str) -> Verdict:
    value = sample.value
    n = counts.get(sample.labels) if counts else None
    if math.isnan(value):
        return Verdict(sample.labels, Outcome.NO_DATA, None, "value is NaN (e.g. 0/0: no traffic)", n)
    where = name + (shown_labels(sample.labels) if sample.labels else "")
    if is_breach(condition.above, condition.below, value):
        return Verdict(sample.labels, Outcome.BREACH, value, f"{where} = {value:.6g} is {describe_threshold(_plain(condition))}", n)
    if condition.compare is None:
        return Verdict(sample.labels, Outcome.OK, value, f"{where} = {value:.6g} is within threshold", n)
    return _judge_against_baseline(condition.compare, sample, where, baselines, n)


def _plain(condition: Condition) -> Condition:
    return replace(condition, compare=None)


def _judge_against_baseline(compare: Compare, sample: Sample, where: str, baselines: dict[Labels, float] | str | None,
                            n: float | None) -> Verdict:
    value = sample.value
    # The value itself is there; what is missing is something to compare it with (no previous
    # version yet, no history that far back): not judged, rather than a no-data alarm.
    if isinstance(baselines, str) or baselines is None:
        reason = baselines or "no baseline"
        return Verdict(sample.labels, Outcome.INSUFFICIENT, value, f"{where} = {value:.6g}; {reason}", n)
    base = baselines.get(_unversioned(sample.labels)) if len(baselines) > 1 else next(iter(baselines.values()), None)
    if base is None or math.isnan(base):
        return Verdict(sample.labels, Outcome.INSUFFICIENT, value, f"{where} = {value:.6g}; baseline has no matching series", n)
    breach, limit = _departs(compare, value, base)
    text = f"{where} = {value:.6g} vs baseline {base:.6g} ({compare.baseline}); limit {limit}"
    return Verdict(sample.labels, Outcome.BREACH if breach else Outcome.OK, value, text, n, base)


def _departs(compare: Compare, value: float, base: float) -> tuple[bool, str]:
    limits = []
    breach = False
    if compare.max_increase_value is not None:
        ceiling = compare.max_increase_value.above(base)
        breach |= value > ceiling
        limits.append(f"≤ {ceiling:.6g}")
    if compare.max_decrease_value is not None:
        floor = compare.max_decrease_value.below(base)
        breach |= value < floor
        limits.append(f"≥ {floor:.6g}")
    return breach, " and ".join(limits)


def _unversioned(labels: Labels) -> Labels:
    return tuple(p for p in labels if p[0] != "version")



def _baselines(compare: Compare, source: str, query: str, situation: Situation) -> dict[Labels, float] | str:
    """The baseline value per series (labels without `version`), or why there is none."""
    base = baseline_of(compare.baseline_value, situation)
    if isinstance(base, str):
        return base
    variables, at = base
    result = fetch_rendered(situation, source, query, at, variables)
    if not isinstance(result, WatchdogError) and not result.samples and compare.baseline_value.kind == "previous_version" \
            and situation.previous_seen_at is not None:
        # The previous version no longer serves (a full replacement, not a canary): its
        # series as they were when it last ran are the baseline.
        result = fetch_rendered(situation, source, query, situation.previous_seen_at, variables)
    if isinstance(result, WatchdogError):
        return f"baseline unavailable: {result}"
    if not result.samples:
        return f"baseline query returned no series ({compare.baseline})"
    return {_unversioned(without_name(s.labels)): s.value for s in result.samples}


# -- min_samples, composites, unless ---------------------------------------------------------------

def _apply_min_samples(rule: Rule, verdicts: list[Verdict], situation: Situation) -> list[Verdict]:
    if rule.min_samples is None:
        return verdicts
    counts: dict[Labels, float] | str
    if rule.min_samples.query is None:
        counts = {v.labels: v.samples for v in verdicts if v.samples is not None}
    else:
        result = fetch_rendered(situation, rule.source, rule.min_samples.query, situation.now)
        counts = (f"sample count query failed: {result}" if isinstance(result, WatchdogError)
                  else {without_name(s.labels): s.value for s in result.samples})
    return [_check_count(rule, v, counts) for v in verdicts]


def _check_count(rule: Rule, verdict: Verdict, counts: dict[Labels, float] | str) -> Verdict:
    assert rule.min_samples is not None
    if verdict.outcome not in (Outcome.OK, Outcome.BREACH):
        return verdict
    if isinstance(counts, str):
        return replace(verdict, outcome=Outcome.INSUFFICIENT, reason=counts)
    n = counts.get(verdict.labels)
    if n is None and len(counts) == 1 and () in counts:  # one unlabelled count applies to every series
        n = counts[()]
    if n is None or math.isnan(n) or n < rule.min_samples.at_least:
        shown = "none" if n is None or math.isnan(n) else f"{n:g}"
        return replace(verdict, outcome=Outcome.INSUFFICIENT, samples=n,
                       reason=f"insufficient samples: {shown} < {rule.min_samples.at_least:g}")
    return replace(verdict, samples=n)


def _holds(condition: Condition, default_source: str, situation: Situation) -> tuple[bool | None, Verdict]:
    """Whether a condition holds (any series breaches), False, or None when unknown."""
    verdicts = judge_condition(condition, default_source, situation, "value")
    shown = max((v for v in verdicts if v.value is not None), key=lambda v: v.value or 0, default=verdicts[0])
    if any(v.outcome is Outcome.BREACH for v in verdicts):
        return True, next(v for v in verdicts if v.outcome is Outcome.BREACH)
    if verdicts and all(v.outcome is Outcome.OK for v in verdicts):
        return False, shown
    return None, shown


def _combine(rule: Rule, situation: Situation) -> Verdict:
    kind = "all" if rule.all else "any"
    conditions: list[Condition] = list(rule.all or rule.any or [])
    judged = [(c, *_holds(c, rule.source, situation)) for c in conditions]
    parts = [f"[{c.query}] {v.reason}" + (" ✓" if h else "") for c, h, v in judged]
    reason = f"{rule.name}: {kind} of: " + "; ".join(parts)
    first = judged[0][2]
    states = [h for _, h, _ in judged]
    if kind == "all":
        outcome = Outcome.OK if False in states else (Outcome.BREACH if all(states) else None)
    else:
        outcome = Outcome.BREACH if True in states else (Outcome.OK if all(h is False for h in states) else None)
    if outcome is None:
        warming = any(v.outcome is Outcome.WARMING_UP for _, _, v in judged)
        outcome = Outcome.WARMING_UP if warming else Outcome.NO_DATA
    # Without a `min_samples.query`, the composite has as many samples as its thinnest condition.
    counts = [v.samples for _, _, v in judged if v.samples is not None]
    return Verdict(RULE_LEVEL, outcome, first.value, reason, min(counts) if counts else None)


def _apply_unless(rule: Rule, verdicts: list[Verdict], situation: Situation) -> list[Verdict]:
    # An `unless` condition without data does not suppress: a missing "load test running"
    # signal should not silence a real regression.
    for condition in rule.unless or []:
        holds, v = _holds(condition, rule.source, situation)
        if holds:
            why = f"suppressed: unless [{condition.query}] holds ({v.reason})"
            return [replace(x, outcome=Outcome.OK, reason=f"{x.reason}; {why}") if x.outcome is Outcome.BREACH else x
                    for x in verdicts]
    return verdicts
