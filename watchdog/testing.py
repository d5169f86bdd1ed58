"""Fakes for tests of rules, the engine and third-party plugins.

They implement the real plugin interfaces, so the production engine runs unchanged on top.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Union

from watchdog.actuators.base import ActionContext, Actuator
from watchdog.alerters.base import Alert, Alerter
from watchdog.errors import ActuatorError, AlerterError, SourceError
from watchdog.samples import Sample, labels_of
from watchdog.sources.base import QueryResult, Source

Value = Union[float, None, list[Sample], Exception]


@dataclass(frozen=True)
class FakeOptions:
    pass


class FakeSource(Source):
    """Answers each query with what `script[query](now)` returns: a number (one unlabelled
    series), None (no series), a list of samples, or an exception (raised)."""

    Options = FakeOptions

    def __init__(self, name: str = "fake", script: dict[str, Callable[[float], Value]] | None = None,
                 windows: dict[str, float] | None = None):
        super().__init__(name, FakeOptions())
        self.script = script or {}
        self.windows = windows or {}
        self.queries: list[tuple[str, float]] = []

    def set(self, query: str, value: Value | Callable[[float], Value]) -> None:
        self.script[query] = value if callable(value) else (lambda now, v=value: v)  # type: ignore[misc]

    def check_query(self, query: str) -> None:
        pass

    def window_of(self, query: str) -> float:
        return self.windows.get(query, 0.0)

    def query(self, query: str, now: float) -> QueryResult:
        self.queries.append((query, now))
        if query not in self.script:
            raise SourceError(f"fake source has no answer for {query!r}")
        value = self.script[query](now)
        if isinstance(value, Exception):
            raise value
        if value is None:
            return QueryResult([])
        if isinstance(value, list):
            return QueryResult(value)
        return QueryResult([Sample((), float(value))])


def series(value: float, **labels: str) -> Sample:
    return Sample(labels_of(labels), value)


class FakeActuator(Actuator):
    """Records every call; fails while `failures` > 0."""

    Options = FakeOptions

    def __init__(self, name: str = "fake", failures: int = 0):
        super().__init__(name, FakeOptions())
        self.calls: list[ActionContext] = []
        self.failures = failures
        self.current: str | None = None  # what current_version() reports (None: cannot tell)
        self.lock = threading.Lock()

    def current_version(self, context: ActionContext) -> str | None:
        return self.current

    def apply(self, context: ActionContext, stop: threading.Event) -> str:
        with self.lock:
            self.calls.append(context)
            if self.failures > 0:
                self.failures -= 1
                raise ActuatorError(f"{self.name}: simulated failure")
        return f"{self.name} applied {context.decision_id}"


@dataclass
class FakeAlerter(Alerter):
    """Records every alert delivered; the next `failures` sends fail (AlerterError)."""

    name: str = "fake"
    options: object = field(default_factory=FakeOptions)
    sent: list[Alert] = field(default_factory=list)
    failures: int = 0
    Options = FakeOptions

    def send(self, alert: Alert, stop: threading.Event) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise AlerterError(f"{self.name}: simulated failure")
        self.sent.append(alert)
