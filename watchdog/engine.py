"""One evaluation tick: fetch → judge → step the state machine → persist → act and alert.

No scheduling, no HTTP, no argv here: `Engine.tick(now)` is handed the time, and everything
it needs is handed to its constructor, so tests drive it with a fake clock.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from typing import Iterable

from watchdog.rollback.executor import RollbackExecutor
from watchdog.alerters.base import Alert
from watchdog.clock import Clock, StepBack, SystemClock, rfc3339
from watchdog.config.loader import LoadedConfig
from watchdog.config.schema import Condition, LoadedRule, TargetConfig
from watchdog.durations import format_duration
from watchdog.errors import WatchdogError
from watchdog.metrics import DaemonMetrics
from watchdog.runtime.notify import Notifier
from watchdog.runtime.ownership import Owner
from watchdog.rollback.releases import Ledger
from watchdog.rollback.coordinator import Rollbacks, TargetView
from watchdog.rollback.desk import Desk
from watchdog.rollback.incident import Phase as IncidentPhase
from watchdog.rules.evaluate import Outcome, Situation, Verdict, judge_rule
from watchdog.rules.verdict import Rendered, memo, shown_labels
from watchdog.rules.split import Router, target_key
from watchdog.rules.state import Event, Phase, SeriesState, reset_pending, step
from watchdog.rules.stateindex import StateIndex
from watchdog.config.templating import TemplateError, render, variables_for
from watchdog.samples import Labels, format_labels
from watchdog.sources.base import QueryResult, Source
from watchdog.sources.runner import RunnerSettings, SourceRunner
from watchdog.state.base import Decision, HistoryEvent, StateStore, VersionRecord
from watchdog.rollback.version_gate import VersionGate
from watchdog.text.versions import previous_good

log = logging.getLogger("watchdog.engine")

StateKey = tuple[str, str, str]  # (target, rule, series key)
FLUSH_TICKS = 20  # a quiet series' overwritten fields (value, reason, …) reach the store within this many ticks


def series_key(labels: Labels) -> str:
    try:
        return _series_key(labels)
    except TypeError:  # labels given as a list: not cached
        return json.dumps(dict(labels), sort_keys=True, separators=(",", ":"))


def _json_key(labels: Labels) -> str:
    return json.dumps(dict(labels), sort_keys=True, separators=(",", ":"))


_series_key = memo(_json_key)  # the same label sets every tick; json.dumps was ~15 % of a replayed tick


@dataclass(slots=True)
class _TargetContext:
    """A target's placeholder values, kept while its versions stay the same, with the queries
    rendered for them (see `Situation.rendered`)."""

    key: tuple[str | None, str | None]  # (version, previous version)
    variables: dict[str, str | None]
    rendered: Rendered
    versions: list[VersionRecord] | None = None  # the store's list (read once per tick) these were checked against
    previous_seen_at: float | None = None


_RULE_LEVEL_KEY = json.dumps({}, sort_keys=True, separators=(",", ":"))
_NO_STATE = SeriesState()


class TickAbandoned(WatchdogError):
    """Shutdown began during a tick: it stops at the next checkpoint. What it had not
    committed is not written (a tick's rule states and history go in one transaction)."""


@dataclass
class TickReport:
    at: float
    verdicts: list[tuple[str, str, Verdict, SeriesState]] = field(default_factory=list)
    source_errors: dict[str, str] = field(default_factory=dict)
    decisions: list[str] = field(default_factory=list)


def _gap(now: float, evaluated_at: float | None, steps: tuple[float, ...] = ()) -> str:
    if steps:  # the tick took a step of the wall clock (watchdog.clock.StepBack)
        return "the clock stepped " + ", ".join(("back " if d < 0 else "forward ") + format_duration(round(abs(d), 1))
                                                 for d in steps)
    gap = round(now - (evaluated_at or now), 1)
    return f"not evaluated for {format_duration(gap)}" if gap >= 0 else f"the clock stepped back {format_duration(-gap)}"


class Engine:
    def __init__(self, loaded: LoadedConfig, store: StateStore, sources: dict[str, Source],
                 executor: RollbackExecutor, notifier: Notifier, metrics: DaemonMetrics, owner: Owner | None = None,
                 clock: Clock | None = None, tick_budget: float | None = None, steps: StepBack | None = None):
        self.loaded = loaded
        self.store = store
        self.sources = sources
        self.executor = executor
        self.notifier = notifier
        self.metrics = metrics
        self.clock = clock or SystemClock()
        # The wall clock's steps: the daemon's (its scheduler watches the clock), else its own;
        # observed once per tick, first, and handed to the runner (circuits, scrape sources), the
        # guards and the rule states, so all see a step on the same tick (watchdog/clock.py)
        self.steps = steps or StepBack()
        self._clock_steps: tuple[float, ...] = ()  # the steps this tick took
        self.states = StateIndex((k, SeriesState.from_json(v)) for k, v in store.load_rule_states().items())
        # What the store holds of each state, as far as an inactive series' course goes: a quiet
        # series (inactive, judged OK again) is written only when that changes, and its
        # overwritten fields every FLUSH_TICKS ticks (`_unsaved`, oldest first) and on close.
        # Only the course is kept (`SeriesState.course()`; most series share one tuple), not a
        # second copy of each state with its reason and value.
        self._persisted: dict[StateKey, tuple] = {k: s.course() for k, s in self.states.items()}  # type: ignore[type-arg]
        self._unsaved: dict[StateKey, None] = {}
        self._contexts: dict[str, _TargetContext] = {}
        # Rules by target and by (target, name), so nothing per target or per rule scans them all.
        self._rules_of: dict[str, list[LoadedRule]] = {}
        self._rule: dict[tuple[str, str], LoadedRule] = {}
        for lr in loaded.rules:
            self._rules_of.setdefault(lr.target, []).append(lr)
            self._rule[(lr.target, lr.rule.name)] = lr
        self._rollback_rules = {t: {lr.rule.name for lr in rules if lr.rule.action == "rollback"}
                                for t, rules in self._rules_of.items()}
        # Each rule's queries and (split rules) routing key, worked out once, not per tick.
        # (Templated rules share one Rule: these are per Rule, not per target.)
        # rule.conditions() builds new Condition objects: once per Rule (10 at 1,000 × 10), not per target
        self._conditions: dict[int, list[Condition]] = {}
        self._queries: dict[int, list[tuple[str, str]]] = {}
        self._thresholds: dict[int, list[tuple[str, float]]] = {}
        for lr in loaded.rules:
            if id(lr.rule) not in self._conditions:
                conditions = self._conditions[id(lr.rule)] = lr.rule.conditions()
                self._queries[id(lr.rule)] = [(c.source or lr.rule.source, c.query) for c in conditions]
                self._thresholds[id(lr.rule)] = list(lr.rule.threshold().items())
        self._split_keys = {id(lr): target_key(lr.target, loaded.config.targets[lr.target].variables, lr.split_by)
                            for lr in loaded.rules if lr.split_by is not None}
        self._router = Router(self._fetch)  # split_by rules: one query per tick, its series routed to targets
        self._known_versions: dict[str, list[VersionRecord]] = {}  # the store's, read once per target per tick
        self._previous: dict[str, tuple[list[VersionRecord], str | None, str | None]] = {}
        self._pending_history: list[HistoryEvent] | None = None  # while set, history waits for the tick's commit
        # ... and so do alerts: one for a firing whose state is not committed would be sent again after a restart
        self._pending_alerts: list[tuple[list[str] | None, str, Alert]] | None = None
        self.versions: dict[str, str | None] = store.current_versions(loaded.config.targets)
        self.version_changed_at: dict[str, float] = {}  # when the running version replaced another
        self._recall_version_changes(loaded.config.targets)
        self.version_gate = VersionGate(self._history, self.alert)  # versions are untrusted (watchdog/rollback/version_gate.py)
        # Sources run concurrently, once per query per tick, behind per-source circuit breakers.
        interval = loaded.config.interval
        self.runner = SourceRunner(sources, metrics, self.clock, stop=executor.stop_event, steps=self.steps, settings=RunnerSettings(
            # A dead source is skipped for a couple of ticks, not for a minute: recovery must
            # be noticed (and no-data alerts resolved) promptly.
            cooldown=min(60.0, max(5.0, 2 * interval)), query_timeout=max(2.0, 0.8 * interval)))
        # A tick's queries must finish well within the interval, so detection never lags.
        self.tick_budget = tick_budget if tick_budget is not None else max(1.0, 0.8 * loaded.config.interval)
        self.ledger = Ledger(store, loaded.config)
        self.desk = Desk(loaded.config, store, self.alert, metrics, executor, clock=self.clock.now)
        self.rollbacks = Rollbacks(loaded, store, executor, self.desk, self.ledger, steps=self.steps)
        self.owner = owner
        self.owned: set[str] = set(loaded.config.targets) if owner is None else set()
        if owner is not None:
            executor.may_continue = owner.still_owned
        self._fixed_baselines = any(c.compare is not None and c.compare.baseline_value.kind == "at"
                                    for conditions in self._conditions.values() for c in conditions)
        self._retain_baselines(self.clock.now())

    def _retain_baselines(self, now: float) -> None:
        """Let sources size their sample buffers to the rules' windows and baselines (a fixed
        time lies further back with every tick)."""
        for lr in self.loaded.rules:
            window = None  # worked out only for a rule that has such a baseline (at 10,000 rules, few do)
            for c in self._conditions[id(lr.rule)]:
                if c.compare is None or c.compare.baseline_value.kind == "previous_version":
                    continue
                window = self.window(lr) if window is None else window
                back = c.compare.baseline_value.lookback(now)
                self.sources[c.source or lr.rule.source].retain(back + window)

    # -- the tick ---------------------------------------------------------------------------

    def tick(self, now: float) -> TickReport:
        started = self.clock.monotonic()
        self._observe_clock(now)
        report = TickReport(at=now)
        self._refresh_ownership(now)
        self.desk.sync(self.owned)
        if self._fixed_baselines:
            self._retain_baselines(now)
        report.decisions.extend(self.executor.resume_unfinished(self.clock.now, may_run=lambda d: self._may_run(d, now)))
        self._read_versions()
        self._router.clear()
        self._refresh_sources(now, report)
        self._prefetch(now)
        self._checkpoint()
        with self.store.transaction():  # one commit for every target's version, not one each
            for name, target in self.loaded.config.targets.items():
                if name in self.owned:
                    self._observe_version(name, target, now)
        self._read_versions()
        fired = self._evaluate_rules(now, report)
        for target in sorted(self.owned):
            self._checkpoint()  # each target's incident is its own transaction: stopping between them is safe
            self._act(target, now, report, tuple(fired.get(target, ())))
        # One read of every target's current release, after every incident stepped (an incident
        # changes only its own target's releases), not one per target.
        current = self.store.current_releases(self.owned)
        for target in sorted(self.owned):
            self.ledger.bake(target, now, firing=self._firing(target), current=current)
        self.runner.end_tick()  # its answers are not kept between ticks
        self.metrics.evaluations.inc()
        self.metrics.last_evaluation.set(now)
        self.metrics.evaluation_duration.observe(self.clock.monotonic() - started)
        return report

    def _observe_clock(self, now: float) -> None:
        """Once per tick, first: the steps of the wall clock since the last tick, for every part."""
        self._clock_steps = self.steps.observe(now)
        self.rollbacks.observe_clock(self._clock_steps)

    def _evaluate_rules(self, now: float, report: TickReport) -> dict[str, list[str]]:
        """Judge every owned rule; its states and history are written in ONE transaction at the
        end (an abandoned tick writes nothing). Returns the rollback rules that fired, by target."""
        upserts: dict[StateKey, str] = {}
        deletes: list[StateKey] = []
        fired: dict[str, list[str]] = {}
        self._pending_history, self._pending_alerts = [], []
        try:
            for n, lr in enumerate(self.loaded.rules):
                if n % 64 == 0:
                    self._checkpoint()
                if lr.target in self.owned:
                    self._evaluate_rule(lr, now, report, upserts, deletes, fired)
            self._checkpoint()
            self._flush_some(upserts, max(1, -(-len(self.states) // FLUSH_TICKS)))
            history, self._pending_history = self._pending_history, None
            alerts, self._pending_alerts = self._pending_alerts, None
            with self.store.transaction():
                for event in history:
                    self.store.append(event)
                self.store.save_rule_states(upserts, deletes)
                for alerters, target, alert in alerts:  # queued with the states that report them
                    self.alert(target, alert, alerters)
            self._saved(upserts, deletes)
        finally:
            self._pending_history = self._pending_alerts = None
        return fired

    def _saved(self, upserts: dict[StateKey, str], deletes: Iterable[StateKey]) -> None:
        """These states are in the store now (the transaction committed)."""
        for key in upserts:
            state = self.states.get(key)
            if state is not None:
                self._persisted[key] = state.course()
            self._unsaved.pop(key, None)
        for key in deletes:
            self._persisted.pop(key, None)
            self._unsaved.pop(key, None)

    def _flush_some(self, upserts: dict[StateKey, str], count: int | None) -> None:
        """Add the `count` (None: all) longest-unsaved quiet states of owned targets to `upserts`."""
        taken = 0
        for key in list(self._unsaved):
            if count is not None and taken >= count:
                break
            state = self.states.get(key)
            if state is None or key[0] not in self.owned:
                del self._unsaved[key]  # gone, or another replica's now: not ours to write
                continue
            if key not in upserts:
                upserts[key] = state.to_json()
                taken += 1

    def flush_states(self) -> None:
        """Write every quiet state's overwritten fields (at shutdown and before a reload)."""
        upserts: dict[StateKey, str] = {}
        self._flush_some(upserts, None)
        if upserts:
            with self.store.transaction():
                self.store.save_rule_states(upserts, [])
            self._saved(upserts, [])

    def _checkpoint(self) -> None:
        if self.executor.stop_event.is_set():
            raise TickAbandoned("shutting down")

    def _act(self, target: str, now: float, report: TickReport, newly_fired: tuple[str, ...]) -> None:
        """Tell the target's rollback incident what this tick saw (see watchdog.rollback)."""
        rules = self._rollback_rules.get(target, set())
        view = TargetView(target, self.versions.get(target), self.previous_version(target),
                          self.version_changed_at.get(target), self.states.of_target(target, rules), newly_fired,
                          version_problem=self.version_gate.invalid.get(target))
        loaded = self.desk.load(target)
        before = loaded.decision_id
        incident = self.rollbacks.tick(view, now, loaded)
        self._known_versions.pop(target, None)  # a rollback may have marked a version bad
        decided = incident.decision_id if incident.decision_id != before else None
        if decided is None or incident.phase is IncidentPhase.CLEAR:
            return
        report.decisions.append(decided)
        changed = {k: replace(s, decision_id=decided) for k, s in view.series.items()
                   if k[1] == incident.rule and s.phase is Phase.FIRING}
        self.states.update(changed)
        written = {k: s.to_json() for k, s in changed.items()}
        with self.store.transaction():
            self.store.save_rule_states(written, [])
        self._saved(written, [])

    # -- ownership (several replicas on one PostgreSQL) -------------------------------------------

    def _refresh_ownership(self, now: float) -> None:
        if self.owner is None:
            return
        self.owned, gained = self.owner.refresh(list(self.loaded.config.targets), now)
        if gained:
            self._adopt(gained)

    def _adopt(self, targets: set[str]) -> None:
        """Another replica guarded these until now: take over its rule states and versions."""
        held: dict[StateKey, SeriesState] = {}
        for key in [k for t in targets for k in self.states.keys_of_target(t)]:
            held[key] = self.states.pop(key)
            self._persisted.pop(key, None)
            self._unsaved.pop(key, None)
        for key, text in self.store.load_rule_states().items():
            if key[0] in targets:
                # A state held as the store has it (e.g. read at start: a daemon's engine adopts
                # every target on its first tick) is kept, not parsed again: from_json is
                # ≈ 15 µs, to_json of a quiet state 2 µs, and from_json(s.to_json()) == s but for
                # a NaN value (written as null).
                known = held.get(key)
                state = self.states[key] = known if known is not None and known.value == known.value \
                    and known.to_json() == text else SeriesState.from_json(text)
                self._persisted[key] = state.course()
        self.versions.update(self.store.current_versions(targets))  # one read, not one per target
        self._recall_version_changes(targets)

    def _recall_version_changes(self, targets: Iterable[str]) -> None:
        """After a start or a takeover: when each running version replaced another, as the store
        has it (its first sighting). The initial delay and the warm-up of windows count from it,
        so a restart in the middle of them does not end them early. (A version that returns,
        e.g. after a rollback, was first seen long ago: it counts as settled, as it did before.)"""
        for target in targets:
            self.version_changed_at.pop(target, None)
            version = self.versions.get(target)
            if version is None or self.loaded.config.targets[target].version is None:
                continue
            records = self.store.versions(target)
            current = next((r for r in records if r.version == version), None)
            if current is not None and any(r.first_seen < current.first_seen for r in records if r is not current):
                self.version_changed_at[target] = current.first_seen

    def _may_run(self, decision: Decision, now: float) -> bool:
        if decision.target not in self.owned:
            return False
        return self.owner is None or self.store.claim_decision(decision.id, self.owner.replica_id, now)

    def _refresh_sources(self, now: float, report: TickReport) -> None:
        used = {source for lr in self.loaded.rules if lr.target in self.owned for source, _ in self._queries[id(lr.rule)]}
        used |= {t.version.source for n, t in self.loaded.config.targets.items() if t.version and n in self.owned}
        self._deadline = self.clock.monotonic() + self.tick_budget
        for name, error in self.runner.begin_tick(now, used, self._deadline).items():
            if error is not None:
                report.source_errors[name] = str(error)
                log.warning("source %s: %s", name, error)

    def _prefetch(self, now: float) -> None:
        """Ask every source for everything this tick needs at once (concurrently, once each)."""
        requests: list[tuple[str, str, dict[str, str] | None]] = []
        for name, target in self.loaded.config.targets.items():
            if name in self.owned and target.version is not None:
                requests.append((target.version.source, target.version.query, None))
        for lr in self.loaded.rules:
            if lr.target not in self.owned:
                continue
            rendered = self._context(lr.target).rendered  # the cache judging reads too
            params = rendered.params if lr.split_by is None else None  # split: one query for all
            for source, query in self._queries[id(lr.rule)]:
                text = rendered.text(query)
                if isinstance(text, str):
                    requests.append((source, text, params))
        self.runner.prefetch(requests, now, self._deadline)

    # -- rules ----------------------------------------------------------------------------------

    def _fetch(self, source: str, query: str, at: float, params: dict[str, str] | None = None) -> QueryResult | WatchdogError:
        return self.runner.query(source, query, at, params)

    def variables(self, target: str) -> dict[str, str | None]:
        """The target's placeholder values (one dict while they stay the same: do not change it)."""
        return self._context(target).variables

    def _context(self, target: str) -> _TargetContext:
        versions = self._known_versions.get(target)
        context = self._contexts.get(target)
        if versions is not None and context is not None and context.versions is versions \
                and context.key[0] == self.versions.get(target):
            return context  # asked again in the same tick: nothing it depends on changed
        key = (self.versions.get(target), self.previous_version(target))
        if context is None or context.key != key:
            variables = variables_for(target, self.loaded.config.targets[target].variables, *key)
            context = self._contexts[target] = _TargetContext(key, variables, Rendered.of(variables))
        context.versions = self._versions_of(target)
        context.previous_seen_at = self._previous_seen_at(target)
        return context

    def window(self, lr: LoadedRule) -> float:
        """The longest time window any query of the rule reads."""
        values = {k: v or "x" for k, v in self.variables(lr.target).items()}
        windows = [0.0]
        for c in lr.rule.conditions():
            try:
                windows.append(self.sources[c.source or lr.rule.source].window_of(render(c.query, values)))
            except TemplateError:
                continue
        return max(windows)

    def _verdicts(self, lr: LoadedRule, now: float) -> list[Verdict]:
        changed_at = self.version_changed_at.get(lr.target)
        if changed_at is not None:
            window = self.window(lr)
            if window > 0 and now - changed_at < window:
                return [Verdict((), Outcome.WARMING_UP, None,
                                f"window still holds data from before version {self.versions.get(lr.target)}")]
        remembered = self.states.get((lr.target, lr.rule.name, _RULE_LEVEL_KEY))
        fetch = self._fetch if lr.split_by is None else self._router.fetch_for(lr.split_by, self._split_keys[id(lr)])
        context = self._context(lr.target)
        return judge_rule(lr.rule, Situation(fetch, now, context.variables,
                                             remembered.memory if remembered else None,
                                             context.previous_seen_at, context.rendered))

    def _evaluate_rule(self, lr: LoadedRule, now: float, report: TickReport, upserts: dict[StateKey, str],
                       deletes: list[StateKey], fired: dict[str, list[str]]) -> None:
        rule = lr.rule
        verdicts = self._verdicts(lr, now)
        seen: set[StateKey] = set()
        # Evaluations more than two intervals apart (a stopped process, a clock jump) did not
        # observe the breach in between: a pending timer starts again.
        max_gap = 2 * self.loaded.config.interval
        stepped = bool(self._clock_steps)
        states, persisted = self.states, self._persisted
        count_outcome = self.metrics.rules.count_outcome
        for verdict in verdicts:
            key = (lr.target, rule.name, series_key(verdict.labels))
            seen.add(key)
            prev = states.get(key) or _NO_STATE
            state, events = step(prev, verdict, rule, now, max_gap=max_gap, stepped=stepped)
            count_outcome(lr.target, rule.name, verdict.outcome._value_)  # `.value` (an enum property) without its descriptor call
            if events:
                state = self._handle_events(lr, verdict, prev, state, events, now)
                if Event.FIRED in events and rule.action == "rollback":
                    fired.setdefault(lr.target, []).append(rule.name)
            states[key] = state
            written = persisted.get(key)
            if state.phase is Phase.INACTIVE and written is not None and state.course() == written:
                self._unsaved[key] = None  # quiet: its overwritten fields are written later (_flush_some)
            else:
                upserts[key] = state.to_json()
            report.verdicts.append((lr.target, rule.name, verdict, state))
            self._export(lr, verdict.labels, state)
        if states.count_of_rule(lr.target, rule.name) == len(seen):
            return  # no series vanished
        has_data = any(v.outcome not in (Outcome.NO_DATA, Outcome.WARMING_UP) for v in verdicts)
        for key in [k for k in states.keys_of_rule(lr.target, rule.name) if k not in seen]:
            self._vanished(lr, key, has_data, now, upserts, deletes)

    def _vanished(self, lr: LoadedRule, key: StateKey, has_data: bool, now: float,
                  upserts: dict[StateKey, str], deletes: list[StateKey]) -> None:
        """A series that was there before and is not now: its breach is no longer observed."""
        state = self.states[key]
        labels = tuple(sorted(json.loads(key[2]).items()))
        if state.phase is Phase.PENDING:
            state = reset_pending(state)
            self._history(now, lr.target, lr.rule.name, dict(labels), "state", "pending → inactive: series vanished", {})
        if state.no_data_since is not None and has_data:
            state = replace(state, no_data_since=None)
            self._alert_no_data(lr, labels, state, now, resolved=True)
        if state.phase is Phase.INACTIVE and state.no_data_since is None:
            del self.states[key]
            deletes.append(key)
            self.metrics.forget_series(lr.target, lr.rule.name, format_labels(labels))
            return
        self.states[key] = state
        upserts[key] = state.to_json()

    def _export(self, lr: LoadedRule, labels: Labels, state: SeriesState) -> None:
        rules = self.metrics.rules  # `Metrics.set_series` is this call; one frame less per series and tick
        rules.set_series(lr.target, lr.rule.name, shown_labels(labels), state.phase._value_, state.value)
        for bound, threshold in self._thresholds[id(lr.rule)]:
            rules.set_threshold(lr.target, lr.rule.name, bound, threshold)

    # -- events -----------------------------------------------------------------------------------

    def _handle_events(self, lr: LoadedRule, verdict: Verdict, prev: SeriesState, state: SeriesState,
                       events: list[Event], now: float) -> SeriesState:
        rule = lr.rule
        for event in events:
            self._record_event(lr, verdict, prev, state, event, now)
            if event is Event.FIRED:
                self._alert_rule(lr, verdict, state, now, resolved=False)
            elif event is Event.RESOLVED:
                self._alert_rule(lr, verdict, state, now, resolved=True)
            elif event is Event.NO_DATA_STARTED:
                self._alert_no_data(lr, verdict.labels, state, now, resolved=False)
            elif event is Event.NO_DATA_ENDED:
                self._alert_no_data(lr, verdict.labels, state, now, resolved=True)
            elif event is Event.JUDGED_AGAIN:
                self._resolve_inconclusive((lr.target, rule.name, series_key(verdict.labels)),
                                           f"judged again: {verdict.reason}", now)
            elif event is Event.INCONCLUSIVE:
                self.alert(lr.target, Alert(
                    status="firing", kind="inconclusive", dedup_key=self._inconclusive_key(lr, verdict.labels),
                    target=lr.target, rule=rule.name, severity=rule.severity, at=rfc3339(now),
                    summary=f"{lr.target}/{rule.name} has not been able to judge for {rule.max_inconclusive:g}s: {verdict.reason}",
                    labels={**dict(verdict.labels), **rule.labels}, version=self.versions.get(lr.target)), rule.alert)
        return state

    @staticmethod
    def _inconclusive_key(lr: LoadedRule, labels: Labels) -> str:
        return f"{lr.target}/{lr.rule.name}/{series_key(labels)}/inconclusive"

    def _record_event(self, lr: LoadedRule, verdict: Verdict, prev: SeriesState, state: SeriesState,
                      event: Event, now: float) -> None:
        rule = lr.rule
        message = {
            Event.PENDING: f"inactive → pending: {verdict.reason}"
                           + (f" (must hold for {format_duration(rule.for_)})" if rule.for_ else ""),
            Event.FIRED: f"→ firing: {verdict.reason}"
                         + (f", held for {format_duration(round(now - (prev.pending_since or now), 1))}" if rule.for_ else ""),
            Event.RESOLVED: f"firing → inactive: {verdict.reason}",
            Event.RESET: f"pending → inactive: {verdict.reason}",
            Event.NO_DATA_STARTED: f"no data: {verdict.reason}",
            Event.NO_DATA_ENDED: "data is back",
            Event.INCONCLUSIVE: f"still not judged after {rule.max_inconclusive or 0:g}s: {verdict.reason}",
            Event.JUDGED_AGAIN: f"judged again: {verdict.reason}",
            Event.GAP: (f"pending → inactive: {_gap(now, prev.evaluated_at, self._clock_steps)}; the breach must be observed again for `for`"),
        }[event]
        log.info("%s/%s%s %s", lr.target, rule.name, format_labels(verdict.labels) if verdict.labels else "", message)
        self._history(now, lr.target, rule.name, dict(verdict.labels), "no_data" if "NO_DATA" in event.name else "state",
                      message, {"event": event.value, "value": verdict.value, "threshold": rule.threshold(),
                                "outcome": verdict.outcome.value, "from": prev.phase.value, "to": state.phase.value,
                                "samples": verdict.samples, "for": rule.for_, "version": self.versions.get(lr.target),
                                "baseline": verdict.baseline, **(verdict.details or {})})

    # -- versions -----------------------------------------------------------------------------------

    def _observe_version(self, name: str, target: TargetConfig, now: float) -> None:
        if target.version is None:
            return
        result = self.runner.query(target.version.source, target.version.query, now)
        if isinstance(result, WatchdogError):
            log.debug("target %s: version unknown: %s", name, result)
            return
        found = next((s.label(target.version.label) for s in result.samples if s.label(target.version.label)), None)
        found = self.version_gate.admit(name, found, now)  # untrusted: an invalid version is recorded, alerted, ignored
        if found is None:
            return
        if found == self.versions.get(name):
            self.store.observe_version(name, found, now)
            return
        self._version_first_seen(name, target, found, now)

    def _version_first_seen(self, name: str, target: TargetConfig, version: str, now: float) -> None:
        """The one place where a version of a target is first seen running (or seen again
        after another one ran)."""
        assert target.version is not None
        previous = self.versions.get(name)
        with self.store.transaction():
            self.store.observe_version(name, version, now)
            self._history(now, name, None, {}, "version", f"version {version} is running (was {previous or 'unknown'})",
                          {"version": version, "previous": previous})
            self.ledger.discovered(name, target.version.component, version, now)
            self.versions[name] = version
            self._known_versions.pop(name, None)
            if previous is not None:
                self._on_new_version(name, version, now)
                self.rollbacks.new_version(name, version, now)

    def _on_new_version(self, target: str, version: str, now: float) -> None:
        """Evidence gathered under the old version proves nothing about the new one: pending
        timers restart and firing series are re-judged (a new release that is just as bad
        is rolled back again)."""
        self.version_changed_at[target] = now
        for key in self.states.keys_of_target(target):
            state = self.states[key]
            if state.phase is Phase.FIRING:
                self._rejudge(key, state, version, now)
            if state.insufficient_alerted:
                self._resolve_inconclusive(key, f"version {version} is running; judged afresh", now)
            self.states[key] = replace(reset_pending(self.states[key]), insufficient_since=None, insufficient_alerted=False)

    def _resolve_inconclusive(self, key: StateKey, why: str, now: float) -> None:
        lr = self._rule.get((key[0], key[1]))
        if lr is None:
            return
        labels = tuple(sorted(json.loads(key[2]).items()))
        self.alert(lr.target, Alert(
            status="resolved", kind="inconclusive", dedup_key=self._inconclusive_key(lr, labels), target=lr.target,
            rule=lr.rule.name, severity=lr.rule.severity, at=rfc3339(now), summary=f"{lr.target}/{lr.rule.name}: {why}",
            labels={**dict(labels), **lr.rule.labels}, version=self.versions.get(lr.target)), lr.rule.alert)

    def _rejudge(self, key: StateKey, state: SeriesState, version: str, now: float) -> None:
        rule = self._rule.get((key[0], key[1]))
        self.states[key] = replace(state, phase=Phase.INACTIVE, pending_since=None, firing_since=None,
                                   decision_id=None, outcome="warming_up", reason=f"re-judging: version {version} is running")
        self._history(now, key[0], key[1], json.loads(key[2]), "state",
                      f"firing → inactive: version {version} is running; the rule is judged afresh", {"version": version})
        if rule is not None:
            labels = tuple(sorted(json.loads(key[2]).items()))
            self._alert_rule(rule, Verdict(labels, Outcome.WARMING_UP, None, f"version {version} is running; judged afresh"),
                             self.states[key], now, resolved=True)

    def _read_versions(self) -> None:
        """Forget the versions read so far and read the owned targets' afresh, all at once."""
        self._known_versions.clear()
        self._known_versions.update(self.store.versions_of(sorted(self.owned)))

    def _versions_of(self, target: str) -> list[VersionRecord]:
        """The store's versions of `target`, read once per tick (not once per rule)."""
        known = self._known_versions.get(target)
        if known is None:
            known = self._known_versions[target] = self.store.versions(target)
        return known

    def previous_version(self, target: str) -> str | None:
        versions, current = self._versions_of(target), self.versions.get(target)
        memo = self._previous.get(target)  # per rule and tick otherwise; the list is read once per tick
        if memo is None or memo[0] is not versions or memo[1] != current:
            memo = self._previous[target] = (versions, current, previous_good(versions, current))
        return memo[2]

    def _previous_seen_at(self, target: str) -> float | None:
        previous = self.previous_version(target)
        record = next((v for v in self._versions_of(target) if v.version == previous), None) if previous else None
        return record.last_seen if record is not None else None

    def _firing(self, target: str) -> bool:
        rules = self._rollback_rules.get(target, set())
        return any(s.phase is Phase.FIRING for s in self.states.of_target(target, rules).values())

    # -- alerts and history ---------------------------------------------------------------------------

    def alert(self, target: str, alert: Alert, alerters: list[str] | None = None) -> None:
        if self._pending_alerts is not None:
            self._pending_alerts.append((alerters, target, alert))
            return
        self.notifier.notify(alerters if alerters is not None else self.loaded.config.targets[target].alert, alert)

    def _alert_rule(self, lr: LoadedRule, verdict: Verdict, state: SeriesState, now: float, resolved: bool) -> None:
        rule = lr.rule
        verb = "recovered" if resolved else "fired"
        self.alert(lr.target, Alert(
            status="resolved" if resolved else "firing", kind="rule",
            dedup_key=f"{lr.target}/{rule.name}/{series_key(verdict.labels)}", target=lr.target, rule=rule.name,
            severity=rule.severity, summary=f"{lr.target}/{rule.name} {verb}: {verdict.reason}", at=rfc3339(now),
            value=verdict.value, threshold=rule.threshold(), labels={**dict(verdict.labels), **rule.labels},
            decision_id=state.decision_id, version=self.versions.get(lr.target), runbook_url=rule.runbook_url,
            description=rule.description), rule.alert)

    def _alert_no_data(self, lr: LoadedRule, labels: Labels, state: SeriesState, now: float, resolved: bool) -> None:
        rule = lr.rule
        summary = (f"{lr.target}/{rule.name}: data is back" if resolved
                   else f"{lr.target}/{rule.name}: no data ({state.reason}); the rule cannot be judged")
        self.alert(lr.target, Alert(
            status="resolved" if resolved else "firing", kind="no_data",
            dedup_key=f"{lr.target}/{rule.name}/{series_key(labels)}/no_data", target=lr.target, rule=rule.name,
            severity=rule.severity, summary=summary, at=rfc3339(now), threshold=rule.threshold(),
            labels={**dict(labels), **rule.labels}, version=self.versions.get(lr.target),
            runbook_url=rule.runbook_url, description=rule.description), rule.alert)

    def _history(self, now: float, target: str, rule: str | None, labels: dict[str, str], kind: str,
                 message: str, data: dict) -> None:  # type: ignore[type-arg]
        event = HistoryEvent(id=None, at=now, target=target, rule=rule, series=labels, kind=kind, message=message,
                             data=data)
        if self._pending_history is not None:
            self._pending_history.append(event)
        else:
            self.store.append(event)
