"""One evaluation tick: fetch → judge → step the state machine → persist → act and alert.

No scheduling, no HTTP, no argv here: `Engine.tick(now)` is handed the time, and everything
it needs is handed to its constructor, so tests drive it with a fake clock.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace

from watchdog.actions import RollbackExecutor, RollbackRequest
from watchdog.alerters.base import Alert
from watchdog.clock import Clock, rfc3339
from watchdog.config.loader import LoadedConfig
from watchdog.durations import format_duration, parse_duration
from watchdog.config.schema import LoadedRule
from watchdog.errors import WatchdogError
from watchdog.guards import Guards
from watchdog.lifecycle import Lifecycle
from watchdog.guards import Situation as GuardSituation
from watchdog.guards import Outcome as GuardOutcome
from watchdog.metrics import DaemonMetrics
from watchdog.notify import Notifier
from watchdog.rules.evaluate import Outcome, Situation, Verdict, judge_rule
from watchdog.rules.templating import TemplateError, bound_parameters, render, variables_for
from watchdog.rules.state import Event, Phase, SeriesState, reset_pending, step
from watchdog.samples import Labels, format_labels
from watchdog.sources.base import QueryResult, Source
from watchdog.sources.runner import RunnerSettings, SourceRunner
from watchdog.ownership import Owner
from watchdog.releases import Ledger
from watchdog.state.base import Decision, HistoryEvent, StateStore
from watchdog.version_gate import VersionGate

log = logging.getLogger("watchdog.engine")

StateKey = tuple[str, str, str]  # (target, rule, series key)


def series_key(labels: Labels) -> str:
    return json.dumps(dict(labels), sort_keys=True, separators=(",", ":"))


@dataclass
class TickReport:
    at: float
    verdicts: list[tuple[str, str, Verdict, SeriesState]] = field(default_factory=list)
    source_errors: dict[str, str] = field(default_factory=dict)
    decisions: list[str] = field(default_factory=list)


class Engine(Lifecycle):
    def __init__(self, loaded: LoadedConfig, store: StateStore, sources: dict[str, Source],
                 executor: RollbackExecutor, notifier: Notifier, metrics: DaemonMetrics, owner: Owner | None = None,
                 clock: Clock | None = None, tick_budget: float | None = None):
        self.loaded = loaded
        self.store = store
        self.sources = sources
        self.executor = executor
        self.notifier = notifier
        self.metrics = metrics
        self.states: dict[StateKey, SeriesState] = {
            k: SeriesState.from_json(v) for k, v in store.load_rule_states().items()}
        self.versions: dict[str, str | None] = {t: store.current_version(t) for t in loaded.config.targets}
        self.version_changed_at: dict[str, float] = {}
        self.version_gate = VersionGate(self._history, self.alert)  # versions are untrusted (watchdog/version_gate.py)
        self.guards = Guards(loaded.config, store)
        # Sources run concurrently, once per query per tick, behind per-source circuit breakers.
        interval = loaded.config.interval
        self.runner = SourceRunner(sources, metrics, clock, stop=executor.stop_event, settings=RunnerSettings(
            # A dead source is skipped for a couple of ticks, not for a minute: recovery must
            # be noticed (and no-data alerts resolved) promptly.
            cooldown=min(60.0, max(5.0, 2 * interval)), query_timeout=max(2.0, 0.8 * interval)))
        # A tick's queries must finish well within the interval, so detection never lags.
        self.tick_budget = tick_budget if tick_budget is not None else max(1.0, 0.8 * loaded.config.interval)
        self.ledger = Ledger(store, loaded.config)
        executor.on_finish = self._decision_finished
        self.owner = owner
        self.owned: set[str] = set(loaded.config.targets) if owner is None else set()
        if owner is not None:
            executor.may_continue = owner.still_owned
        for lr in loaded.rules:  # lets sources size their sample buffers to the rules' windows
            window = self.window(lr)
            for c in lr.rule.conditions():
                if c.compare is not None and c.compare.baseline != "previous_version":
                    sources[c.source or lr.rule.source].retain(parse_duration(c.compare.baseline) + window)

    # -- the tick ---------------------------------------------------------------------------

    def tick(self, now: float) -> TickReport:
        started = time.perf_counter()
        report = TickReport(at=now)
        self._refresh_ownership(now)
        report.decisions.extend(self.executor.resume_unfinished(lambda: now, may_run=lambda d: self._may_run(d, now)))
        self._refresh_sources(now, report)
        self._prefetch(now)
        for name, target in self.loaded.config.targets.items():
            if name in self.owned:
                self._observe_version(name, target, now)
        upserts: dict[StateKey, str] = {}
        deletes: list[StateKey] = []
        pending_rollbacks: list[tuple[StateKey, RollbackRequest]] = []
        for lr in self.loaded.rules:
            if lr.target in self.owned:
                self._evaluate_rule(lr, now, report, upserts, deletes, pending_rollbacks)
        with self.store.transaction():
            self.store.save_rule_states(upserts, deletes)
        for key, request in pending_rollbacks:
            self._rollback(key, request, now, report)
        for target in sorted(self.owned):
            self.ledger.bake(target, now, firing=self._firing(target))
            self._verify(target, now, report)
        self.metrics.evaluations.inc()
        self.metrics.last_evaluation.set(now)
        self.metrics.evaluation_duration.observe(time.perf_counter() - started)
        return report

    # -- ownership (several replicas on one PostgreSQL) -------------------------------------------

    def _refresh_ownership(self, now: float) -> None:
        if self.owner is None:
            return
        self.owned, gained = self.owner.refresh(list(self.loaded.config.targets), now)
        if gained:
            self._adopt(gained)

    def _adopt(self, targets: set[str]) -> None:
        """Another replica guarded these until now: take over its rule states and versions."""
        for key in [k for k in self.states if k[0] in targets]:
            del self.states[key]
        for key, text in self.store.load_rule_states().items():
            if key[0] in targets:
                self.states[key] = SeriesState.from_json(text)
        for target in targets:
            self.versions[target] = self.store.current_version(target)

    def _may_run(self, decision: Decision, now: float) -> bool:
        if decision.target not in self.owned:
            return False
        return self.owner is None or self.store.claim_decision(decision.id, self.owner.replica_id, now)

    def _refresh_sources(self, now: float, report: TickReport) -> None:
        used = {c.source or lr.rule.source for lr in self.loaded.rules if lr.target in self.owned
                for c in lr.rule.conditions()}
        used |= {t.version.source for n, t in self.loaded.config.targets.items() if t.version and n in self.owned}
        self._deadline = time.monotonic() + self.tick_budget
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
            variables = self.variables(lr.target)
            params = bound_parameters(variables)
            for c in lr.rule.conditions():
                try:
                    requests.append((c.source or lr.rule.source, render(c.query, variables), params))
                except TemplateError:
                    continue
        self.runner.prefetch(requests, now, self._deadline)

    # -- rules ----------------------------------------------------------------------------------

    def _fetch(self, source: str, query: str, at: float, params: dict[str, str] | None = None) -> QueryResult | WatchdogError:
        return self.runner.query(source, query, at, params)

    def variables(self, target: str) -> dict[str, str | None]:
        return variables_for(target, self.loaded.config.targets[target].variables,
                             self.versions.get(target), self.previous_version(target))

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
        remembered = self.states.get((lr.target, lr.rule.name, series_key(())))
        return judge_rule(lr.rule, Situation(self._fetch, now, self.variables(lr.target),
                                             remembered.memory if remembered else None,
                                             self._previous_seen_at(lr.target)))

    def _evaluate_rule(self, lr: LoadedRule, now: float, report: TickReport, upserts: dict[StateKey, str],
                       deletes: list[StateKey], rollbacks: list[tuple[StateKey, RollbackRequest]]) -> None:
        rule = lr.rule
        verdicts = self._verdicts(lr, now)
        seen: set[StateKey] = set()
        for verdict in verdicts:
            key = (lr.target, rule.name, series_key(verdict.labels))
            seen.add(key)
            prev = self.states.get(key, SeriesState())
            state, events = step(prev, verdict, rule, now)
            self.metrics.rule_outcomes.labels(lr.target, rule.name, verdict.outcome.value).inc()
            state = self._handle_events(lr, verdict, prev, state, events, now, rollbacks, key)
            self.states[key] = state
            upserts[key] = state.to_json()
            report.verdicts.append((lr.target, rule.name, verdict, state))
            self._export(lr, verdict.labels, state)
        has_data = any(v.outcome not in (Outcome.NO_DATA, Outcome.WARMING_UP) for v in verdicts)
        for key in [k for k in self.states if k[:2] == (lr.target, rule.name) and k not in seen]:
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
        shown = format_labels(labels)
        self.metrics.set_phase(lr.target, lr.rule.name, shown, state.phase.value)
        if state.value is not None:
            self.metrics.rule_value.labels(lr.target, lr.rule.name, shown).set(state.value)

    # -- events -----------------------------------------------------------------------------------

    def _handle_events(self, lr: LoadedRule, verdict: Verdict, prev: SeriesState, state: SeriesState,
                       events: list[Event], now: float, rollbacks: list[tuple[StateKey, RollbackRequest]],
                       key: StateKey) -> SeriesState:
        rule = lr.rule
        for event in events:
            self._record_event(lr, verdict, prev, state, event, now)
            if event is Event.FIRED:
                self._alert_rule(lr, verdict, state, now, resolved=False)
                if rule.action == "rollback":
                    rollbacks.append((key, self._rollback_request(lr, verdict, state)))
            elif event is Event.RESOLVED:
                self._alert_rule(lr, verdict, state, now, resolved=True)
            elif event is Event.NO_DATA_STARTED:
                self._alert_no_data(lr, verdict.labels, state, now, resolved=False)
            elif event is Event.NO_DATA_ENDED:
                self._alert_no_data(lr, verdict.labels, state, now, resolved=True)
            elif event is Event.INCONCLUSIVE:
                self.alert(lr.target, Alert(
                    status="firing", kind="inconclusive", dedup_key=f"{lr.target}/{rule.name}/{series_key(verdict.labels)}/inconclusive",
                    target=lr.target, rule=rule.name, severity=rule.severity, at=rfc3339(now),
                    summary=f"{lr.target}/{rule.name} has not been able to judge for {rule.max_inconclusive:g}s: {verdict.reason}",
                    labels={**dict(verdict.labels), **rule.labels}, version=self.versions.get(lr.target)), rule.alert)
        return state

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
        }[event]
        log.info("%s/%s%s %s", lr.target, rule.name, format_labels(verdict.labels) if verdict.labels else "", message)
        self._history(now, lr.target, rule.name, dict(verdict.labels), "no_data" if "NO_DATA" in event.name else "state",
                      message, {"event": event.value, "value": verdict.value, "threshold": rule.threshold(),
                                "outcome": verdict.outcome.value, "from": prev.phase.value, "to": state.phase.value,
                                "samples": verdict.samples, "for": rule.for_, "version": self.versions.get(lr.target),
                                "baseline": verdict.baseline, **(verdict.details or {})})

    def _rollback_request(self, lr: LoadedRule, verdict: Verdict, state: SeriesState) -> RollbackRequest:
        target = self.loaded.config.targets[lr.target]
        return RollbackRequest(
            target=lr.target, rule=lr.rule.name, value=verdict.value, threshold=lr.rule.threshold(),
            labels=dict(verdict.labels), version=self.versions.get(lr.target),
            previous_version=self.previous_version(lr.target), reason=verdict.reason,
            severity=lr.rule.severity, plan=list(target.rollback))

    def _rollback(self, key: StateKey, request: RollbackRequest, now: float, report: TickReport) -> None:
        hold = self.store.holds().get(request.target)
        if hold is not None:
            message = (f"rollback not repeated: target is held since {rfc3339(hold.since)} "
                       f"(decision {hold.decision_id}); run `model-watchdog resume {request.target}` to lift it")
            self._history(now, request.target, request.rule, request.labels, "decision", message,
                          {"held_by": hold.decision_id, "value": request.value})
            log.warning("%s/%s fired: %s", request.target, request.rule, message)
            return
        rule = next(lr.rule for lr in self.loaded.rules if lr.target == request.target and lr.rule.name == request.rule)
        if self.loaded.config.targets[request.target].components:
            stacked = self._stack(request)
            if isinstance(stacked, str):
                self._not_acting(request, GuardOutcome.BLOCKED, stacked, now)
                return
            request = stacked
        verdict = self.guards.check(GuardSituation(
            target=request.target, rule=rule, now=now, version=request.version,
            to_version=request.to_version or request.previous_version,
            version_changed_at=self.version_changed_at.get(request.target)))
        if verdict.outcome in (GuardOutcome.BLOCKED, GuardOutcome.SHADOW):
            self._not_acting(request, verdict.outcome, verdict.reason, now)
            return
        awaiting = now + self.loaded.config.targets[request.target].approve_timeout \
            if verdict.outcome is GuardOutcome.AWAIT_APPROVAL else None
        decision_id = self.executor.decide(request, now, awaiting_until=awaiting)
        if request.stack is not None and awaiting is None:
            self.store.set_release_state(request.stack["from_release"], "bad")
        self.metrics.target_held.labels(request.target).set(1)
        self.states[key] = replace(self.states[key], decision_id=decision_id)
        with self.store.transaction():
            self.store.save_rule_states({key: self.states[key].to_json()}, [])
        report.decisions.append(decision_id)
        if awaiting is not None:
            self.alert(request.target, Alert(
                status="firing", kind="approval_required", dedup_key=f"{request.target}/approval/{decision_id}",
                target=request.target, rule=request.rule, severity=request.severity,
                summary=(f"{request.target}/{request.rule}: rollback awaits approval until {rfc3339(awaiting)}: "
                         f"{request.reason}. Run `model-watchdog approve {decision_id}` or `reject {decision_id}`"),
                at=rfc3339(now), value=request.value, threshold=request.threshold, labels=request.labels,
                decision_id=decision_id, version=request.version))
            return
        self.executor.execute(decision_id, lambda: now)

    def _not_acting(self, request: RollbackRequest, outcome: GuardOutcome, reason: str, now: float) -> None:
        kind = "shadow" if outcome is GuardOutcome.SHADOW else "blocked"
        message = f"{reason}: {request.reason}" if kind == "shadow" else f"rollback blocked: {reason}"
        self._history(now, request.target, request.rule, request.labels, "decision", message,
                      {"guard": kind, "value": request.value, "threshold": request.threshold,
                       "version": request.version, "previous_version": request.previous_version})
        log.warning("%s/%s fired: %s", request.target, request.rule, message)
        if kind == "blocked":
            self.alert(request.target, Alert(
                status="firing", kind="rollback_blocked", dedup_key=f"{request.target}/{request.rule}/blocked/{int(now)}",
                target=request.target, rule=request.rule, severity="critical",
                summary=f"{request.target}/{request.rule} fired but no automatic rollback: {reason}",
                at=rfc3339(now), value=request.value, threshold=request.threshold, labels=request.labels,
                version=request.version))

    # -- alerts and history ---------------------------------------------------------------------------

    def alert(self, target: str, alert: Alert, alerters: list[str] | None = None) -> None:
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
        self.store.append(HistoryEvent(id=None, at=now, target=target, rule=rule, series=labels,
                                       kind=kind, message=message, data=data))
