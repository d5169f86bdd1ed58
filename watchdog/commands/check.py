"""`model-watchdog check`: judge every rule once against live sources, acting on nothing."""

from __future__ import annotations

from typing import Any

from watchdog.config import plugins
from watchdog.clock import Clock, SystemClock
from watchdog.config.loader import LoadedConfig
from watchdog.errors import QueryError, SourceError, WatchdogError
from watchdog.rules.evaluate import Situation, describe_threshold, judge_rule
from watchdog.config.templating import variables_for
from watchdog.sources.base import QueryResult, Source
from watchdog.sources.runner import invoke


def run_check(loaded: LoadedConfig, gap: float = 2.0, clock: Clock | None = None) -> list[dict[str, Any]]:
    clock = clock or SystemClock()
    sources: dict[str, Source] = {n: plugins.create(plugins.SOURCES, s) for n, s in loaded.config.sources.items()}
    try:
        used = {c.source or lr.rule.source for lr in loaded.rules for c in lr.rule.conditions()}
        # Rates need two samples; a second fetch `gap` seconds later gives them an estimate.
        needs_two = any(sources[c.source or lr.rule.source].window_of(c.query) > 0
                        for lr in loaded.rules for c in lr.rule.conditions() if "{{" not in c.query)
        for name in used:
            sources[name].begin_tick(clock.now())
        if needs_two and gap > 0:
            clock.sleep(gap)
            for name in used:
                sources[name].begin_tick(clock.now())
        now = clock.now()
        return [row for lr in loaded.rules for row in _rows(lr, sources, loaded, now)]
    finally:
        for source in sources.values():
            source.close()


def ask_once(source: Source, query: str, at: float, params: dict[str, str] | None = None) -> QueryResult | WatchdogError:
    """One query for a one-off look (`check`, `explain`): errors are returned, and a window
    that is not full yet is still worth judging, so it is not reported as warming up."""
    try:
        result = invoke(source, query, at, params)
    except (SourceError, QueryError) as exc:
        return exc
    if not result.samples and result.warming_up:
        return QueryResult([], False, "window not filled yet (one-off look)")
    return result


def _rows(lr: Any, sources: dict[str, Source], loaded: LoadedConfig, now: float) -> list[dict[str, Any]]:
    rule = lr.rule

    def fetch(source: str, query: str, at: float, params: dict[str, str] | None = None) -> Any:
        return ask_once(sources[source], query, at, params)

    variables = variables_for(lr.target, loaded.config.targets[lr.target].variables, None, None)
    version = loaded.config.targets[lr.target].version
    if version is not None:
        found = fetch(version.source, version.query, now, None)
        variables["version"] = next((s.label(version.label) for s in getattr(found, "samples", []) if s.label(version.label)), None)
    return [{"target": lr.target, "rule": rule.name, "labels": dict(v.labels), "value": v.value, "baseline": v.baseline,
             "threshold": describe_threshold(rule), "verdict": v.outcome.value, "reason": v.reason}
            for v in judge_rule(rule, Situation(fetch, now, variables))]
