"""Judge one rule's query result: pure, no I/O, no clock.

`judge()` turns what a source returned into one `Verdict` per series: ok, breach, no data,
insufficient samples or warming up. The state machine (`rules.state`) decides what a
verdict means over time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from watchdog.config.schema import Rule
from watchdog.errors import WatchdogError
from watchdog.samples import Labels, Sample, format_labels, without_name
from watchdog.sources.base import QueryResult


class Outcome(str, Enum):
    OK = "ok"
    BREACH = "breach"
    NO_DATA = "no_data"
    INSUFFICIENT = "insufficient"
    WARMING_UP = "warming_up"


@dataclass(frozen=True)
class Verdict:
    labels: Labels
    outcome: Outcome
    value: float | None
    reason: str
    samples: float | None = None


RULE_LEVEL: Labels = ()  # the key of verdicts about the rule as a whole (no series at all)


def is_breach(rule: Rule, value: float) -> bool:
    return (rule.above is not None and value > rule.above) or (rule.below is not None and value < rule.below)


def describe_threshold(rule: Rule) -> str:
    if rule.above is not None and rule.below is not None:
        return f"outside [{rule.below:g}, {rule.above:g}]"
    if rule.above is not None:
        return f"> {rule.above:g}"
    return f"< {rule.below:g}"


def judge(rule: Rule, result: QueryResult | WatchdogError,
          counts: QueryResult | WatchdogError | None = None) -> list[Verdict]:
    """One verdict per series of `result`; a single rule-level verdict when there is none."""
    if isinstance(result, WatchdogError):
        return [Verdict(RULE_LEVEL, Outcome.NO_DATA, None, f"query failed: {result}")]
    samples = [Sample(without_name(s.labels), s.value) for s in result.samples]
    if not samples:
        if result.warming_up:
            return [Verdict(RULE_LEVEL, Outcome.WARMING_UP, None, "warming up: the query's window is not filled yet")]
        note = f" ({result.note})" if result.note else ""
        return [Verdict(RULE_LEVEL, Outcome.NO_DATA, None, f"query returned no series{note}")]
    sample_counts = _count_map(counts)
    return [_judge_series(rule, s, sample_counts) for s in samples]


def _count_map(counts: QueryResult | WatchdogError | None) -> dict[Labels, float] | str | None:
    if counts is None:
        return None
    if isinstance(counts, WatchdogError):
        return f"sample count query failed: {counts}"
    return {without_name(s.labels): s.value for s in counts.samples}


def _judge_series(rule: Rule, sample: Sample, counts: dict[Labels, float] | str | None) -> Verdict:
    value = sample.value
    if math.isnan(value):
        return Verdict(sample.labels, Outcome.NO_DATA, None, "value is NaN (e.g. 0/0: no traffic)")
    n: float | None = None
    if counts is not None and rule.min_samples is not None:
        if isinstance(counts, str):
            return Verdict(sample.labels, Outcome.INSUFFICIENT, value, counts)
        n = _count_for(sample.labels, counts)
        if n is None or math.isnan(n) or n < rule.min_samples.at_least:
            shown = "none" if n is None or math.isnan(n) else f"{n:g}"
            return Verdict(sample.labels, Outcome.INSUFFICIENT, value,
                           f"insufficient samples: {shown} < {rule.min_samples.at_least:g}", n)
    where = format_labels(sample.labels) if sample.labels else ""
    if is_breach(rule, value):
        return Verdict(sample.labels, Outcome.BREACH, value,
                       f"{rule.name}{where} = {value:.6g} is {describe_threshold(rule)}", n)
    return Verdict(sample.labels, Outcome.OK, value, f"{rule.name}{where} = {value:.6g} is within threshold", n)


def _count_for(labels: Labels, counts: dict[Labels, float]) -> float | None:
    if labels in counts:
        return counts[labels]
    if len(counts) == 1 and () in counts:  # one unlabelled count applies to every series
        return counts[()]
    return None
