"""The Source interface: where rule values come from.

A source is created once per configuration from its options dataclass. The engine calls,
once per evaluation tick and in this order:

1. `begin_tick(now)` — refresh whatever the source caches (the scrape source scrapes here).
   Must not raise: a failure is returned (for logs and /metrics) and shows up in the
   results of `query`.
2. `query(query, now)` — any number of times, for each rule that uses the source.
   Returns a `QueryResult`; raises `SourceError` when the source cannot answer at all
   (the rule then takes its `on_no_data` path) and `QueryError` for a query it cannot run.

`check_query(query)` is called at load time (validate) and must raise `QueryError` for a
query the source will never be able to answer, so a bad rule file is rejected up front.
Implementations must be safe to call from one thread at a time; the engine never calls a
source concurrently with itself.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from watchdog.config.plugins import SOURCES
from watchdog.errors import SourceError
from watchdog.samples import QueryResult

__all__ = ["QueryResult", "Source", "SourceHealth", "detached"]  # QueryResult lives in watchdog.samples


@dataclass(frozen=True)
class SourceHealth:
    up: bool
    last_success: float | None = None
    last_error: str = ""
    details: dict[str, Any] = field(default_factory=dict)


class Source(abc.ABC):
    #: the entry-point group the registry (watchdog.config.plugins) finds this kind in
    plugin_group: ClassVar[str] = SOURCES
    #: the dataclass of this plugin's configuration keys (besides `type`)
    Options: ClassVar[type]
    #: whether `{{placeholders}}` may be filled into this source's query text (escaped for
    #: string literals, see watchdog.config.templating); False for languages that bind
    #: parameters instead (SQL), where `validate` refuses any placeholder
    placeholders: ClassVar[bool] = True

    def __init__(self, name: str, options: Any):
        self.name = name
        self.options = options

    @abc.abstractmethod
    def check_query(self, query: str) -> None:
        """Raise QueryError if `query` can never be answered by this source."""

    def begin_tick(self, now: float) -> SourceError | None:
        """Refresh cached data for this tick; returns the failure instead of raising."""
        return None

    def begin_tick_within(self, now: float, deadline: float) -> SourceError | None:
        """`begin_tick`, to be over by `deadline` (a `time.monotonic()` instant): what the
        engine's source runner calls. A source that waits on many things (a fleet scrape)
        overrides it to cut each wait to the deadline; the default is `begin_tick`."""
        return self.begin_tick(now)

    def window_of(self, query: str) -> float:
        """The longest time window (seconds) that `query` reads; 0 for instant values.

        The engine does not judge a rule until its window holds only data of the running
        version, so a rollback is never triggered by samples of the version before."""
        return 0.0

    @abc.abstractmethod
    def query(self, query: str, now: float) -> QueryResult:
        """Evaluate `query` at `now`. Raises SourceError or QueryError."""

    def retain(self, seconds: float) -> None:
        """Keep data for at least `seconds` (a rule compares with a baseline that long ago)."""

    def health(self) -> SourceHealth:
        return SourceHealth(up=True)

    def close(self) -> None:
        """Release connections; called on shutdown and reload."""


E = TypeVar("E", bound=BaseException)


def detached(error: E) -> E:
    """`error` without its traceback and chained exceptions, to be kept after the call: their
    frames hold the call's locals, e.g. a refused 32 MiB body, for as long as the error lives."""
    error.__traceback__ = None
    error.__context__ = error.__cause__ = None
    return error
