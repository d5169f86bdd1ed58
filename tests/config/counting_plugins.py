"""Plugins that count how often they are built, closed and asked to check a query (for
tests/config/test_startup.py; registered under test-only type names)."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

from watchdog.actuators.base import ActionContext, Actuator
from watchdog.alerters.base import Alert, Alerter
from watchdog.errors import QueryError
from watchdog.sources.base import QueryResult, Source

EVENTS: Counter[str] = Counter()


@dataclass(frozen=True)
class NoOptions:
    pass


class CountingSource(Source):
    Options = NoOptions

    def __init__(self, name: str, options: NoOptions):
        super().__init__(name, options)
        EVENTS["source built"] += 1

    def check_query(self, query: str) -> None:
        EVENTS["check_query"] += 1
        if "broken" in query:
            raise QueryError("broken query")

    def query(self, query: str, now: float) -> QueryResult:
        return QueryResult([])

    def close(self) -> None:
        EVENTS["source closed"] += 1


class CountingActuator(Actuator):
    Options = NoOptions

    def __init__(self, name: str, options: NoOptions):
        super().__init__(name, options)
        EVENTS["actuator built"] += 1

    def apply(self, context: ActionContext, stop: threading.Event) -> str:
        return "done"

    def close(self) -> None:
        EVENTS["actuator closed"] += 1


class CountingAlerter(Alerter):
    Options = NoOptions

    def __init__(self, name: str, options: NoOptions):
        super().__init__(name, options)
        EVENTS["alerter built"] += 1

    def send(self, alert: Alert, stop: threading.Event) -> None:
        pass

    def close(self) -> None:
        EVENTS["alerter closed"] += 1
