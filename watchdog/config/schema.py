"""The typed shape of `watchdog.yaml` and of rule files. Parsed once, frozen afterwards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from watchdog.config.fields import Mark, PluginSpec, marks_field, option, plugins_field

NoDataPolicy = Literal["ignore", "alert", "rollback"]
Action = Literal["rollback", "alert"]
Mode = Literal["active", "shadow"]
Approval = Literal["none", "required"]


@dataclass(frozen=True)
class RateLimit:
    """At most `count` automatic rollbacks within `window`; beyond it: alert, do not act."""

    count: int = option(help="rollbacks allowed within the window")
    window: float = option(3600.0, duration=True, help="the sliding window")
    marks: dict[str, Mark] = marks_field()


@dataclass(frozen=True)
class ApiConfig:
    token_file: str | None = option(None, help="file holding the bearer token for mutating endpoints")
    read_requires_token: bool = option(False, help="also require the token for read endpoints")
    marks: dict[str, Mark] = marks_field()


@dataclass(frozen=True)
class VersionQuery:
    """Where the running version of a target is read: a label of a series."""

    source: str = option(help="name of the source to query")
    query: str = option(help="query whose result carries the version label, e.g. model_info")
    label: str = option("version", help="label that holds the version")
    marks: dict[str, Mark] = marks_field()


@dataclass(frozen=True)
class TargetConfig:
    version: VersionQuery | None = option(None, help="where the running version is read (optional)")
    rollback: list[str] = option(default_factory=list, help="actuators run in this order on rollback")
    alert: list[str] = option(default_factory=list, help="alerters told about this target")
    cooldown: float = option(0.0, duration=True, help="no automatic rollback sooner than this after the last one")
    max_rollbacks: RateLimit | None = option(None, help="automatic rollbacks allowed per window (default 3 per 1h)")
    initial_delay: float = option(0.0, duration=True,
                                  help="after a new version appears, rules record but do not act for this long")
    approve: Approval = option("none", help="'required': a firing rule pages a human and waits for approve/reject")
    approve_timeout: float = option(1800.0, duration=True, help="how long a decision waits for approval")
    mode: Mode = option("active", help="'shadow': evaluate and record 'would roll back', never act")
    variables: dict[str, str] = option(default_factory=dict, help="values for {{name}} placeholders in queries")
    marks: dict[str, Mark] = marks_field()


@dataclass(frozen=True)
class Config:
    interval: float = option(15.0, duration=True, help="default evaluation interval")
    state: str = option("./watchdog-state.db", help="SQLite state file (relative to this file)")
    listen: str = option("127.0.0.1:9310", help="HOST:PORT for /metrics, /healthz, /readyz and the API")
    rule_files: list[str] = option(default_factory=list, help="globs of rule files, relative to this file")
    sources: dict[str, PluginSpec] = plugins_field("model_watchdog.sources", "metric sources by name")
    actuators: dict[str, PluginSpec] = plugins_field("model_watchdog.actuators", "rollback actuators by name")
    alerters: dict[str, PluginSpec] = plugins_field("model_watchdog.alerters", "alerting integrations by name")
    targets: dict[str, TargetConfig] = option(default_factory=dict, help="guarded deployments by name")
    max_rollbacks: RateLimit | None = option(None, help="automatic rollbacks allowed per window across all targets (default 10 per 1h)")
    api: ApiConfig = option(default_factory=ApiConfig, help="HTTP API security")
    marks: dict[str, Mark] = marks_field()


@dataclass(frozen=True)
class MinSamples:
    query: str = option(help="query that counts the samples behind the rule's value")
    at_least: float = option(help="fewer samples than this: the series is not judged")
    marks: dict[str, Mark] = marks_field()


@dataclass(frozen=True)
class Rule:
    KEY_HINTS: ClassVar[dict[str, str]] = {
        "threshold": "write 'above: X' or 'below: X' (both for a band)",
        "severity_level": "did you mean 'severity'?",
        "duration": "did you mean 'for'?",
        "expr": "did you mean 'query'?",
    }

    name: str = option(help="unique within the target")
    source: str = option(help="name of the source to query")
    query: str = option(help="query in the source's language (PromQL subset for scrape)")
    above: float | None = option(None, help="breach when value > above")
    below: float | None = option(None, help="breach when value < below")
    for_: float = option(0.0, key="for", duration=True, help="breach must hold this long before firing")
    min_samples: MinSamples | None = option(None, help="skip judgement while too few samples")
    on_no_data: NoDataPolicy = option("alert", help="what missing/NaN data means")
    action: Action = option("alert", help="what a firing rule does")
    severity: str = option("warning", help="passed to alerters")
    description: str = option("", help="one line for people reading alerts")
    mode: Mode | None = option(None, help="'shadow': record 'would roll back', never act (default: the target's)")
    initial_delay: float | None = option(None, duration=True, help="overrides the target's initial_delay")
    approve: Approval | None = option(None, help="overrides the target's approve")
    marks: dict[str, Mark] = marks_field()

    def threshold(self) -> dict[str, float]:
        out = {}
        if self.above is not None:
            out["above"] = self.above
        if self.below is not None:
            out["below"] = self.below
        return out


@dataclass(frozen=True)
class RuleFile:
    target: str = option(help="the target these rules guard")
    rules: list[Rule] = option(default_factory=list)
    marks: dict[str, Mark] = marks_field()


DEFAULT_TARGET_LIMIT = RateLimit(count=3, window=3600.0)
DEFAULT_DAEMON_LIMIT = RateLimit(count=10, window=3600.0)


@dataclass(frozen=True)
class LoadedRule:
    """A rule with the file it came from; what the engine evaluates."""

    target: str
    rule: Rule
    file: str
