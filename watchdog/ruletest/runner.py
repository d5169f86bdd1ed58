"""Run rule tests on the production engine, with synthetic sources and a fake clock.

Each test case gets a fresh `Engine` with the real `RollbackExecutor`, `Notifier` and an
in-memory SQLite state store; only the edges are synthetic: a `SeriesSource` per source name
used by the rules, a source for the running version, a recording actuator and alerter. Time
starts at 0 (shown as durations) and the engine ticks every `evaluation_interval`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from watchdog.rollback.executor import RollbackExecutor
from watchdog.alerters.base import Alert
from watchdog.config.fields import PluginSpec
from watchdog.config.loader import LoadedConfig
from watchdog.config.schema import Config, TargetConfig
from watchdog.durations import format_duration
from watchdog.engine import Engine, series_key
from watchdog.metrics import DaemonMetrics
from watchdog.runtime.notify import Notifier
from watchdog.rules.state import Phase, SeriesState
from watchdog.ruletest.synthetic import (
    DEFAULT_ACTUATOR,
    DEFAULT_ALERTER,
    RecordingActuator,
    RecordingAlerter,
    SeriesSource,
    SyntheticOptions,
    VersionSource,
)
from watchdog.ruletest.expect import ActionPattern, Expectation, RuleCheck, alerter_names
from watchdog.ruletest.testfile import VERSION_SOURCE, Case, RuleTestFile
from watchdog.samples import Labels, format_labels, labels_of
from watchdog.state import open_store

EPOCH = 1_700_000_000.0  # time 0 of every test (a real-looking date for the state store)
ACTUATOR = DEFAULT_ACTUATOR
ALERTER = DEFAULT_ALERTER
SYNTHETIC = "ruletest"


@dataclass(frozen=True)
class Action:
    kind: str
    target: str
    rule: str
    labels: Labels
    at: float  # seconds since the start of the test
    via: tuple[str, ...] = ()  # the alerters the alert went to (a rollback: its "fired" alert)
    show_target: bool = field(default=False, compare=False)  # shown as TARGET/RULE (several targets)

    def __str__(self) -> str:
        labels = format_labels(self.labels) if self.labels else ""
        via = f" via {','.join(self.via)}" if self.via and self.via != (ALERTER,) else ""
        rule = f"{self.target}/{self.rule}" if self.show_target and self.rule else self.rule
        return f"{self.kind} {rule}{labels}{via} (at {format_duration(self.at)})"

    def matches(self, pattern: ActionPattern) -> bool:
        return (pattern.kind == self.kind and (pattern.target is None or pattern.target == self.target)
                and (pattern.rule is None or pattern.rule == self.rule)
                and (pattern.labels is None or pattern.labels == self.labels)
                and (pattern.via is None or pattern.via == frozenset(self.via)))


@dataclass(frozen=True)
class Failure:
    at: float
    subject: str  # "rule error-rate" or "actions"
    expected: str
    got: str


@dataclass
class CaseResult:
    name: str
    failures: list[Failure] = field(default_factory=list)
    error: str = ""

    @property
    def passed(self) -> bool:
        return not self.failures and not self.error


def action_of_alert(alert: Alert, at: float, rule_labels: Mapping[str, str] | None = None,
                    via: tuple[str, ...] = ()) -> Action | None:
    """The action name of an alert: `alert`/`resolved` for rules, else its kind (`_resolved`).

    Alerts carry the rule's own `labels` next to the series labels; the action keeps the
    series labels only, as expectations name series. `via`: the alerters it was sent to."""
    if alert.kind == "rollback_completed":  # already recorded as the `rollback` action
        return None
    if alert.kind == "rule":
        kind = "alert" if alert.status == "firing" else "resolved"
    else:
        kind = alert.kind if alert.status == "firing" else f"{alert.kind}_resolved"
    labels = {k: v for k, v in alert.labels.items() if k not in (rule_labels or {})}
    return Action(kind, alert.target, alert.rule, labels_of(labels), at, tuple(sorted(via)))


class _Run:
    """One test case on one engine."""

    def __init__(self, file: RuleTestFile, case: Case):
        self.file, self.case = file, case
        self.actuator = RecordingActuator(ACTUATOR)
        # One recording alerter per name (every target's, and each one a rule routes to with
        # `alert:`), all writing to one list of deliveries.
        self.deliveries: list[tuple[str, Alert]] = []
        alerters = {name: RecordingAlerter(name, self.deliveries) for name in alerter_names(file.rules)}
        self.actions: list[Action] = []
        self._seen_calls = 0
        self._seen_deliveries = 0
        self._rule_labels = {(lr.target, lr.rule.name): getattr(lr.rule, "labels", None) or {} for lr in file.rules}
        self.store = open_store(":memory:")
        sources = {name: SeriesSource(name, case.series, case.interval, EPOCH, case.results) for name in file.sources()}
        sources[VERSION_SOURCE] = VersionSource(VERSION_SOURCE, {
            target: [(EPOCH + t, v) for t, v in changes] for target, changes in case.versions.items()})
        spec = lambda name: PluginSpec(name, SYNTHETIC, SyntheticOptions())  # noqa: E731
        targets = {name: t if case.versions.get(name) else _without_version(t) for name, t in case.targets.items()}
        config = Config(interval=file.evaluation_interval, state=":memory:", rule_files=[str(p) for p in file.rule_files],
                        sources={name: spec(name) for name in sources}, actuators={ACTUATOR: spec(ACTUATOR)},
                        alerters={name: spec(name) for name in alerters}, targets=targets)
        loaded = LoadedConfig(path=file.path, config=config, rules=file.rules, state_path=":memory:",
                              rule_files=file.rule_files)
        metrics = DaemonMetrics()
        stop = threading.Event()
        self.notifier = Notifier(dict(alerters), metrics, stop)
        executor = RollbackExecutor(self.store, {ACTUATOR: self.actuator}, metrics, stop)
        self.engine = Engine(loaded, self.store, dict(sources), executor, self.notifier, metrics)

    def tick(self, at: float) -> None:
        self.engine.tick(EPOCH + at)
        self.notifier.drain(timeout=0)
        calls = self.actuator.calls[self._seen_calls:]
        self._seen_calls = len(self.actuator.calls)
        sent: list[tuple[Alert, list[str]]] = []  # one alert sent to several alerters is one action
        for name, alert in self.deliveries[self._seen_deliveries:]:
            same = next((names for a, names in sent if a is alert), None)
            if same is not None:
                same.append(name)
            else:
                sent.append((alert, [name]))
        self._seen_deliveries = len(self.deliveries)
        alerts = [a for alert, names in sent
                  if (a := action_of_alert(alert, at, self._rule_labels.get((alert.target, alert.rule)), tuple(names)))
                  is not None]
        rollbacks = []
        for c in calls:  # the "fired: rolling back" alert is part of the rollback
            rollback = Action("rollback", c.target, c.rule, labels_of(c.labels), at)
            folded = next((a for a in alerts if (a.kind, a.target, a.rule, a.labels) ==
                           ("alert", rollback.target, rollback.rule, rollback.labels)), None)
            if folded is not None:
                alerts.remove(folded)
                rollback = replace(rollback, via=folded.via)
            rollbacks.append(rollback)
        if len(self.case.targets) > 1:
            rollbacks = [replace(a, show_target=True) for a in rollbacks]
            alerts = [replace(a, show_target=True) for a in alerts]
        self.actions.extend(rollbacks + alerts)

    def close(self) -> None:
        self.store.close()


def _without_version(target: TargetConfig) -> TargetConfig:
    return replace(target, version=None)


def run_case(file: RuleTestFile, case: Case) -> CaseResult:
    result = CaseResult(case.name)
    try:
        run = _Run(file, case)
    except Exception as exc:  # e.g. the engine rejecting a rule: the test's error, not a traceback
        result.error = f"cannot start the engine: {type(exc).__name__}: {exc}"
        return result
    step = file.evaluation_interval
    ticks = 0
    try:
        for expectation in case.expect:
            while ticks * step <= expectation.at + 1e-9:
                at = ticks * step
                try:
                    run.tick(at)
                except Exception as exc:  # a bug or an unusable rule must show up as the test's error
                    result.error = f"evaluation at {format_duration(at)} failed: {type(exc).__name__}: {exc}"
                    return result
                ticks += 1
            result.failures.extend(_check(run, expectation))
            run.actions.clear()
    finally:
        run.close()
    return result


def _check(run: _Run, expectation: Expectation) -> list[Failure]:
    failures = []
    for check in expectation.rules:
        got, detail = _phase(run, check)
        if got != check.phase:
            failures.append(Failure(expectation.at, f"rule {check.text}", check.phase, f"{got}{detail}"))
    if expectation.actions is not None and not _actions_match(expectation.actions, run.actions):
        failures.append(Failure(expectation.at, "actions", "[" + ", ".join(p.text for p in expectation.actions) + "]",
                                "[" + ", ".join(str(a) for a in run.actions) + "]"))
    return failures


_ORDER = list(Phase)


def _phase(run: _Run, check: RuleCheck) -> tuple[str, str]:
    states = {k[2]: s for k, s in run.engine.states.items() if k[:2] == (check.target, check.rule)}
    if check.labels is not None:
        state = states.get(series_key(check.labels))
        return (state.phase.value, _why(state)) if state else (Phase.INACTIVE.value, " (no such series)")
    if not states:
        return Phase.INACTIVE.value, " (not evaluated)"
    top = max(states.values(), key=lambda s: _ORDER.index(s.phase))
    if len(states) == 1:
        return top.phase.value, _why(top)
    return top.phase.value, " (" + "; ".join(f"{k}: {s.phase.value}" for k, s in sorted(states.items())) + ")"


def _why(state: SeriesState) -> str:
    since = ""
    if state.phase is Phase.PENDING and state.pending_since is not None:
        since = f", pending since {format_duration(state.pending_since - EPOCH)}"
    return f" ({state.reason}{since})" if state.reason else ""


def _actions_match(patterns: list[ActionPattern], actions: list[Action]) -> bool:
    if len(patterns) != len(actions):
        return False
    left = list(actions)
    for pattern in sorted(patterns, key=lambda p: -p.specificity()):
        match = next((a for a in left if a.matches(pattern)), None)
        if match is None:
            return False
        left.remove(match)
    return True


def run_file(file: RuleTestFile, select=None) -> list[CaseResult]:  # type: ignore[no-untyped-def]
    """Run the cases of `file` (those whose name `select` matches, when given)."""
    return [run_case(file, case) for case in file.cases if select is None or select.search(case.name)]
