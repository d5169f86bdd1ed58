"""`type: constant`: every query is answered with the configured value and labels.

Useful as a template for a real source and to pin a rule in tests: it implements the whole
`watchdog.sources.base.Source` contract in a few lines.
"""

from __future__ import annotations

from dataclasses import dataclass

from watchdog.plugin import QueryError, QueryResult, Sample, Source, labels_of, option


@dataclass(frozen=True)
class ConstantOptions:
    value: float = option(help="the number every query returns")
    labels: dict[str, str] = option(default_factory=dict, help="labels of the one series")


class ConstantSource(Source):
    Options = ConstantOptions

    def check_query(self, query: str) -> None:
        if query != "value":
            raise QueryError("the constant source answers only the query 'value'")

    def query(self, query: str, now: float) -> QueryResult:
        self.check_query(query)
        return QueryResult([Sample(labels_of(self.options.labels), self.options.value)])
