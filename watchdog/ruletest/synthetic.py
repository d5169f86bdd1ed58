"""The edges of a rule test: a source that serves input series, and recording plugins.

`SeriesSource` answers PromQL (the same subset and evaluator as the `scrape` source) over a
`SeriesStore` that holds every input sample up to `now`: each series is its own scrape
target, so a gap (`_`) is just a missing sample and `stale` is a stale marker of that series
alone. Like the scrape source it reports "warming up" while the data does not yet span a
query's longest window, so a test sees what the daemon would see right after start.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from watchdog.actuators.base import ActionContext, Actuator
from watchdog.alerters.base import Alert, Alerter
from watchdog.errors import QueryError, SourceError
from watchdog.promql import Expr, SeriesStore, parse
from watchdog.config.templating import PLACEHOLDER
from watchdog.ruletest.notation import GAP, STALE, Value
from watchdog.samples import Labels, Sample, format_labels
from watchdog.sources.scrape import answer
from watchdog.sources.base import QueryResult, Source


DEFAULT_ALERTER = "alerts"  # every target's alerter in a rule test
DEFAULT_ACTUATOR = "rollback"  # every target's actuator in a rule test


@dataclass(frozen=True)
class SyntheticOptions:
    """Rule tests build their plugins in code; nothing is configured."""


@dataclass(frozen=True)
class InputSeries:
    labels: Labels
    values: list[Value]


@dataclass(frozen=True)
class ScriptedResult:
    """One series of the answer to a query the test scripts (for sources that are not PromQL)."""

    query: str
    pattern: re.Pattern[str]  # matches the query once the engine filled in its placeholders
    labels: Labels
    values: list[Value]
    samples: list[Value] | None = None


def query_pattern(query: str) -> re.Pattern[str]:
    parts = PLACEHOLDER.split(query)
    # split() alternates text and placeholder names: keep the text, let a placeholder be anything
    return re.compile("".join(re.escape(p) if i % 2 == 0 else ".*?" for i, p in enumerate(parts)) + r"\Z", re.DOTALL)


class SeriesSource(Source):
    Options = SyntheticOptions

    def __init__(self, name: str, series: list[InputSeries], interval: float, start: float,
                 results: list[ScriptedResult] | None = None):
        super().__init__(name, SyntheticOptions())
        self._results = results or []
        self.store = SeriesStore()
        self._series = series
        self._interval = interval
        self._start = start
        self._next_step = 0
        self._steps = max((len(s.values) for s in series), default=0)
        self._first_sample: float | None = None
        self._parsed: dict[str, Expr] = {}

    def _scripted(self, query: str) -> list[ScriptedResult]:
        return [r for r in self._results if r.query == query or r.pattern.match(query)]

    def _expr(self, query: str) -> Expr:
        if query not in self._parsed:
            self._parsed[query] = parse(query)
        return self._parsed[query]

    def check_query(self, query: str) -> None:
        if not self._scripted(query):
            self._expr(query)

    def window_of(self, query: str) -> float:
        if self._scripted(query):
            return 0.0
        try:
            return self._expr(query).max_range()
        except QueryError:
            return 0.0

    def time_of(self, step: int) -> float:
        return self._start + step * self._interval

    def begin_tick(self, now: float) -> SourceError | None:
        while self._next_step < self._steps and self.time_of(self._next_step) <= now:
            self._feed(self._next_step)
            self._next_step += 1
        return None

    def _feed(self, step: int) -> None:
        t = self.time_of(step)
        for s in self._series:
            value = s.values[step] if step < len(s.values) else GAP
            target = format_labels(s.labels)  # every series is its own scrape target
            if value is GAP:
                continue
            if value is STALE:
                self.store.mark_stale(t, target)
                continue
            assert isinstance(value, float)
            self.store.append_scrape(t, [Sample(s.labels, value)], target)
            if self._first_sample is None:
                self._first_sample = t

    def query(self, query: str, now: float) -> QueryResult:
        scripted = self._scripted(query)
        if scripted:
            return self._answer(scripted, now)
        return answer(self.name, self._expr(query), self.store, now, self._first_sample)


    def _answer(self, scripted: list[ScriptedResult], now: float) -> QueryResult:
        """The row of each scripted series at the latest interval not after `now`."""
        step = int((now - self._start) / self._interval + 1e-9)
        samples, counts = [], {}
        for r in scripted:
            value = r.values[step] if 0 <= step < len(r.values) else GAP
            if not isinstance(value, float):
                continue  # `_` and `stale`: no row for this series
            samples.append(Sample(r.labels, value))
            count = r.samples[step] if r.samples is not None and step < len(r.samples) else None
            if isinstance(count, float):
                counts[r.labels] = count
        return QueryResult(samples=samples, counts=counts if any(r.samples is not None for r in scripted) else None)


class VersionSource(Source):
    """The running version of each target: the query is the target's name, the answer one
    series whose `version` label is that target's version at `now` (none before the first)."""

    Options = SyntheticOptions
    LABEL = "version"

    def __init__(self, name: str, versions: dict[str, list[tuple[float, str]]]):
        super().__init__(name, SyntheticOptions())
        self._versions = {target: sorted(changes) for target, changes in versions.items()}

    def check_query(self, query: str) -> None:
        pass

    def query(self, query: str, now: float) -> QueryResult:
        running = [v for t, v in self._versions.get(query, []) if t <= now]
        if not running:
            return QueryResult([])
        return QueryResult([Sample(((self.LABEL, running[-1]),), 1.0)])


class RecordingActuator(Actuator):
    """Succeeds and remembers every context it was handed."""

    Options = SyntheticOptions

    def __init__(self, name: str):
        super().__init__(name, SyntheticOptions())
        self.calls: list[ActionContext] = []
        self._lock = threading.Lock()

    def apply(self, context: ActionContext, stop: threading.Event) -> str:
        with self._lock:
            self.calls.append(context)
        return f"recorded rollback {context.decision_id}"

    def verify(self, context: ActionContext, stop: threading.Event) -> str:
        return "recorded"


class RecordingAlerter(Alerter):
    """Delivers nothing and remembers every alert, with the alerter's name. Several alerters
    may share one `deliveries` list, so the order of deliveries across them is kept."""

    Options = SyntheticOptions

    def __init__(self, name: str, deliveries: list[tuple[str, Alert]] | None = None):
        super().__init__(name, SyntheticOptions())
        self.deliveries: list[tuple[str, Alert]] = deliveries if deliveries is not None else []

    @property
    def sent(self) -> list[Alert]:
        return [alert for name, alert in self.deliveries if name == self.name]

    def send(self, alert: Alert, stop: threading.Event) -> None:
        self.deliveries.append((self.name, alert))
