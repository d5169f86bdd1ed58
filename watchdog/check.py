"""`model-watchdog check`: judge every rule once against live sources, acting on nothing."""

from __future__ import annotations

import time
from typing import Any

from watchdog import plugins
from watchdog.config.loader import LoadedConfig
from watchdog.errors import QueryError, SourceError
from watchdog.rules.evaluate import Situation, describe_threshold, judge_rule
from watchdog.rules.templating import variables_for
from watchdog.sources.base import Source


def run_check(loaded: LoadedConfig, gap: float = 2.0) -> list[dict[str, Any]]:
    sources: dict[str, Source] = {n: plugins.create(plugins.SOURCES, s) for n, s in loaded.config.sources.items()}
    try:
        used = {c.source or lr.rule.source for lr in loaded.rules for c in lr.rule.conditions()}
        # Rates need two samples; a second fetch `gap` seconds later gives them an estimate.
        needs_two = any(sources[c.source or lr.rule.source].window_of(c.query) > 0
                        for lr in loaded.rules for c in lr.rule.conditions() if "{{" not in c.query)
        for name in used:
            sources[name].begin_tick(time.time())
        if needs_two and gap > 0:
            time.sleep(gap)
            for name in used:
                sources[name].begin_tick(time.time())
        now = time.time()
        return [row for lr in loaded.rules for row in _rows(lr, sources, loaded, now)]
    finally:
        for source in sources.values():
            source.close()


def _rows(lr: Any, sources: dict[str, Source], loaded: LoadedConfig, now: float) -> list[dict[str, Any]]:
    rule = lr.rule

    def fetch(source: str, query: str, at: float) -> Any:
        try:
            result = sources[source].query(query, at)
        except (SourceError, QueryError) as exc:
            return exc
        # `check` is a one-off look: a window that is not full is still worth judging.
        return result if result.samples or not result.warming_up else type(result)([], False, "window not filled (one-off check)")

    variables = variables_for(lr.target, loaded.config.targets[lr.target].variables, None, None)
    version = loaded.config.targets[lr.target].version
    if version is not None:
        found = fetch(version.source, version.query, now)
        variables["version"] = next((s.label(version.label) for s in getattr(found, "samples", []) if s.label(version.label)), None)
    return [{"target": lr.target, "rule": rule.name, "labels": dict(v.labels), "value": v.value, "baseline": v.baseline,
             "threshold": describe_threshold(rule), "verdict": v.outcome.value, "reason": v.reason}
            for v in judge_rule(rule, Situation(fetch, now, variables))]
