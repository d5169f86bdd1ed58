"""`model-watchdog backtest`: replay the production engine over the history of the sources.

The same `Engine` the daemon runs — state machine, `for`, `min_samples`, `on_no_data`,
baselines, statistical and drift rules, guards, holds, cooldowns — ticks at each step from
`--from` to `--to` on a fake clock, against a throw-away in-memory state store. Only the
edges differ:

    prometheus    asked for each step's instant (`time=`); answered from one
                  `query_range` per query and chunk of steps, which evaluates the same
                  expression at the same instants (an instant off the grid, e.g. a
                  baseline `offset` that is not a multiple of the step, is an instant query)
    sql           the production source, `:now` bound to the step's time
    scrape,       keep no history: the rules reading them are not replayed, and say why
    http_json, …
    actuators     recording ones: the rollback is recorded, nothing is called
    alerters      recording ones: the alert is recorded, nothing is sent

Nothing is written to the live state store, and the daemon's need not be stopped.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from watchdog.config import plugins
from watchdog.rollback.executor import RollbackExecutor
from watchdog.alerters.base import Alert
from watchdog.clock import FakeClock, rfc3339
from watchdog.config.loader import LoadedConfig, load_rule_file
from watchdog.config.validate import check_references
from watchdog.config.schema import LoadedRule
from watchdog.durations import format_duration, parse_duration
from watchdog.engine import Engine, StateKey, TickReport, series_key
from watchdog.errors import ConfigError, Problem, QueryError, SourceError, WatchdogError
from watchdog.metrics import DaemonMetrics
from watchdog.runtime.notify import Notifier
from watchdog.rollback.incident import Incident
from watchdog.rules.evaluate import Outcome, is_breach
from watchdog.config.templating import TemplateError, bound_parameters, render
from watchdog.rules.state import Phase, SeriesState
from watchdog.ruletest.synthetic import RecordingActuator, RecordingAlerter
from watchdog.samples import Labels, Sample, without_name
from watchdog.sources.base import QueryResult, Source
from watchdog.sources.prometheus import PrometheusSource
from watchdog.sources.runner import Request as SourceRequest, SourceRunner, invoke
from watchdog.state.base import VersionRecord
from watchdog.state.sqlite import SQLiteStateStore


MAX_STEPS = 2_000_000  # a year at 15s; beyond that the step is surely a typo
RANGE_POINTS = 10_000  # points per query_range request (Prometheus refuses more than 11,000)
REPLAYED = ("prometheus", "sql")


class BacktestError(WatchdogError):
    exit_code = 2


# -- times ----------------------------------------------------------------------------------------

_RELATIVE = re.compile(r"[+-]?\s*\d")


def parse_time(text: str, now: float) -> float:
    """RFC 3339 (`2026-03-01T12:00:00Z`), `now`, or relative to now (`-6h`, `-7d`, `-1h30m`)."""
    text = text.strip()
    if text == "now":
        return now
    if _RELATIVE.match(text) and not re.match(r"\d{4}-", text):
        sign = -1.0 if text.startswith("-") else 1.0
        try:
            return now + sign * parse_duration(text.lstrip("+-").strip())
        except ValueError as exc:
            raise BacktestError(f"time {text!r}: {exc} (use RFC 3339, 'now' or e.g. -6h)") from None
    try:
        when = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise BacktestError(f"time {text!r} is not RFC 3339 (2026-03-01T12:00:00Z), 'now' or relative (-6h)") from None
    if when.tzinfo is None:
        raise BacktestError(f"time {text!r} has no time zone; add Z or an offset like +02:00")
    return when.astimezone(timezone.utc).timestamp()


# -- the edges --------------------------------------------------------------------------------------

class PrometheusHistory(Source):
    """A `prometheus` source answering instant queries from `query_range` over the step grid."""

    max_concurrency = 4

    def __init__(self, inner: PrometheusSource, start: float, end: float, step: float):
        super().__init__(inner.name, inner.options)
        self.inner, self.start, self.end, self.step = inner, start, end, step
        self._cache: dict[str, dict[int, list[Sample]]] = {}
        self._covered: dict[str, tuple[int, int]] = {}  # the instants (ms) the query's chunk answers
        self._start_ms = round(start * 1000)
        self._step_ms = round(step * 1000) if abs(step * 1000 - round(step * 1000)) < 1e-6 else 0
        self._lock = threading.Lock()
        self.range_queries = 0

    def check_query(self, query: str) -> None:
        self.inner.check_query(query)

    def window_of(self, query: str) -> float:
        return self.inner.window_of(query)

    def query(self, query: str, now: float) -> QueryResult:
        at = round(now * 1000)
        off = (at - self._start_ms) % self._step_ms if self._step_ms else 1
        if 1 < off < self._step_ms - 1:  # off the grid (a millisecond either way is on it)
            return self.inner.query(query, now)
        with self._lock:
            first, last = self._covered.get(query, (1, 0))
        if not first <= at <= last:
            self._fill(query, now)
        with self._lock:
            samples = self._cache[query].get(at, ())
        return QueryResult(list(samples))

    def _fill(self, query: str, now: float) -> None:
        """The chunk of up to RANGE_POINTS steps from `now` (replacing the query's last one: an
        instant before it, e.g. a baseline, is asked again)."""
        end = max(now, min(self.end, now + self.step * (RANGE_POINTS - 1)))
        try:
            points = self.inner.query_range(query, now, end, self.step)
        except (SourceError, QueryError):
            # e.g. a scalar-only or string query: the instant query gives the proper error
            self.inner.query(query, now)
            raise
        self.range_queries += 1
        with self._lock:
            self._cache[query] = points
            self._covered[query] = (round(now * 1000), round(end * 1000))

    def close(self) -> None:
        self.inner.close()


class NoHistory(Source):
    """A source that keeps no history (the `scrape` and `http_json` kinds)."""

    def __init__(self, name: str, kind: str):
        super().__init__(name, None)
        self.kind = kind

    @property
    def why(self) -> str:
        return (f"source {self.name} ({self.kind}) keeps no history: backtest replays only "
                f"{' and '.join(REPLAYED)} sources")

    def check_query(self, query: str) -> None:
        pass

    def query(self, query: str, now: float) -> QueryResult:
        raise SourceError(self.why, "no_history")


def _sources(loaded: LoadedConfig, start: float, end: float, step: float, query_range: bool) -> dict[str, Source]:
    out: dict[str, Source] = {}
    for name, spec in loaded.config.sources.items():
        if spec.type == "prometheus":
            inner = plugins.create(plugins.SOURCES, spec)
            out[name] = PrometheusHistory(inner, start, end, step) if query_range else inner
        elif spec.type == "sql":
            out[name] = plugins.create(plugins.SOURCES, spec)
        else:
            out[name] = NoHistory(name, spec.type)
    return out


class InlineRunner(SourceRunner):
    """The engine's source runner without threads, retries or circuit breaker: each distinct
    query of a step is asked once, on the replaying thread (one query_range answers thousands
    of steps, so the per-call machinery would cost more than the queries); an error is that
    step's answer, and the rule takes its `on_no_data` path as in the daemon. Answers are kept
    until a later step begins (the quiet-step check asks a step before the engine does)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.asked: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.first_error: dict[str, SourceError] = {}

    def begin_tick(self, now: float, names: Iterable[str] | None = None,
                   deadline: float | None = None) -> dict[str, SourceError | None]:
        for key in [k for k in self._cache if k[2] < now]:
            del self._cache[key]
        return {}

    def end_tick(self) -> None:
        """Answers are kept until a later step begins (see the class's text)."""

    def query(self, source: str, query: str, now: float, params: dict[str, str] | None = None) -> Any:
        key = (source, query, now, tuple(sorted(params.items())) if params else ())
        if key not in self._cache:
            self.prefetch([(source, query, params)], now)
        return self._cache[key]

    def prefetch(self, requests: Sequence[SourceRequest], now: float, deadline: float | None = None) -> None:
        for source, query, params in requests:
            key = (source, query, now, tuple(sorted((params or {}).items())))
            if key in self._cache:
                continue
            self.asked[source] += 1
            try:
                self._cache[key] = invoke(self.sources[source], query, now, params)
            except KeyError:
                self._cache[key] = SourceError(f"unknown source {source!r}", "config")
            except (SourceError, QueryError) as exc:
                self._cache[key] = exc
                if isinstance(exc, SourceError):
                    self.failed[source] += 1
                    self.first_error.setdefault(source, exc)

    def unreachable(self) -> dict[str, SourceError]:
        """The sources that answered every query with an error (down, refused, wrong URL):
        a replay of them says nothing, and must not pass for "nothing would have fired"."""
        return {name: self.first_error[name] for name, n in self.asked.items() if n and self.failed[name] == n}


class QuietSteps:
    """The steps the engine need not tick, and what ticking them would have done.

    A step is quiet when, with the engine's state exactly as after the previous step, ticking
    would change nothing but the fields every evaluation overwrites (`evaluated_at`, `value`,
    `outcome`, `reason`): every series of every rule is inactive with no count running (no
    errors, no-data or inconclusive episode, breaches, sequential memory), each rule judges
    the same series OK, no target's version changes, and no incident would move or awaits
    recovery. "Judges OK" is the engine's own `_verdicts`, except for a rule judged by one
    query against its threshold alone, where it is what `judge_rule` does for one (every
    value not NaN and not `is_breach`) without building verdicts. Most of a week is quiet; the replay ticks the engine
    only on the other steps and on the step before each of them (so the overwritten fields
    are exact again), and does the rest of a quiet tick itself: the version observation and
    the release bake. Rules with a baseline or a failure limit, and several owners, are never
    skipped. tests/commands/test_backtest.py and tests/integration/test_backtest_prometheus.py compare
    the reports with and without skipping."""

    def __init__(self, engine: Engine, loaded: LoadedConfig) -> None:
        self.engine, self.loaded = engine, loaded
        self.enabled = engine.owner is None and all(
            lr.rule.failure_limit is None and all(c.compare is None for c in lr.rule.conditions())
            for lr in loaded.rules)
        self.skipped = 0
        self._incidents: dict[str, Incident] = {}
        self._releases: dict[str, bool] = {}
        self._plains: dict[tuple[str, str], tuple[str, str, dict[str, str] | None] | None] = {}
        self._keysets: dict[tuple[str, str], set[StateKey]] = {}
        self._keys: dict[tuple[str, str, bool], dict[Labels, StateKey]] = {}
        self._versioned = any(t.version is not None for t in loaded.config.targets.values())

    def values(self, now: float) -> dict[tuple[str, str], list[float]] | None:
        """Each rule's values at `now` when the step is quiet, else None."""
        engine = self.engine
        if not self.enabled:
            return None
        targets = self.loaded.config.targets
        if not all(engine.rollbacks.at_rest(name, now, engine.versions.get(name), self._incident(name))
                   for name in targets):
            return None
        engine.runner.begin_tick(now)  # the inline runner asks a source when first asked: no prefetch
        engine._known_versions.clear()
        engine._router.clear()
        for name, target in targets.items():
            if target.version is not None and self._version(name, now) != engine.versions.get(name):
                return None
        out: dict[tuple[str, str], list[float]] = {}
        for lr in self.loaded.rules:
            plain = self._plain(lr)
            values = self._threshold_values(lr, plain, now) if plain else self._judged_values(lr, now)
            if values is None:
                return None
            out[(lr.target, lr.rule.name)] = values
        return out

    def _judged_values(self, lr: LoadedRule, now: float) -> list[float] | None:
        """By the engine's own judgement: each series OK, remembering nothing, at rest."""
        keys = set()
        values = []
        for verdict in self.engine._verdicts(lr, now):
            key = self._key(lr, verdict.labels)
            if verdict.outcome is not Outcome.OK or verdict.memory is not None \
                    or not _at_rest(self.engine.states.get(key)):
                return None
            keys.add(key)
            if verdict.value is not None:
                values.append(verdict.value)
        return values if keys and keys == self._rule_keys(lr) else None

    def _threshold_values(self, lr: LoadedRule, plain: tuple[str, str, dict[str, str] | None], now: float
                          ) -> list[float] | None:
        """A rule judged by its threshold alone (see `_plain`): what `judge_rule` would judge
        OK — a series without __name__, its value not NaN and not a breach — without building
        its verdicts."""
        result = self.engine.runner.query(*plain[:2], now, plain[2])
        if isinstance(result, WatchdogError) or not result.samples:
            return None  # no data or warming up
        rule, states = lr.rule, self.engine.states
        keys = set()
        values = []
        for sample in result.samples:
            value = sample.value
            if value != value or is_breach(rule.above, rule.below, value):
                return None
            key = self._key(lr, sample.labels, name=True)
            if not _at_rest(states.get(key)):
                return None
            keys.add(key)
            values.append(value)
        return values if keys == self._rule_keys(lr) else None

    def _plain(self, lr: LoadedRule) -> tuple[str, str, dict[str, str] | None] | None:
        """(source, rendered query, bound parameters) of a rule that `judge_rule` judges by one
        query against `above`/`below` alone (no baseline, statistics, composition, sample
        count, split or version warm-up), else None. Between ticks the variables stay."""
        rid = (lr.target, lr.rule.name)
        if rid not in self._plains:
            rule, engine = lr.rule, self.engine
            plain = None
            if rule.query is not None and not rule.is_statistical() and rule.compare is None \
                    and rule.min_samples is None and not rule.all and not rule.any and lr.split_by is None:
                variables = engine.variables(lr.target)
                try:
                    plain = (rule.source, render(rule.query, variables), bound_parameters(variables))
                except TemplateError:
                    plain = None
            self._plains[rid] = plain
        if self.engine.version_changed_at.get(lr.target) is not None:
            return None  # _verdicts may answer "warming up": let it
        return self._plains[rid]

    def _key(self, lr: LoadedRule, labels: Labels, name: bool = False) -> StateKey:
        cache = self._keys.setdefault((lr.target, lr.rule.name, name), {})
        if labels not in cache:
            cache[labels] = (lr.target, lr.rule.name, series_key(without_name(labels) if name else labels))
        return cache[labels]

    def _rule_keys(self, lr: LoadedRule) -> set[StateKey]:
        rid = (lr.target, lr.rule.name)
        if rid not in self._keysets:  # a quiet step keeps every series: only a tick adds or drops one
            self._keysets[rid] = set(self.engine.states.keys_of_rule(*rid))
        return self._keysets[rid]

    def ticked(self) -> None:
        """The engine ticked: what it may have changed is read again."""
        self._incidents.clear()
        self._releases.clear()
        self._plains.clear()
        self._keysets.clear()

    def _released(self, target: str) -> bool:
        if target not in self._releases:  # releases are recorded on ticks only (a version change, a rollback)
            self._releases[target] = self.engine.ledger.current(target) is not None
        return self._releases[target]

    def _incident(self, target: str) -> Incident:
        if target not in self._incidents:  # only a tick changes it (a quiet step changes no version)
            self._incidents[target] = self.engine.desk.load(target)
        return self._incidents[target]

    def _version(self, name: str, now: float) -> str | None:
        spec = self.loaded.config.targets[name].version
        assert spec is not None
        result = self.engine.runner.query(spec.source, spec.query, now)
        if isinstance(result, WatchdogError):
            return None
        return next((s.label(spec.label) for s in result.samples if s.label(spec.label)), None)

    def skip(self, now: float) -> None:
        """What the engine's tick does on a quiet step besides judging: observe the versions
        and bake the releases (nothing fires)."""
        engine = self.engine
        if self._versioned:
            with engine.store.transaction():
                for name, target in self.loaded.config.targets.items():
                    engine._observe_version(name, target, now)
            engine._known_versions.clear()
        for name in sorted(engine.owned):
            if self._released(name):  # else baking does nothing
                engine.ledger.bake(name, now, firing=False)
        self.skipped += 1


def _at_rest(state: SeriesState | None) -> bool:
    return state is not None and state.phase is Phase.INACTIVE and not state.errors and state.no_data_since is None \
        and state.insufficient_since is None and not state.insufficient_alerted and not state.breaches \
        and state.memory is None and state.pending_since is None


class ReplayStore(SQLiteStateStore):
    """The replay's in-memory store, keeping each target's versions between writes: the
    engine reads them for every rule on every step. Forgotten on every write of versions and
    at the end of every transaction (a rolled-back write must not linger)."""

    def __init__(self) -> None:
        self._versions: dict[str, list[VersionRecord]] = {}  # before the schema's transaction
        super().__init__(":memory:")

    def versions(self, target: str) -> list[VersionRecord]:
        if target not in self._versions:
            self._versions[target] = super().versions(target)
        return list(self._versions[target])

    def observe_version(self, target: str, version: str, now: float) -> bool:
        self._versions.clear()
        return super().observe_version(target, version, now)

    def mark_bad(self, target: str, version: str, reason: str) -> None:
        self._versions.clear()
        super().mark_bad(target, version, reason)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        try:
            with super().transaction():
                yield
        finally:
            self._versions.clear()


# -- what happened -----------------------------------------------------------------------------------

@dataclass
class RuleLog:
    threshold: dict[str, float]
    evaluations: int = 0
    no_data: int = 0
    firings: list[dict[str, Any]] = field(default_factory=list)
    open: dict[str, dict[str, Any]] = field(default_factory=dict)  # series key → its firing, while it fires
    values: list[tuple[float, float]] = field(default_factory=list)  # (time, the most breaching value)

    @property
    def lower_is_worse(self) -> bool:
        return "below" in self.threshold and "above" not in self.threshold

    def record(self, now: float, verdicts: list[tuple[Any, Any]]) -> None:
        self.evaluations += 1
        if all(v.outcome in (Outcome.NO_DATA, Outcome.WARMING_UP) for v, _ in verdicts):
            self.no_data += 1
        values = [v.value for v, _ in verdicts if v.value is not None]
        if values:
            self.values.append((now, min(values) if self.lower_is_worse else max(values)))
        for verdict, state in verdicts:
            key = series_key(verdict.labels)
            if state.phase is Phase.FIRING and key not in self.open:
                firing = {"labels": dict(verdict.labels), "pending_at": state.pending_since or now,
                          "fired_at": now, "resolved_at": None, "value": verdict.value}
                self.open[key] = firing
                self.firings.append(firing)
            elif state.phase is not Phase.FIRING and key in self.open:
                self.open.pop(key)["resolved_at"] = now


@dataclass
class Recorder:
    rules: dict[tuple[str, str], RuleLog]
    deliveries: list[tuple[str, Alert]] = field(default_factory=list)  # (alerter, alert), in order

    def tick(self, report: TickReport) -> None:
        by_rule: dict[tuple[str, str], list[tuple[Any, Any]]] = {}
        for target, rule, verdict, state in report.verdicts:
            by_rule.setdefault((target, rule), []).append((verdict, state))
        for key, verdicts in by_rule.items():
            self.rules[key].record(report.at, verdicts)

    def quiet(self, at: float, judged: dict[tuple[str, str], list[float]]) -> None:
        """A quiet step: every series judged OK and inactive (none was firing)."""
        for key, values in judged.items():
            rule_log = self.rules[key]
            rule_log.evaluations += 1
            if values:
                rule_log.values.append((at, min(values) if rule_log.lower_is_worse else max(values)))


# -- the run ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    start: float
    end: float
    step: float | None = None  # default: the config's interval
    targets: tuple[str, ...] = ()
    rule_files: tuple[str, ...] = ()  # globs of rule files to try instead of the config's
    incidents: tuple["KnownIncident", ...] | None = None


def run(loaded: LoadedConfig, request: Request, notes: list[str] | None = None, *,
        exact: bool = False, stats: dict[str, int] | None = None) -> dict[str, Any]:
    """Replay the engine; returns the report `--json` prints (times as RFC 3339). What was
    left out of the replay, and why, is appended to `notes` (for stderr).

    `exact=True` is the reference the fast path is tested against: one instant query per
    step (no query_range) and the engine ticked on every step (no quiet steps skipped).
    `stats`, when given, receives the counts of steps, engine ticks and query_range calls."""
    step = request.step or loaded.config.interval
    if step <= 0:
        raise BacktestError("--step must be greater than 0")
    if request.end < request.start:
        raise BacktestError("--to is before --from")
    count = int((request.end - request.start) // step) + 1
    if count > MAX_STEPS:
        raise BacktestError(f"{count} steps from --from to --to at --step {format_duration(step)}: "
                            f"more than {MAX_STEPS}; use a longer --step")
    if request.rule_files:
        loaded = with_rule_files(loaded, request.rule_files)
    sources = _sources(loaded, request.start, request.end, step, query_range=not exact)
    loaded, skipped = _replayable(loaded, request.targets, sources, step, notes if notes is not None else [])
    try:
        recorder, ticks, store = _replay(loaded, sources, request.start, step, count, skip_quiet=not exact)
        report = _report(loaded, request, step, recorder, store, skipped)
        store.close()
    finally:
        for source in sources.values():
            source.close()
    if stats is not None:
        stats.update(steps=count, ticks=ticks, range_queries=sum(
            s.range_queries for s in sources.values() if isinstance(s, PrometheusHistory)))
    return report


def _replay(loaded: LoadedConfig, sources: dict[str, Source], start: float, step: float, count: int,
            skip_quiet: bool = True) -> tuple[Recorder, int, ReplayStore]:
    store = ReplayStore()
    clock = FakeClock(start)
    metrics = DaemonMetrics()
    stop = threading.Event()
    recorder = Recorder({(lr.target, lr.rule.name): RuleLog(lr.rule.threshold()) for lr in loaded.rules})
    alerters = {name: RecordingAlerter(name, recorder.deliveries) for name in loaded.config.alerters}
    actuators = {name: RecordingActuator(name) for name in loaded.config.actuators}
    notifier = Notifier(dict(alerters), metrics, stop)
    executor = RollbackExecutor(store, dict(actuators), metrics, stop)
    # A step's queries may start a query_range of many thousand points: give them time.
    engine = Engine(loaded, store, sources, executor, notifier, metrics, clock=clock, tick_budget=120.0)
    engine.runner = InlineRunner(sources, metrics, clock, replace(engine.runner.settings, query_timeout=120.0), stop)
    quiet = QuietSteps(engine, loaded) if skip_quiet else None
    ahead: dict[tuple[str, str], list[float]] | None = None  # the next step's values, when it is quiet
    ticks = 0
    for i in range(count):
        now = start + i * step
        clock.set(now)
        values, ahead = ahead, None
        if quiet is not None and 0 < i < count - 1:
            values = values if values is not None else quiet.values(now)
            # the step before one that is not quiet is ticked: its overwritten fields are exact again
            ahead = quiet.values(now + step) if values is not None else None
        if values is not None and ahead is not None:
            quiet.skip(now)  # type: ignore[union-attr]
            recorder.quiet(now, values)
        else:
            ahead = None
            recorder.tick(engine.tick(now))
            ticks += 1
            if quiet is not None:
                quiet.ticked()
    notifier.drain(timeout=0)
    down = engine.runner.unreachable()  # type: ignore[attr-defined]
    if down:
        store.close()
        raise BacktestError("; ".join(f"source {name}: every query failed, e.g. {error}" for name, error in down.items()))
    return recorder, ticks, store


def with_rule_files(loaded: LoadedConfig, patterns: tuple[str, ...]) -> LoadedConfig:
    """The config with these rule files (globs relative to the working directory) instead of its own."""
    problems: list[Problem] = []
    files: list[Path] = []
    for pattern in patterns:
        matches = sorted(Path(p).resolve() for p in glob.glob(os.path.expanduser(pattern), recursive=True))
        if not matches:
            problems.append(Problem(pattern, 0, 0, f"--rules '{pattern}' matches no file"))
        files.extend(m for m in matches if m not in files)
    rules: list[LoadedRule] = []
    for file in files:
        rules.extend(load_rule_file(file, problems))
    check_references(loaded.config, rules, str(loaded.path), problems, []).close()  # only the checks
    if problems:
        raise ConfigError(problems)
    return replace(loaded, rules=rules, rule_files=files)


def _replayable(loaded: LoadedConfig, targets: tuple[str, ...], sources: dict[str, Source],
                step: float, notes: list[str]) -> tuple[LoadedConfig, dict[tuple[str, str], str]]:
    """Only the chosen targets, only the rules whose sources keep history (the others: why not)."""
    known = loaded.config.targets
    unknown = [t for t in targets if t not in known]
    if unknown:
        raise BacktestError(f"unknown target(s) {', '.join(unknown)}; configured: {', '.join(sorted(known)) or 'none'}")
    chosen = {n: t for n, t in known.items() if not targets or n in targets}
    skipped: dict[tuple[str, str], str] = {}
    rules = []
    for lr in loaded.rules:
        if lr.target not in chosen:
            continue
        blind = [s for c in lr.rule.conditions() if isinstance(s := sources[c.source or lr.rule.source], NoHistory)]
        if blind:
            skipped[(lr.target, lr.rule.name)] = blind[0].why  # type: ignore[attr-defined]
        else:
            rules.append(lr)
    for name, target in list(chosen.items()):
        if target.version is not None and isinstance(sources[target.version.source], NoHistory):
            notes.append(f"target {name}: the running version is not replayed (rules run as if it were "
                         f"unknown): {sources[target.version.source].why}")  # type: ignore[attr-defined]
            chosen[name] = replace(target, version=None)
    config = replace(loaded.config, targets=chosen, state=":memory:")
    if step != loaded.config.interval:  # evaluations a step apart are consecutive, not a gap
        config = replace(config, interval=step)
    return replace(loaded, config=config, rules=rules, state_path=":memory:"), skipped


def _report(loaded: LoadedConfig, request: Request, step: float, recorder: Recorder, store: Any,
            skipped: dict[tuple[str, str], str]) -> dict[str, Any]:
    out: dict[str, Any] = {"from": rfc3339(request.start), "to": rfc3339(request.end), "step": format_duration(step),
                           "targets": {}}
    deliveries = recorder.deliveries
    for target in loaded.config.targets:
        rules: dict[str, Any] = {}
        for (t, name), rule_log in recorder.rules.items():
            if t == target:
                rules[name] = _rule_report(rule_log, request, target, name)
        for (t, name), why in skipped.items():
            if t == target:
                rules[name] = {"skipped": why}
        rollbacks = [{"at": rfc3339(d.created_at), "rule": d.rule, "value": d.context.action.value if d.context.action else None}
                     for d in sorted(store.decisions(target=target, limit=100_000), key=lambda d: d.created_at)]
        alerts = _alerts([(n, a) for n, a in deliveries if a.target == target])
        out["targets"][target] = {"rules": rules, "rollbacks": rollbacks, "alerts": alerts}
    return out


def _rule_report(rule_log: RuleLog, request: Request, target: str, rule: str) -> dict[str, Any]:
    firings = [{"labels": f["labels"], "pending_at": rfc3339(f["pending_at"]), "fired_at": rfc3339(f["fired_at"]),
                "resolved_at": rfc3339(f["resolved_at"]) if f["resolved_at"] is not None else None, "value": f["value"]}
               for f in rule_log.firings]
    report: dict[str, Any] = {"threshold": rule_log.threshold, "evaluations": rule_log.evaluations,
                              "no_data": rule_log.no_data, "firings": firings}
    if request.incidents is not None:
        report["incidents"] = score(rule_log, [i for i in request.incidents if i.applies(target, rule)], request.end)
    return report


def _alerts(deliveries: list[tuple[str, Alert]]) -> list[dict[str, Any]]:
    """One entry per alert (an alert sent to several alerters is one), in order."""
    out: list[dict[str, Any]] = []
    seen: dict[int, dict[str, Any]] = {}
    for name, alert in deliveries:
        if id(alert) in seen:
            seen[id(alert)]["via"].append(name)
            continue
        entry = {"at": alert.at, "kind": alert.kind, "status": alert.status, "rule": alert.rule or None,
                 "summary": alert.summary, "via": [name]}
        seen[id(alert)] = entry
        out.append(entry)
    return out


# -- known incidents ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KnownIncident:
    start: float
    end: float
    name: str = ""
    target: str | None = None
    rules: tuple[str, ...] = ()  # globs; empty: every rule of the target

    def applies(self, target: str, rule: str) -> bool:
        return ((self.target is None or self.target == target)
                and (not self.rules or any(fnmatch.fnmatchcase(rule, g) for g in self.rules)))


def score(rule_log: RuleLog, incidents: list[KnownIncident], end: float) -> dict[str, Any]:
    """Detection delay per known incident, firings outside them, and a threshold that would
    have caught every incident with no firing outside them (when one exists)."""
    detections = []
    for incident in incidents:
        caught = [f for f in rule_log.firings
                  if f["fired_at"] <= incident.end and (f["resolved_at"] or end) >= incident.start]
        first = min((f["fired_at"] for f in caught), default=None)
        detections.append({"name": incident.name, "start": rfc3339(incident.start), "end": rfc3339(incident.end),
                           "detected_at": rfc3339(first) if first is not None else None,
                           "detection_delay_s": max(0.0, first - incident.start) if first is not None else None})
    outside = [f for f in rule_log.firings
               if not any(f["fired_at"] <= i.end and (f["resolved_at"] or end) >= i.start for i in incidents)]
    return {"known": detections, "false_positives": len(outside),
            "suggested_threshold": suggest(rule_log, incidents)}


def suggest(rule_log: RuleLog, incidents: list[KnownIncident]) -> dict[str, float] | None:
    """For a one-sided rule: the middle of the gap between the worst value outside every
    incident and the least bad peak inside each (ignores `for` and `min_samples`: a value to
    backtest again). None when no such threshold exists."""
    bounds = list(rule_log.threshold)
    if len(bounds) != 1 or not incidents:
        return None
    above = bounds[0] == "above"
    inside = lambda t: any(i.start <= t <= i.end for i in incidents)  # noqa: E731
    peaks = []
    for incident in incidents:
        values = [v for t, v in rule_log.values if incident.start <= t <= incident.end]
        if not values:
            return None
        peaks.append(max(values) if above else min(values))
    rest = [v for t, v in rule_log.values if not inside(t)]
    caught = min(peaks) if above else max(peaks)
    if not rest:
        return {bounds[0]: caught}
    calm = max(rest) if above else min(rest)
    if (above and calm >= caught) or (not above and calm <= caught):
        return None
    return {bounds[0]: (calm + caught) / 2}


def load_incidents(path: str, now: float, max_bytes: int = 1 << 20) -> tuple[KnownIncident, ...]:
    """A YAML list of `{start, end, name?, target?, rules?}` (times as for --from)."""
    import yaml  # only here: an operator's file of known bad periods

    try:
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError as exc:
        raise BacktestError(f"--incidents {path}: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise BacktestError(f"--incidents {path}: larger than {max_bytes} bytes")
    try:
        doc = yaml.safe_load(raw.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BacktestError(f"--incidents {path}: not YAML: {exc}") from None
    if not isinstance(doc, list):
        raise BacktestError(f"--incidents {path}: expected a list of {{start, end, name, target, rules}}")
    return tuple(_incident(item, i, path, now) for i, item in enumerate(doc))


def _incident(item: Any, index: int, path: str, now: float) -> KnownIncident:
    where = f"--incidents {path}: item {index + 1}"
    if not isinstance(item, dict) or not {"start", "end"} <= set(item):
        raise BacktestError(f"{where}: needs start and end")
    extra = set(item) - {"start", "end", "name", "target", "rules"}
    if extra:
        raise BacktestError(f"{where}: unknown key(s) {', '.join(sorted(map(str, extra)))}")
    start, end = (parse_time(_text(item[k]), now) for k in ("start", "end"))
    if end < start:
        raise BacktestError(f"{where}: end is before start")
    rules = item.get("rules") or ()
    rules = (rules,) if isinstance(rules, str) else tuple(str(r) for r in rules)
    return KnownIncident(start, end, str(item.get("name") or f"incident {index + 1}"),
                         str(item["target"]) if item.get("target") is not None else None, rules)


def _text(value: Any) -> str:
    if isinstance(value, datetime):  # YAML reads an unquoted timestamp as a datetime (naive: UTC)
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()
    return str(value)


def fired(report: dict[str, Any]) -> bool:
    return any(r.get("firings") for t in report["targets"].values() for r in t["rules"].values())


def format_text(report: dict[str, Any]) -> list[str]:
    """The report for a terminal: per target and rule, what fired and when."""
    lines = [f"backtest {report['from']} → {report['to']} every {report['step']}"]
    for target, t in report["targets"].items():
        lines.append(f"target {target}:")
        for name, r in t["rules"].items():
            if "skipped" in r:
                lines.append(f"  rule {name}: not replayed: {r['skipped']}")
                continue
            lines.append(f"  rule {name}: {r['evaluations']} evaluations, {r['no_data']} without data, "
                         f"{len(r['firings'])} firing(s)")
            for f in r["firings"]:
                value = f"{f['value']:.4g}" if isinstance(f["value"], float) else f["value"]
                lines.append(f"    pending {f['pending_at']}  fired {f['fired_at']}  resolved {f['resolved_at'] or '-'}"
                             f"  value {value}")
            for k in (r.get("incidents") or {}).get("known", []):
                delay = (f"detected after {format_duration(round(k['detection_delay_s']))}"
                         if k["detection_delay_s"] is not None else "MISSED")
                lines.append(f"    known incident {k['name']} ({k['start']} → {k['end']}): {delay}")
            if "incidents" in r:
                s = r["incidents"]["suggested_threshold"]
                lines.append(f"    false positives: {r['incidents']['false_positives']}; suggested threshold: "
                             + (", ".join(f"{b} {v:.6g}" for b, v in s.items()) if s else "none separates them"))
        for rb in t["rollbacks"]:
            lines.append(f"  would roll back at {rb['at']} ({rb['rule']}, value {rb['value']})")
        if t["alerts"]:
            lines.append(f"  would send {len(t['alerts'])} alert(s): "
                         + ", ".join(sorted({f"{a['kind']}/{a['status']}" for a in t["alerts"]})))
    return lines
