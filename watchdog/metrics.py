"""The daemon's own Prometheus metrics, on a registry it is handed (tests use a fresh one)."""

from __future__ import annotations

import itertools
import threading
from contextlib import contextmanager
from typing import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.utils import floatToGoString

PHASES = ("inactive", "pending", "firing")
# Incident timings run from seconds (detection at a short interval) to hours (a slow recovery).
INCIDENT_BUCKETS = (1, 5, 10, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


class DaemonMetrics:
    """Everything on `registry` (tests read it with `get_sample_value`); `/metrics` is `render()`:
    the registry through `generate_latest` but for the per-rule families, which RuleMetrics
    renders itself (registered last, so the text is byte for byte `generate_latest(registry)`'s)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.evaluations = Counter("model_watchdog_evaluations", "Evaluation ticks run", registry=r)
        self.evaluation_failures = Counter("model_watchdog_evaluation_failures", "Evaluation ticks that raised", registry=r)
        self.evaluation_duration = Histogram(
            "model_watchdog_evaluation_duration_seconds", "Time one evaluation tick took",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        self.actions = Counter("model_watchdog_actions", "Actuator steps by outcome",
                               ["target", "actuator", "outcome"], registry=r)
        self.alerts = Counter("model_watchdog_alerts", "Alert deliveries by outcome",
                              ["alerter", "outcome"], registry=r)
        # Connections the API closed or refused by a limit (watchdog.web.server.REJECT_REASONS).
        self.api_connections_rejected = Counter(
            "model_watchdog_api_connections_rejected", "API connections closed or refused by a limit, by reason",
            ["reason"], registry=r)
        self.source_errors = Counter("model_watchdog_source_errors", "Source failures by kind",
                                     ["source", "kind"], registry=r)
        self.source_last_success = Gauge("model_watchdog_source_last_success_timestamp_seconds",
                                         "Time of the last successful fetch per source", ["source"], registry=r)
        self.source_up = Gauge("model_watchdog_source_up", "1 if the last fetch succeeded", ["source"], registry=r)
        self.target_held = Gauge("model_watchdog_target_held", "1 while a target is held after a rollback",
                                 ["target"], registry=r)
        self.config_reloads = Counter("model_watchdog_config_reloads", "Configuration reloads by outcome",
                                      ["outcome"], registry=r)
        self.config_last_reload_success = Gauge("model_watchdog_config_last_reload_successful",
                                                "1 if the last reload was applied, 0 if it was rejected", registry=r)
        self.last_evaluation = Gauge("model_watchdog_last_evaluation_timestamp_seconds",
                                     "Time of the last completed evaluation tick", registry=r)
        self.source_query_duration = Histogram(
            "model_watchdog_source_query_duration_seconds", "Time one source query took, retries included",
            ["source"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        # Rollback decisions by how they ended: succeeded, failed (RollbackExecutor), skipped
        # (approval expired or rejected, or overtaken by a new version, resume or a manual rollback),
        # and rules that fired but were not acted on: blocked (a guard; once per blocked episode, a
        # rollback that follows when the guard lifts counts too), shadow (shadow mode).
        self.decisions = Counter("model_watchdog_decisions", "Rollback decisions by outcome",
                                 ["target", "outcome"], registry=r)
        self.time_to_detect = Histogram(
            "model_watchdog_time_to_detect_seconds", "From the first breaching evaluation to the rule firing",
            ["target"], buckets=INCIDENT_BUCKETS, registry=r)
        self.time_to_act = Histogram(
            "model_watchdog_time_to_act_seconds", "From the rule firing to the rollback's last step done",
            ["target"], buckets=INCIDENT_BUCKETS, registry=r)
        self.time_to_recover = Histogram(
            "model_watchdog_time_to_recover_seconds", "From the first breaching evaluation to every rollback rule of the target inactive again",
            ["target"], buckets=INCIDENT_BUCKETS, registry=r)
        # Rollback drills (`model-watchdog drill`) are read back from the history, whoever ran them.
        self.drill_ready = Gauge("model_watchdog_drill_ready", "1 if the latest rollback drill found the target ready, 0 if not",
                                 ["target"], registry=r)
        self.drill_last_success = Gauge("model_watchdog_drill_last_success_timestamp_seconds",
                                        "Time of the latest rollback drill that found the target ready", ["target"], registry=r)
        # Retention (watchdog.runtime.retention): rows the hourly prune deleted, by table.
        self.history_pruned = Counter("model_watchdog_history_pruned_rows",
                                      "State-store rows deleted by history_retention, by table", ["table"], registry=r)
        # model_watchdog_rule_value/_threshold/_state and _rule_outcomes: per rule and series,
        # so plain dicts rendered at scrape time (RuleMetrics), not a client child per label set.
        self.rules = RuleMetrics()
        r.register(self.rules)

    def render(self) -> bytes:
        """The text exposition (format 0.0.4) of every metric, as `/metrics` serves it."""
        return b"".join(self.chunks())

    def chunks(self) -> Iterator[bytes]:
        """`render()` in pieces of CHUNK entries (≈ 0.1–0.3 MB), for `/metrics` to write as they come
        (the fleet's page is 5–7 MB: built whole, as str and then bytes, it cost ≈ 20 MB a read).
        The values are those of the call (the pieces are formatted later, from a copy)."""
        with self.rules.left_out():  # this thread's generate_latest skips them: rendered below
            standard = generate_latest(self.registry)
        return itertools.chain((standard,), self.rules.chunks())

    def set_phase(self, target: str, rule: str, series: str, phase: str) -> None:
        self.rules.set_phase(target, rule, series, phase)

    def set_series(self, target: str, rule: str, series: str, phase: str, value: float | None) -> None:
        self.rules.set_series(target, rule, series, phase, value)

    def forget_series(self, target: str, rule: str, series: str) -> None:
        self.rules.forget_series(target, rule, series)

    def forget_targets(self, targets: Iterable[str]) -> None:
        """Drop the per-target children (every family with a `target` label) of targets that
        are no longer configured."""
        families = (self.target_held, self.time_to_detect, self.time_to_act, self.time_to_recover,
                    self.drill_ready, self.drill_last_success, self.decisions, self.actions)
        for target in targets:
            for family in families:
                family.remove_by_labels({"target": target})

    def forget_plugins(self, sources: Iterable[str], alerters: Iterable[str]) -> None:
        """Drop the children of sources and alerters that are no longer configured."""
        for source in sources:
            for family in (self.source_errors, self.source_up, self.source_last_success, self.source_query_duration):
                family.remove_by_labels({"source": source})
        for alerter in alerters:
            self.alerts.remove_by_labels({"alerter": alerter})


Key = tuple[str, str, str]  # (target, rule, series | bound | outcome)


class RuleMetrics:
    """The per-rule families, one entry per label set in a plain dict (a prometheus_client
    child is a locked object of its own: ~60,000 of them at 10,000 rules cost ~250 MB and
    most of a /metrics render). Entries of a series that vanished, and of targets and rules
    that a reload removed (`retain_rules`), are dropped, so the label sets stay bounded by
    what is configured and observed now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._left_out = threading.local()
        self.values: dict[Key, float] = {}
        self.phases: dict[Key, str] = {}
        self.thresholds: dict[Key, float] = {}
        self.outcomes: dict[Key, float] = {}
        self._unvalued: dict[Key, Key] = {}  # phases' keys of series without a value yet (set_series)
        self._heads = tuple(_head(family) for family in self._families())

    def set_phase(self, target: str, rule: str, series: str, phase: str) -> None:
        self.phases[(target, rule, series)] = phase

    def set_value(self, target: str, rule: str, series: str, value: float) -> None:
        self.values[(target, rule, series)] = value

    def set_series(self, target: str, rule: str, series: str, phase: str, value: float | None) -> None:
        """`set_phase`, and `set_value` unless `value` is None, with one key tuple for both tables
        (two equal 3-tuples per series were ≈ 0.6 MB at 10,000 rules). A series without a value
        yet (a window warming up) is remembered in `_unvalued` until its first value comes, so that
        value is filed under the phases' key: a dict keeps the key it was first given."""
        key = (target, rule, series)
        phases = self.phases
        if key not in phases:
            phases[key] = phase
            if value is None:
                self._unvalued[key] = key
                return
        else:
            phases[key] = phase
            if value is None:
                return
            if self._unvalued and key not in self.values:
                key = self._unvalued.pop(key, key)
                if not self._unvalued:
                    self._unvalued = {}  # a dict's table does not shrink when emptied
        self.values[key] = value

    def set_threshold(self, target: str, rule: str, bound: str, value: float) -> None:
        self.thresholds[(target, rule, bound)] = value

    def count_outcome(self, target: str, rule: str, outcome: str) -> None:
        key = (target, rule, outcome)
        with self._lock:
            self.outcomes[key] = self.outcomes.get(key, 0.0) + 1

    def forget_series(self, target: str, rule: str, series: str) -> None:
        with self._lock:
            self.phases.pop((target, rule, series), None)
            self.values.pop((target, rule, series), None)
            self._unvalued.pop((target, rule, series), None)

    def retain_rules(self, rules: Iterable[tuple[str, str]]) -> int:
        """Drop every entry of a (target, rule) not in `rules`; returns how many went."""
        keep = set(rules)
        dropped = 0
        with self._lock:
            for table in (self.values, self.phases, self.thresholds, self.outcomes, self._unvalued):
                doomed = [k for k in table if (k[0], k[1]) not in keep]
                for k in doomed:
                    del table[k]
                dropped += len(doomed)
        return dropped

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    @contextmanager
    def left_out(self) -> Iterator[None]:
        """While inside, `collect()` on this thread yields nothing (render() writes these families)."""
        self._left_out.on = True
        try:
            yield
        finally:
            self._left_out.on = False

    def collect(self) -> Iterator[Metric]:
        if getattr(self._left_out, "on", False):
            return iter(())
        with self._lock:  # a consistent copy; the tick goes on while it is rendered
            values, phases = list(self.values.items()), list(self.phases.items())
            thresholds, outcomes = list(self.thresholds.items()), list(self.outcomes.items())
        value, threshold, state, outcome = self._families()
        for key, v in values:
            value.add_metric(key, v)
        for key, v in thresholds:
            threshold.add_metric(key, v)
        for key, phase in phases:
            for p in PHASES:
                state.add_metric((*key, p), 1.0 if p == phase else 0.0)
        for key, v in outcomes:
            outcome.add_metric(key, v)
        return iter((value, threshold, state, outcome))

    def chunks(self) -> Iterator[bytes]:
        """The four families as text exposition (format 0.0.4), exactly as `generate_latest`
        renders `collect()` (labels sorted by name), in UTF-8 pieces of CHUNK entries. The
        entries are copied now; each piece is formatted when it is asked for. Nothing is kept
        between reads: every line is formatted again, 0.04 s for 10,000 rules (the per-line
        cache this replaced took 0.06 s after a tick, 0.03 s without, and held ≈ 10 MB)."""
        with self._lock:  # a consistent copy (of the tables, not item tuples); the tick goes on meanwhile
            values, phases, thresholds, outcomes = (self.values.copy(), self.phases.copy(),
                                                    self.thresholds.copy(), self.outcomes.copy())
        value, threshold, state, outcome = self._heads
        return itertools.chain(
            (value.encode(),), _value_pieces(values), (threshold.encode(),), _threshold_pieces(thresholds),
            (state.encode(),), _state_pieces(phases), (outcome.encode(),), _outcome_pieces(outcomes))

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily, CounterMetricFamily]:
        return (GaugeMetricFamily("model_watchdog_rule_value", "Last value of a rule per series",
                                  labels=["target", "rule", "series"]),
                GaugeMetricFamily("model_watchdog_rule_threshold", "A rule's threshold, per bound (above, below)",
                                  labels=["target", "rule", "bound"]),
                GaugeMetricFamily("model_watchdog_rule_state", "1 for the rule's current phase per series",
                                  labels=["target", "rule", "series", "state"]),
                CounterMetricFamily("model_watchdog_rule_outcomes", "Verdicts by outcome",
                                    labels=["target", "rule", "outcome"]))


def escape_label_value(value: str) -> str:
    """A label value as the text format quotes it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _head(family: Metric) -> str:
    name = family.name + ("_total" if family.type == "counter" else "")
    doc = family.documentation.replace("\\", "\\\\").replace("\n", "\\n")
    return f"# HELP {name} {doc}\n# TYPE {name} {family.type}\n"


def _go(value: object) -> str:
    """floatToGoString (what generate_latest writes), its common case first: a finite value
    below 1e6 is Python's repr (Go switches to exponents from 1e6 up, and names ±Inf, NaN)."""
    v = float(value)  # type: ignore[arg-type]
    if -1e6 < v < 1e6:
        return repr(v)
    return floatToGoString(v)


CHUNK = 1000  # entries per piece written to the socket: ≈ 110 KB of the fleet's page (330 KB of states)


class _Escaped(dict[str, str]):
    """Label values escaped once per read: targets and rules repeat on every line of theirs."""

    def __missing__(self, value: str) -> str:
        self[value] = escaped = escape_label_value(value)
        return escaped


def _encoded(batch: list[str]) -> bytes:
    return "".join(batch).encode("utf-8")


def _value_pieces(items: dict[Key, float]) -> Iterator[bytes]:
    e, batch = _Escaped(), []
    for (target, rule, series), v in items.items():
        batch.append(f'model_watchdog_rule_value{{rule="{e[rule]}",series="{e[series]}",target="{e[target]}"}} {_go(v)}\n')
        if len(batch) == CHUNK:
            yield _encoded(batch)
            batch = []
    yield _encoded(batch)


def _threshold_pieces(items: dict[Key, float]) -> Iterator[bytes]:
    e, batch = _Escaped(), []
    for (target, rule, bound), v in items.items():
        batch.append(f'model_watchdog_rule_threshold{{bound="{e[bound]}",rule="{e[rule]}",target="{e[target]}"}} {_go(v)}\n')
        if len(batch) == CHUNK:
            yield _encoded(batch)
            batch = []
    yield _encoded(batch)


_ONE_HOT = {phase: tuple("1.0" if p == phase else "0.0" for p in PHASES) for phase in PHASES}


def _state_pieces(items: dict[Key, str]) -> Iterator[bytes]:
    """One line per phase, 1.0 for the current one (an unknown phase: 0.0 on all three)."""
    e, batch = _Escaped(), []
    inactive, pending, firing = PHASES
    for (target, rule, series), phase in items.items():
        a, b, c = _ONE_HOT.get(phase, ("0.0", "0.0", "0.0"))
        head = f'model_watchdog_rule_state{{rule="{e[rule]}",series="{e[series]}",state="'
        tail = f'",target="{e[target]}"}} '
        batch.append(f"{head}{inactive}{tail}{a}\n{head}{pending}{tail}{b}\n{head}{firing}{tail}{c}\n")
        if len(batch) == CHUNK:
            yield _encoded(batch)
            batch = []
    yield _encoded(batch)


def _outcome_pieces(items: dict[Key, float]) -> Iterator[bytes]:
    e, batch = _Escaped(), []
    for (target, rule, outcome), v in items.items():
        batch.append(f'model_watchdog_rule_outcomes_total{{outcome="{e[outcome]}",rule="{e[rule]}",'
                     f'target="{e[target]}"}} {_go(v)}\n')
        if len(batch) == CHUNK:
            yield _encoded(batch)
            batch = []
    yield _encoded(batch)
