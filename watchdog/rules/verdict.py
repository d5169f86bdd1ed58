"""What a rule is judged against and what judging it gives: shared by the threshold judge
(`rules.evaluate`) and the statistical one (`rules.statistical`), which both build on it.

`Situation` says how to fetch, when, and the placeholder values; `fetch_rendered` fills a
query's placeholders and asks; `baseline_of` says where a comparison's baseline comes from;
a `Verdict` is the outcome for one series.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Mapping

from watchdog.config.templating import TemplateError, bound_parameters, render
from watchdog.config.values import Baseline
from watchdog.errors import WatchdogError
from watchdog.samples import Labels, QueryResult, format_labels, without_name

# fetch(source, query, at, params): params carries bound values such as the version for SQL's
# `:version` (never spliced into query text).
Fetch = Callable[[str, str, float, "dict[str, str] | None"], "QueryResult | WatchdogError"]


class Outcome(str, Enum):
    OK = "ok"
    BREACH = "breach"
    NO_DATA = "no_data"
    INSUFFICIENT = "insufficient"
    WARMING_UP = "warming_up"


@dataclass(frozen=True, slots=True)
class Verdict:
    labels: Labels
    outcome: Outcome
    value: float | None
    reason: str
    samples: float | None = None
    baseline: float | None = None
    details: dict[str, Any] | None = None  # e.g. a statistical test's numbers, for the history
    memory: str | None = None  # state a sequential test carries to the next evaluation (JSON)


@dataclass(slots=True)
class Rendered:
    """Queries rendered for `variables`, filled as asked, and their bound parameters (one dict
    for all): the engine keeps one per target while its variables stay the same, so a query
    is rendered once, not once per tick (and its text is held once, not in a tuple each)."""

    variables: Mapping[str, str | None]
    params: dict[str, str] | None
    texts: dict[str, str | WatchdogError] = field(default_factory=dict)  # query → its text, or the error
    # (placeholder, literal) → its value escaped, while the queries are rendered (`render`'s `filled`)
    filled: dict[tuple[str, str | None], str] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, variables: Mapping[str, str | None]) -> "Rendered":
        return cls(variables, bound_parameters(variables))

    def text(self, query: str) -> str | WatchdogError:
        found = self.texts.get(query)
        if found is None:
            if self.filled is None:
                self.filled = {}
            found = self.texts[query] = render_query(query, self.variables, self.filled)
        return found


@dataclass(frozen=True, slots=True)
class Situation:
    """What a rule is judged against: how to fetch, when, and the placeholder values."""

    fetch: Fetch
    now: float
    variables: Mapping[str, str | None]
    memory: str | None = None  # what the rule-level verdict remembered last time
    previous_seen_at: float | None = None  # when the previous version was last seen running
    rendered: Rendered | None = None  # the queries rendered for `variables` (the engine's, per target)


RULE_LEVEL: Labels = ()  # the key of verdicts about the rule as a whole (no series at all)


def memo(function: Callable[[Labels], Any], limit: int = 65536) -> Callable[[Labels], Any]:
    """`function` (pure, of one label set) through a dict emptied when it holds `limit`
    entries: the same series every tick are worked out once, not once per rule and tick. (An
    lru_cache kept a 56-byte link per entry besides: ≈ 0.8 MB for the fleet's label sets.)"""
    cache: dict[Labels, Any] = {}

    def cached(labels: Labels) -> Any:
        found = cache.get(labels)
        if found is None:
            if len(cache) >= limit:
                cache.clear()
            found = cache[labels] = function(labels)
        return found
    cached.cache = cache  # type: ignore[attr-defined]  # (bench/memory.py counts it)
    return cached


shown_labels: Callable[[Labels], str] = memo(format_labels)
unnamed: Callable[[Labels], Labels] = memo(without_name)


def fetch_rendered(situation: Situation, source: str, query: str, at: float,
                   variables: Mapping[str, str | None] | None = None) -> QueryResult | WatchdogError:
    if variables is None and situation.rendered is not None:
        text = situation.rendered.text(query)
        return text if isinstance(text, WatchdogError) else situation.fetch(source, text, at, situation.rendered.params)
    try:
        rendered = render(query, variables if variables is not None else situation.variables)
    except TemplateError as exc:
        return WatchdogError(f"cannot fill in the query: {exc}")
    values = variables if variables is not None else situation.variables
    return situation.fetch(source, rendered, at, bound_parameters(values))


def render_query(query: str, variables: Mapping[str, str | None],
                 filled: dict[tuple[str, str | None], str] | None = None) -> str | WatchdogError:
    """What `fetch_rendered` asks for `query` with `variables`: the text, or why there is none.
    `filled`: `render`'s, kept by the caller for these `variables`."""
    try:
        return render(query, variables, filled)
    except TemplateError as exc:
        return WatchdogError(f"cannot fill in the query: {exc}")


def baseline_of(reference: Baseline, situation: Situation) -> tuple[Mapping[str, str | None], float] | str:
    """Where the baseline comes from: (placeholder values, time), or why there is none.
    A fixed time is a stored reference window: the same query as it answered then."""
    if reference.kind == "previous_version":
        previous = situation.variables.get("previous_version")
        if not previous:
            return "no previous version known yet: nothing to compare with"
        return {**situation.variables, "version": previous}, situation.now
    return situation.variables, reference.when(situation.now)
