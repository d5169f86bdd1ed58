"""`model-watchdog check`: judge every rule once against live sources, acting on nothing."""

from __future__ import annotations

import time
from typing import Any

from watchdog import plugins
from watchdog.config.loader import LoadedConfig
from watchdog.errors import QueryError, SourceError
from watchdog.rules.evaluate import describe_threshold, judge
from watchdog.sources.base import Source


def run_check(loaded: LoadedConfig, gap: float = 2.0) -> list[dict[str, Any]]:
    sources: dict[str, Source] = {n: plugins.create(plugins.SOURCES, s) for n, s in loaded.config.sources.items()}
    try:
        for lr in loaded.rules:
            sources[lr.rule.source].check_query(lr.rule.query)
        used = {lr.rule.source for lr in loaded.rules}
        # Rates need two samples; a second fetch `gap` seconds later gives them an estimate.
        needs_two = any(sources[lr.rule.source].window_of(lr.rule.query) > 0 for lr in loaded.rules)
        for name in used:
            sources[name].begin_tick(time.time())
        if needs_two and gap > 0:
            time.sleep(gap)
            for name in used:
                sources[name].begin_tick(time.time())
        now = time.time()
        return [row for lr in loaded.rules for row in _rows(lr, sources[lr.rule.source], now)]
    finally:
        for source in sources.values():
            source.close()


def _rows(lr: Any, source: Source, now: float) -> list[dict[str, Any]]:
    rule = lr.rule

    def ask(query: str) -> Any:
        try:
            result = source.query(query, now)
        except (SourceError, QueryError) as exc:
            return exc
        # `check` is a one-off look: a window that is not full is still worth judging.
        return result if result.samples or not result.warming_up else type(result)([], False, "window not filled (one-off check)")

    counts = ask(rule.min_samples.query) if rule.min_samples else None
    return [{"target": lr.target, "rule": rule.name, "labels": dict(v.labels), "value": v.value,
             "threshold": describe_threshold(rule), "verdict": v.outcome.value, "reason": v.reason}
            for v in judge(rule, ask(rule.query), counts)]
