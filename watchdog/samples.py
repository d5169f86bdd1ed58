"""Series identity and samples, shared by sources, the PromQL subset and the engine.

`Labels` is a sorted tuple of (name, value) pairs: hashable, ordered, cheap to compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from watchdog.text.printable import one_line, quote_value

Labels = tuple[tuple[str, str], ...]

NAME = "__name__"


def labels_of(mapping: Mapping[str, str] | Iterable[tuple[str, str]]) -> Labels:
    items = mapping.items() if isinstance(mapping, Mapping) else mapping
    return tuple(sorted((str(k), str(v)) for k, v in items))


def without_name(labels: Labels) -> Labels:
    return tuple(p for p in labels if p[0] != NAME)


def format_labels(labels: Labels) -> str:
    """`{code="500",model="fraud"}`; `{}` for no labels. Values are escaped as Prometheus does
    (`\\`, `\"`, `\n`) and so are control characters: a value cannot forge a log line."""
    return "{" + ",".join(f'{one_line(k)}="{quote_value(v)}"' for k, v in labels) + "}"


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one series at evaluation time."""

    labels: Labels
    value: float

    def label(self, name: str) -> str | None:
        for k, v in self.labels:
            if k == name:
                return v
        return None


@dataclass(frozen=True, slots=True)
class QueryResult:
    samples: list[Sample]
    # True while the source has not yet held data for as long as the query's range windows:
    # an empty result then means "warming up", not "no data".
    warming_up: bool = False
    # Why the result may be empty (e.g. the last scrape failed), for decisions and logs.
    note: str = ""
    # Sample counts per series when the source knows them (a SQL `samples` column), so that
    # `min_samples` needs no second query. Keys are the series labels (without __name__).
    counts: dict[Labels, float] | None = None
