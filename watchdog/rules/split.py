"""Fleet rules: one query for many targets, each series routed to its target by a label.

A rule file with `targets: [...]` and `split_by: LABEL` runs each query ONCE per tick for all
its targets (10,000 rules on a `prometheus` source cost 10 queries, not 10,000). A series goes
to the target whose key equals the series' LABEL value; a target's key is its variable named
LABEL when it has one (`variables: {instance: "10.0.0.7:8080"}`), else its name. A series
whose value is no target's key belongs to no target and is not judged. Queries of such a file
take no `{{placeholders}}`: one query serves every target.

Pure: `Router` groups a result's samples by key once per (query, time), so routing a fleet's
result costs one pass, not one pass per target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Callable

from watchdog.errors import WatchdogError

if TYPE_CHECKING:
    from watchdog.samples import QueryResult

Fetch = Callable[[str, str, float, "dict[str, str] | None"], "QueryResult | WatchdogError"]


def target_key(target: str, variables: Mapping[str, str], label: str) -> str:
    """The value of `label` that routes a series to `target`."""
    return variables.get(label, target)


class Router:
    """Routes the results of split rules' queries to targets; forget it at every tick."""

    def __init__(self, fetch: Fetch):
        self.fetch = fetch
        self._grouped: dict[tuple[str, str, float, str], tuple[QueryResult, dict[str | None, QueryResult]]] = {}

    def clear(self) -> None:
        self._grouped.clear()

    def fetch_for(self, label: str, key: str) -> Fetch:
        """A fetch that answers with the series of one target only (bound parameters are not
        sent: the query is the same for every target, so it runs once)."""
        def fetch(source: str, query: str, at: float, _params: dict[str, str] | None = None) -> QueryResult | WatchdogError:
            grouped = self._group(source, query, at, label)
            if isinstance(grouped, WatchdogError):
                return grouped
            result, by_key = grouped
            mine = by_key.get(key)
            if mine is None:
                mine = by_key[key] = replace(result, samples=[])
            return mine
        return fetch

    def _group(self, source: str, query: str, at: float, label: str
               ) -> tuple[QueryResult, dict[str | None, QueryResult]] | WatchdogError:
        cache_key = (source, query, at, label)
        found = self._grouped.get(cache_key)
        if found is not None:
            return found
        result = self.fetch(source, query, at, None)
        if isinstance(result, WatchdogError):
            return result
        parts: dict[str | None, list] = {}  # type: ignore[type-arg]
        for sample in result.samples:
            parts.setdefault(sample.label(label), []).append(sample)
        # each target's result built once per (query, time), not once per rule asking
        by_key = {k: replace(result, samples=samples) for k, samples in parts.items()}
        self._grouped[cache_key] = (result, by_key)
        return result, by_key


def explain(label: str, targets: Sequence[tuple[str, Mapping[str, str]]], shown: int = 3) -> str:
    """`validate`'s account of where a split file's series go."""
    routes = [f'{label}="{target_key(name, variables, label)}" → {name}' for name, variables in targets[:shown]]
    more = f", … ({len(targets)} targets)" if len(targets) > shown else ""
    by_variable = sum(1 for _, variables in targets if label in variables)
    how = ("by the target's name" if by_variable == 0 else
           f"by the target's variable '{label}'" if by_variable == len(targets) else
           f"by the target's variable '{label}' ({by_variable} targets), else its name")
    return (f"each query runs once per tick; a series goes to the target its '{label}' label names, {how}: "
            f"{', '.join(routes)}{more}; a series with another or no '{label}' goes to no target")
