"""The typed shape of `watchdog.yaml` and of rule files. Parsed once, frozen afterwards."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from watchdog.config.fields import Mark, PluginSpec, marks_field, option, plugins_field
from watchdog.config.values import Baseline, Change, baseline_or_none, change_or_none

NoDataPolicy = Literal["ignore", "alert", "rollback"]
Action = Literal["rollback", "alert"]
Mode = Literal["active", "shadow"]
Approval = Literal["none", "required"]
UnknownVersion = Literal["defer", "proceed"]


@dataclass(frozen=True)
class RateLimit:
    """At most `count` automatic rollbacks within `window`; beyond it: alert, do not act."""

    count: int = option(help="rollbacks allowed within the window")
    window: float = option(3600.0, duration=True, help="the sliding window")
    marks: dict[str, Mark] = marks_field()


@dataclass(frozen=True)
class ApiToken:
    """A named bearer token: requests made with it are recorded with `name` as the operator."""

    name: str = option(help="the operator recorded in the history for requests with this token")
    token_file: str = option(help="file holding the token (at least 16 characters, mode 0600)")
    marks: dict[str, Mark] = marks_field()


@dataclass(frozen=True)
class ApiConfig:
    token_file: str | None = option(None, help="file holding the bearer token for mutating endpoints (operator 'api')")
    tokens: list[ApiToken] = option(default_factory=list, help="named tokens: [{name, token_file}, ...]")
    read_requires_token: bool = option(False, help="also require the token for read endpoints")
    allow_insecure_token_file: bool = option(
        False, help="start even if a token file is readable or writable by group/others (warns instead)")
    max_body: int = option(1024 * 1024, help="largest request body in bytes; larger ones get 413")
    idle_timeout: float = option(10.0, duration=True, help="a connection silent this long is closed")
    request_timeout: float = option(30.0, duration=True, help="the whole request must arrive within this")
    max_connections: int = option(256, help="open connections at most; beyond, the oldest still sending is closed")
    handler_threads: int = option(8, help="requests handled at the same time")
    marks: dict[str, Mark] = marks_field()


@dataclass(frozen=True)
class DrillSchedule:
    """Rollback drills (`model-watchdog drill`) run by the daemon itself, on a schedule."""

    every: float = option(duration=True, help="time between drills, e.g. 24h (the first runs this long after the last one)")
    marks: dict[str, Mark] = marks_field()


@dataclass(frozen=True)
class AlignTicks:
    """Tick just after a Prometheus scrapes the targets (watchdog.runtime.phase)."""

    source: str = option(help="a `prometheus` source: its targets' last scrapes set the phase of the ticks")
    job: str = option("", help="only the targets of this scrape job (default: every target scraped at our interval)")
    marks: dict[str, Mark] = marks_field()


@dataclass(frozen=True)
class VersionQuery:
    """Where the running version of a target is read: a label of a series."""

    source: str = option(help="name of the source to query")
    query: str = option(help="query whose result carries the version label, e.g. model_info")
    label: str = option("version", help="label that holds the version")
    component: str = option("model", help="the stack component this version belongs to (recorded as a release)")
    marks: dict[str, Mark] = marks_field()


@dataclass(frozen=True)
class Component:
    """One part of the deployed stack (model, features, schema, preprocessing, ...)."""

    actuator: str = option(help="the actuator that moves this component to a version")
    depends_on: list[str] = option(default_factory=list, help="components this one needs (rolled back after it)")
    on_failure: Literal["stop", "restore"] = option(
        "stop", help="'restore': if this step fails, re-apply the component's previous version")
    marks: dict[str, Mark] = marks_field()


@dataclass(frozen=True)
class TargetConfig:
    version: VersionQuery | None = option(None, help="where the running version is read (optional)")
    rollback: list[str] = option(default_factory=list, help="actuators run in this order on rollback")
    components: dict[str, Component] = option(
        default_factory=dict, help="the stack rolled back together, each with its actuator (instead of 'rollback')")
    bake: float = option(600.0, duration=True, help="a release running this long with no rollback rule firing is healthy")
    verify_window: float = option(300.0, duration=True,
                                  help="after a rollback, the rules that fired must recover within this; else escalate")
    max_depth: int = option(1, help="automatic rollbacks per incident (2: may roll back once more if health is not restored)")
    alert: list[str] = option(default_factory=list, help="alerters told about this target")
    cooldown: float = option(0.0, duration=True, help="no automatic rollback sooner than this after the last one")
    max_rollbacks: RateLimit | None = option(None, help="automatic rollbacks allowed per window (default 3 per 1h)")
    initial_delay: float = option(0.0, duration=True,
                                  help="after a new version appears, rules record but do not act for this long")
    approve: Approval = option("none", help="'required': a firing rule pages a human and waits for approve/reject")
    approve_timeout: float = option(1800.0, duration=True, help="how long a decision waits for approval")
    mode: Mode = option("active", help="'shadow': evaluate and record 'would roll back', never act")
    unknown_version: UnknownVersion = option(
        "defer", help="while the target reports an invalid version: 'defer' rollbacks until a valid one is "
                      "reported (guard version_unknown), or 'proceed' from the last valid version")
    variables: dict[str, str] = option(default_factory=dict, help="values for {{name}} placeholders in queries")
    drill: DrillSchedule | None = option(None, help="scheduled rollback drills: {every: 24h} (default: the top-level drill)")
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
    replica_id: str = option("", help="this replica's name with a shared PostgreSQL state (default: host-pid-random)")
    drill: DrillSchedule | None = option(None, help="scheduled rollback drills for every target without its own: {every: 24h}")
    alert_max_age: float = option(86400.0, duration=True, help="a failed alert delivery is retried (with backoff) "
                                  "until it is this old, then given up and recorded (0: give up at once)")
    history_retention: float = option(90 * 86400.0, duration=True, help="audit history, finished decisions, "
                                      "old releases and versions older than this are pruned, hourly (0: kept forever)")
    align_ticks: AlignTicks | None = option(None, help="{source: PROMETHEUS}: tick just after it scrapes the targets "
                                                       "(default: ticks on multiples of the interval)")
    marks: dict[str, Mark] = marks_field()


def parsed_field() -> Any:
    """A value derived from the options when the object is built: not a YAML key, not compared."""
    return field(init=False, default=None, compare=False, repr=False, metadata={"internal": True})


def _set(obj: object, **values: object) -> None:
    for name, value in values.items():
        object.__setattr__(obj, name, value)  # frozen: set once, in __post_init__


@dataclass(frozen=True, kw_only=True)
class MinSamples:
    query: str | None = option(None, help="query that counts the samples behind the rule's value "
                                          "(default: the counts the source returns, e.g. a SQL `samples` column)")
    at_least: float = option(help="fewer samples than this: the series is not judged")
    marks: dict[str, Mark] = marks_field()


@dataclass(frozen=True)
class Compare:
    """Compare the value with a baseline: the same query for the previous version (its
    `{{version}}` placeholder filled with the previous version) or the same query `offset` ago."""

    baseline: str = option(help="'previous_version', a time offset such as 1d, or a fixed time (RFC 3339)")
    max_increase: str | float | None = option(None, help="breach when value > baseline + this; '20%' is relative")
    max_decrease: str | float | None = option(None, help="breach when value < baseline - this; '20%' is relative")
    test: Literal["threshold", "proportion", "mann_whitney", "sequential"] = option(
        "threshold", help="threshold: max_increase/max_decrease; or a statistical test with a stated confidence")
    errors: str | None = option(None, help="proportion/sequential: query counting failures")
    total: str | None = option(None, help="proportion/sequential: query counting all requests")
    histogram: str | None = option(None, help="mann_whitney: query returning cumulative buckets with an `le` label")
    samples: str | None = option(None, help="mann_whitney: query returning raw observations, one series or row each "
                                            "(e.g. latencies from SQL); needs scipy")
    confidence: float = option(0.95, help="statistical tests: the confidence a breach needs")
    min_effect: str | float | None = option(None, help="statistical tests: smallest effect that matters "
                                                       "(relative for proportions, e.g. 20%; Cliff's delta for mann_whitney)")
    power: float = option(0.8, help="sequential: chance to detect an effect of min_effect")
    min_total: float = option(100.0, help="statistical tests: fewer observations than this: inconclusive")
    marks: dict[str, Mark] = marks_field()
    # Parsed once, from the values above, when the rule is built (config/values.py); None only
    # for a value that does not parse, which the loader reports (config/checks.py).
    baseline_value: Baseline | None = parsed_field()
    max_increase_value: Change | None = parsed_field()
    max_decrease_value: Change | None = parsed_field()
    min_effect_value: Change | None = parsed_field()

    def __post_init__(self) -> None:
        _set(self, baseline_value=baseline_or_none(self.baseline), max_increase_value=change_or_none(self.max_increase),
             max_decrease_value=change_or_none(self.max_decrease), min_effect_value=change_or_none(self.min_effect))


@dataclass(frozen=True)
class Drift:
    """Compare the distribution of predictions with a reference (PSI and a KS-style distance)."""

    reference: str = option("previous_version", help="'previous_version', a time offset such as 1d, or a fixed "
                                                     "time (RFC 3339) whose window is the stored reference")
    histogram: str | None = option(None, help="query returning cumulative buckets with an `le` label")
    classes: str | None = option(None, help="query returning one series per class (a class-count vector)")
    psi_above: float | None = option(None, help="breach when the Population Stability Index exceeds this (0.2 is customary)")
    ks_above: float | None = option(None, help="breach when the largest CDF gap exceeds this")
    min_total: float = option(100.0, help="fewer observations than this on either side: inconclusive")
    marks: dict[str, Mark] = marks_field()
    reference_value: Baseline | None = parsed_field()  # parsed once (see Compare)

    def __post_init__(self) -> None:
        _set(self, reference_value=baseline_or_none(self.reference))


@dataclass(frozen=True)
class Condition:
    """One query with its threshold, as part of an all/any/unless composite."""

    query: str = option(help="query in the source's language")
    source: str | None = option(None, help="defaults to the rule's source")
    above: float | None = option(None, help="holds when value > above")
    below: float | None = option(None, help="holds when value < below")
    compare: Compare | None = option(None, help="holds when the value departs from its baseline")
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
    query: str | None = option(None, help="query in the source's language (PromQL subset for scrape); {{placeholders}} allowed")
    above: float | None = option(None, help="breach when value > above")
    below: float | None = option(None, help="breach when value < below")
    compare: Compare | None = option(None, help="breach when the value departs from a baseline")
    drift: Drift | None = option(None, help="breach when the prediction distribution drifts from a reference")
    all: list[Condition] | None = option(None, help="breach when every condition holds")
    any: list[Condition] | None = option(None, help="breach when at least one condition holds")
    unless: list[Condition] | None = option(None, help="never breach while one of these holds (e.g. a load test)")
    for_: float = option(0.0, key="for", duration=True, help="breach must hold this long before firing")
    failure_limit: int | None = option(None, help="fire when more than this many evaluations within `for` breached "
                                                  "(instead of a continuous breach)")
    error_limit: int = option(4, help="consecutive evaluations without data tolerated before on_no_data applies")
    min_samples: MinSamples | None = option(None, help="skip judgement while too few samples")
    max_inconclusive: float | None = option(None, duration=True,
                                            help="alert when the rule stays inconclusive or short of samples this long")
    on_no_data: NoDataPolicy = option("alert", help="what missing/NaN data means")
    action: Action = option("alert", help="what a firing rule does")
    severity: str = option("warning", help="passed to alerters")
    description: str = option("", help="one line for people reading alerts")
    runbook_url: str = option("", help="where responders find what to do")
    labels: dict[str, str] = option(default_factory=dict, help="extra labels for alerts and routing (e.g. team)")
    alert: list[str] | None = option(None, help="alerters for this rule (default: the target's)")
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

    def conditions(self) -> list[Condition]:
        """Every query of the rule as a condition, the main one first (for validation and `explain`)."""
        main = [Condition(query=self.query, source=self.source, above=self.above, below=self.below,
                          compare=self.compare, marks=self.marks)] if self.query is not None else []
        extra = [Condition(query=q, source=self.source, marks=m.marks) for q, m in self._statistical_queries()]
        return main + extra + list(self.all or []) + list(self.any or []) + list(self.unless or [])

    def _statistical_queries(self) -> list[tuple[str, "Compare | Drift"]]:
        out: list[tuple[str, Compare | Drift]] = []
        for part in (self.compare, self.drift):
            if part is not None:
                for key in ("errors", "total", "histogram", "samples", "classes"):
                    query = getattr(part, key, None)
                    if query:
                        out.append((query, part))
        return out

    def is_statistical(self) -> bool:
        return self.drift is not None or (self.compare is not None and self.compare.test != "threshold")


@dataclass(frozen=True)
class RuleFile:
    target: str | None = option(None, help="the target these rules guard")
    targets: list[str] | None = option(None, help="several targets sharing these rules (use {{target}} in queries)")
    split_by: str | None = option(None, help="fleet rules: each query runs once for all targets; a series goes to "
                                             "the target its LABEL names (the target's variable LABEL, else its name)")
    rules: list[Rule] = option(default_factory=list)
    marks: dict[str, Mark] = marks_field()


DEFAULT_TARGET_LIMIT = RateLimit(count=3, window=3600.0)
DEFAULT_DAEMON_LIMIT = RateLimit(count=10, window=3600.0)


@dataclass(frozen=True, slots=True)
class LoadedRule:
    """A rule with the file it came from; what the engine evaluates."""

    target: str
    rule: Rule
    file: str
    split_by: str | None = None  # the rule file's: the label that routes one query's series to targets
