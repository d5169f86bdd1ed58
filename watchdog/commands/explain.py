"""`model-watchdog explain TARGET RULE`: one rule, evaluated now, step by step. Acts on nothing.

The steps are those of a tick: the query sent to the source, the series it returned, the
sample counts of `min_samples` and how each was matched to a series, the comparison with the
threshold, and the state machine step from the state stored by the daemon to the state it
would move to (with the `for` timer). The verdicts come from the engine's own `judge()` and
`step()`; nothing is written to the state store and no actuator or alerter is built.
"""

from __future__ import annotations

import math
import os
from typing import Any

from watchdog.config import plugins
from watchdog.clock import Clock, SystemClock, rfc3339
from watchdog.config.fields import suggest
from watchdog.commands.check import ask_once
from watchdog.config.loader import LoadedConfig
from watchdog.config.schema import LoadedRule, Rule
from watchdog.durations import format_duration
from watchdog.engine import series_key
from watchdog.errors import WatchdogError
from watchdog.samples import format_labels
from watchdog.rules.evaluate import Outcome, Situation, Verdict, describe_threshold, judge_rule
from watchdog.rules.state import Phase, SeriesState, step
from watchdog.config.templating import PLACEHOLDER, TemplateError, render, variables_for
from watchdog.sources.base import QueryResult, Source
from watchdog.state.base import StateStore, Versions


class ExplainError(WatchdogError):
    """An unknown target or rule, or a rule `explain` cannot take apart (exit 2)."""


def find_rule(loaded: LoadedConfig, target: str, name: str) -> LoadedRule:
    if target not in loaded.config.targets:
        hint = suggest(target, loaded.config.targets) or f" (targets: {', '.join(loaded.config.targets) or 'none'})"
        raise ExplainError(f"unknown target '{target}'{hint}")
    rules = [lr for lr in loaded.rules if lr.target == target]
    for lr in rules:
        if lr.rule.name == name:
            return lr
    names = [lr.rule.name for lr in rules]
    hint = suggest(name, names) or f" (rules: {', '.join(names) or 'none'})"
    raise ExplainError(f"target '{target}' has no rule '{name}'{hint}")


def run_explain(loaded: LoadedConfig, target: str, name: str, gap: float = 2.0, clock: Clock | None = None) -> dict[str, Any]:
    """Build the rule's sources, fetch (twice, `gap` apart, for windowed queries) and explain."""
    clock = clock or SystemClock()
    lr = find_rule(loaded, target, name)
    version = loaded.config.targets[target].version
    names = sorted({c.source or lr.rule.source for c in lr.rule.conditions()} | {lr.rule.source}
                   | ({version.source} if version is not None else set()))
    sources: dict[str, Source] = {}
    try:
        for source_name in names:
            sources[source_name] = plugins.create(plugins.SOURCES, loaded.config.sources[source_name])
        errors = {n: s.begin_tick(clock.now()) for n, s in sources.items()}
        windowed = any(_window(sources, lr, c) > 0 for c in lr.rule.conditions())
        if windowed and gap > 0:
            clock.sleep(gap)  # a rate needs two samples
            errors = {n: s.begin_tick(clock.now()) for n, s in sources.items()}
        store = _open_store_if_present(loaded.state_path)
        try:
            report = explain_rule(loaded, lr, sources, store, clock.now())
        finally:
            if store is not None:
                store.close()
    finally:
        for source in sources.values():
            source.close()
    report["sources"] = {n: {"type": loaded.config.sources[n].type,
                             "fetch_error": str(e) if e is not None else None} for n, e in errors.items()}
    return report


def _window(sources: dict[str, Source], lr: LoadedRule, condition: Any) -> float:
    query = PLACEHOLDER.sub("x", condition.query or "")
    return sources[condition.source or lr.rule.source].window_of(query)


def _open_store_if_present(path: str) -> StateStore | None:
    """The daemon's store, or None when there is no state file yet (explain never creates one)."""
    from watchdog.state import open_store

    if "://" not in path and not os.path.exists(path):
        return None
    return open_store(path)


def explain_rule(loaded: LoadedConfig, lr: LoadedRule, sources: dict[str, Source], store: StateStore | None,
                 now: float) -> dict[str, Any]:
    """Every step of one evaluation of `lr` at `now`, as plain data (the `--json` form)."""
    rule = lr.rule
    fetches: list[dict[str, Any]] = []

    def fetch(source: str, query: str, at: float, params: dict[str, str] | None = None) -> QueryResult | WatchdogError:
        result = ask_once(sources[source], query, at, params)
        fetches.append({"source": source, "query": query, "at": rfc3339(at), "offset": now - at,
                        **_result(result)})
        return result

    variables = _variables(loaded, lr.target, store, _live_version(loaded, lr.target, sources, now))
    verdicts = judge_rule(rule, Situation(fetch, now, variables))
    states = store.load_rule_states() if store is not None else {}
    hold = store.holds().get(lr.target) if store is not None else None
    return {
        "target": lr.target, "rule": rule.name, "at": rfc3339(now), "file": lr.file,
        "queries": fetches,
        "min_samples": None if rule.min_samples is None else {
            "query": rule.min_samples.query, "at_least": rule.min_samples.at_least},
        "threshold": describe_threshold(rule), "for": rule.for_, "action": rule.action,
        "state_store": None if store is None else str(getattr(store, "path", "open")),
        "held": None if hold is None else {"since": rfc3339(hold.since), "decision_id": hold.decision_id,
                                           "reason": hold.reason},
        "series": [_series_step(lr, v, fetches, variables, states, now) for v in verdicts],
    }


def _live_version(loaded: LoadedConfig, target: str, sources: dict[str, Source], now: float) -> str | None:
    """The version running now, read as the engine reads it (the target's `version:` query)."""
    spec = loaded.config.targets[target].version
    if spec is None or spec.source not in sources:
        return None
    result = ask_once(sources[spec.source], spec.query, now)
    if isinstance(result, WatchdogError):
        return None
    return next((s.label(spec.label) for s in result.samples if s.label(spec.label)), None)


def _variables(loaded: LoadedConfig, target: str, store: Versions | None,
               live: str | None = None) -> dict[str, str | None]:
    """The placeholder values the engine would use: the running and the previous good version
    (the running one read live, so `explain` works without the daemon's state file too)."""
    current = live or (store.current_version(target) if store is not None else None)
    previous = None
    for record in store.versions(target) if store is not None else []:
        if record.version != current and not record.bad:
            previous = record.version
            break
    variables = getattr(loaded.config.targets[target], "variables", None) or {}
    return variables_for(target, variables, current, previous)


def _result(result: QueryResult | WatchdogError) -> dict[str, Any]:
    if isinstance(result, WatchdogError):
        return {"error": str(result), "note": None, "series": []}
    return {"error": None, "note": result.note or None,
            "series": [{"labels": dict(s.labels), "value": _num(s.value)} for s in result.samples]}


def _series_step(lr: LoadedRule, verdict: Verdict, fetches: list[dict[str, Any]], variables: dict[str, str | None],
                 states: dict[tuple[str, str, str], str], now: float) -> dict[str, Any]:
    rule = lr.rule
    stored = states.get((lr.target, rule.name, series_key(verdict.labels)))
    prev = SeriesState.from_json(stored) if stored else SeriesState()
    nxt, events = step(prev, verdict, rule, now)
    remaining = None
    if nxt.phase is Phase.PENDING and nxt.pending_since is not None:
        remaining = max(0.0, rule.for_ - (now - nxt.pending_since))
    judged = verdict.outcome in (Outcome.OK, Outcome.BREACH)
    return {
        "labels": dict(verdict.labels), "value": _num(verdict.value), "outcome": verdict.outcome.value,
        "reason": verdict.reason,
        "samples": _count_step(rule, verdict, fetches, variables),
        "comparison": None if not judged or verdict.value is None else {
            "value": _num(verdict.value), "threshold": describe_threshold(rule),
            "baseline": _num(getattr(verdict, "baseline", None)), "breach": verdict.outcome is Outcome.BREACH},
        "state": {"stored": stored is not None, "previous": prev.phase.value,
                  "previous_evaluated_at": rfc3339(prev.evaluated_at) if prev.evaluated_at else None,
                  "pending_since": rfc3339(nxt.pending_since) if nxt.pending_since else None,
                  "next": nxt.phase.value, "events": [e.value for e in events], "for_remaining": remaining},
    }


def _render(query: str, variables: dict[str, str | None]) -> str | None:
    try:
        return render(query, variables)
    except TemplateError:
        return None


def _count_step(rule: Rule, verdict: Verdict, fetches: list[dict[str, Any]],
                variables: dict[str, str | None]) -> dict[str, Any] | None:
    """How the series' sample count was found (min_samples) and whether it is enough."""
    if rule.min_samples is None:
        return None
    at_least = rule.min_samples.at_least
    count = verdict.samples
    labels = dict(verdict.labels)
    query = rule.min_samples.query
    sent = _render(query, variables) if query is not None else None
    recorded = next((f for f in fetches if f["query"] == sent), None)
    if query is None:
        match = "count reported by the source with the series"
    elif recorded is None or recorded["error"]:
        match = f"count query failed: {recorded['error']}" if recorded else "count query not run (series not judged)"
    elif any(s["labels"] == labels or _plain_labels(s["labels"]) == labels for s in recorded["series"]):
        match = "count series with the same labels"
    elif len(recorded["series"]) == 1 and not _plain_labels(recorded["series"][0]["labels"]):
        match = "the one unlabelled count applies to every series"
    else:
        match = "no count series with these labels"
    enough = verdict.outcome is not Outcome.INSUFFICIENT
    return {"count": _num(count), "match": match, "enough": enough, "at_least": at_least}


def _plain_labels(labels: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k != "__name__"}


def _num(value: float | None) -> float | str | None:
    if value is None:
        return None
    if math.isnan(value) or math.isinf(value):
        return str(value)  # JSON has no NaN/Inf
    return value


# -- text ------------------------------------------------------------------------------------------------


def format_text(report: dict[str, Any]) -> list[str]:
    """The steps for people, in the order a tick runs them."""
    lines = [f"explain {report['target']}/{report['rule']} at {report['at']} — nothing is acted on or written"]
    for name, src in (report.get("sources") or {}).items():
        if src.get("fetch_error"):
            lines.append(f"source {name} ({src['type']}): fetch failed: {src['fetch_error']}")
    lines.append(f"1. queries sent: {len(report['queries'])}")
    for i, q in enumerate(report["queries"], 1):
        when = f" at now-{format_duration(q['offset'])}" if q["offset"] > 0 else ""
        lines.append(f"   [{i}] source {q['source']}{when}: {q['query']}")
        lines += _result_lines(q)
    lines.append("2. sample counts (min_samples)" + ("" if report["min_samples"] else ": none, every series is judged"))
    for s in report["series"] if report["min_samples"] else []:
        c = s["samples"]
        verdict = "enough" if c["enough"] else "too few: not judged"
        lines.append(f"     {_labels(s['labels'])}: {_value(c['count'])} ({c['match']}) vs at least {c['at_least']:g}: {verdict}")
    lines.append(f"3. comparison with the threshold ({report['threshold']})")
    for s in report["series"]:
        lines.append(f"     {_labels(s['labels'])}: {_comparison_text(s)}")
    store = report["state_store"] or "no state file yet: every series starts inactive"
    lines.append(f"4. state machine (for {format_duration(report['for'])}; stored state from {store})")
    for s in report["series"]:
        lines.append(f"     {_labels(s['labels'])}: {_state_text(s, report['action'])}")
    if report["held"]:
        h = report["held"]
        lines.append(f"target {report['target']} is held since {h['since']} (decision {h['decision_id']}): "
                     "a firing rollback rule would not roll back again until `model-watchdog resume`")
    return lines


def _result_lines(q: dict[str, Any]) -> list[str]:
    if q["error"]:
        return [f"       failed: {q['error']}"]
    note = f" ({q['note']})" if q.get("note") else ""
    lines = [f"       {len(q['series'])} series returned{note}"]
    return lines + [f"       {_labels(s['labels'])}  {_value(s['value'])}" for s in q["series"]]


def _comparison_text(s: dict[str, Any]) -> str:
    c = s["comparison"]
    if c is None:
        return f"not compared: {s['outcome']} ({s['reason']})"
    base = f" (baseline {_value(c['baseline'])})" if c.get("baseline") is not None else ""
    return f"{_value(c['value'])} {c['threshold']}{base}? {'yes: breach' if c['breach'] else 'no: ok'}"


def _state_text(s: dict[str, Any], action: str) -> str:
    st = s["state"]
    text = f"{st['previous']} → {st['next']}" + ("" if st["stored"] else " (no stored state)")
    if st["events"]:
        text += f"; would record: {', '.join(st['events'])}"
    if "fired" in st["events"]:
        text += f"; would {'roll back' if action == 'rollback' else 'alert'}"
    if st["for_remaining"] is not None:
        text += f"; fires in {format_duration(st['for_remaining'])} if the breach holds"
    return text


def _labels(labels: dict[str, str]) -> str:
    return format_labels(tuple(sorted(labels.items())))


def _value(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}" if isinstance(value, float) else str(value)
