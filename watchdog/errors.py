"""The exception tree of model-watchdog: every exception the package raises derives from
WatchdogError (tests/test_layout.py keeps it so). Where a class is defined outside this
module, its module is named; a second base (ValueError) is kept where callers catch that.

    WatchdogError                   base; carries an exit code for the CLI
    ├── ConfigError                 one or more problems in config/rule files (exit 1)
    ├── QueryError                  a query the source cannot answer (parse/unsupported)
    │   └── PromQLError             the PromQL subset rejected an expression
    ├── SourceError                 a source could not deliver data (down, slow, garbage)
    │   └── PartialScrapeError      sources.scrape: some targets of a scrape failed
    ├── ActuatorError               an actuator step failed
    │   └── KubeApiError            actuators.k8s_client: the Kubernetes API said no
    ├── AlerterError                an alert could not be delivered
    │   └── _Failure                alerters.smtp: one failed attempt, retryable or not (private)
    ├── StateError                  the state store is unusable (corrupt, locked, missing) (exit 3)
    ├── PluginError                 a plugin could not be found or is not of the right kind
    ├── TemplateError               config.templating: a {{placeholder}} cannot be filled in (also ValueError)
    ├── CycleError                  config.validate: components depend on each other in a circle (also ValueError)
    ├── PageError                   sources.exposition: a /metrics page that does not parse (also ValueError)
    ├── Interrupted                 retrying: retries gave up because shutdown began
    ├── TickAbandoned               engine: shutdown began during a tick
    ├── OperatorError               rollback.manual: an operator command that cannot be done
    ├── BadLimit                    web.api: a ?limit= that is not a whole number (also ValueError)
    ├── ExplainError                commands.explain: nothing to explain (unknown target or rule)
    ├── BacktestError               commands.backtest: a backtest that cannot run
    ├── NotationError               ruletest.notation: a series notation that does not parse
    ├── ClientError                 demo.model_server: a request the demo server refuses
    └── _Refused, _Missing          config.yamlnodes, rules.statistical: private signals, caught in their module

Messages say what went wrong, where, and what to do about it.
"""

from __future__ import annotations

from dataclasses import dataclass


class WatchdogError(Exception):
    exit_code = 2


@dataclass(frozen=True, order=True)
class Problem:
    """One problem found while loading configuration: `file:line:column: message`."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        if self.line <= 0:
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class ConfigError(WatchdogError):
    """Raised with *every* problem found, never just the first."""

    exit_code = 1

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class QueryError(WatchdogError):
    """A query is not valid for its source; `position` is a 0-based column when known."""

    def __init__(self, message: str, position: int | None = None):
        self.message = message
        self.position = position
        super().__init__(message)


class PromQLError(QueryError):
    pass


class SourceError(WatchdogError):
    """A source failed to deliver data; `kind` is a short label used in /metrics."""

    def __init__(self, message: str, kind: str = "error"):
        self.kind = kind
        super().__init__(message)


class ActuatorError(WatchdogError):
    pass


class AlerterError(WatchdogError):
    pass


class StateError(WatchdogError):
    exit_code = 3


class PluginError(WatchdogError):
    pass
