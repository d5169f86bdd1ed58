"""Between the engine's tick and the incident machine: which signals a target's incident
gets on a tick, and what a decision asks the actuators for.

Every tick, for each target this replica guards: the incident's deadlines first (approval,
verification window), then either `RuleFiring` — while any rollback rule of the target fires,
with what the guards say *now* — or `RuleRecovered`. A new version running and a finished
decision are signalled when they happen.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from typing import Callable

from watchdog.clock import StepBack
from watchdog.rollback.executor import RollbackExecutor, RollbackRequest, with_stack
from watchdog.state.decisions import actuator_plan
from watchdog.config.loader import LoadedConfig
from watchdog.config.schema import LoadedRule
from watchdog.rollback.guards import Guards, Outcome, Situation
from watchdog.rollback.releases import Ledger
from watchdog.rollback.desk import Desk
from watchdog.rollback.incident import (
    STICKY_GUARDS, ClockStepped, DecisionFinished, GuardVerdict, Incident, NewVersion, Phase, RuleFiring, RuleRecovered, advance,
    due,
)
from watchdog.rules.state import Phase as RulePhase
from watchdog.rules.state import SeriesState
from watchdog.state.base import Decision, StateStore

StateKey = tuple[str, str, str]


@dataclass(frozen=True)
class TargetView:
    """What the tick knows about one target: its version and its rollback rules' series."""

    target: str
    version: str | None
    previous_version: str | None
    version_changed_at: float | None
    series: dict[StateKey, SeriesState]  # the target's rollback rules' series
    newly_fired: tuple[str, ...]  # rollback rules that became firing on this tick
    version_problem: str | None = None  # the target reports an invalid version now (watchdog.rollback.version_gate)


class Rollbacks:
    def __init__(self, loaded: LoadedConfig, store: StateStore, executor: RollbackExecutor, desk: Desk,
                 ledger: Ledger, new_id: Callable[[], str] = lambda: uuid.uuid4().hex, steps: StepBack | None = None):
        self.loaded = loaded
        self.store = store
        self.executor = executor
        self.desk = desk
        self.ledger = ledger
        self.guards = Guards(loaded.config, store, steps)  # steps: the daemon's (watchdog.clock.StepBack)
        self.new_id = new_id
        executor.on_finish = self.decision_finished
        self._rollback_rules: dict[str, dict[str, LoadedRule]] = {}  # by target, in rule order
        for lr in loaded.rules:
            if lr.rule.action == "rollback":
                self._rollback_rules.setdefault(lr.target, {})[lr.rule.name] = lr
        self._awaiting: dict[str, str | None] = {}  # target → decision whose recovery is awaited
        self._forward = 0.0  # how far this tick's steps forward of the wall clock went (observe_clock)
        self._seen: set[str] = set()

    # -- signals ------------------------------------------------------------------------------

    def tick(self, view: TargetView, now: float, incident: Incident | None = None) -> Incident:
        """`incident`: the target's, when the caller just loaded it (one read less per target)."""
        incident = self._tick(view, now, incident)
        self._watch_recovery(view, incident, now)
        return incident

    def at_rest(self, target: str, now: float, version: str | None, incident: Incident | None = None) -> bool:
        """Whether a tick at `now` on which no rollback rule of `target` fires or is pending
        would change nothing here: no deadline of its incident passed, no recovery awaited,
        and the incident stays as it is, healthy or not (the backtest skips such ticks).
        `incident`: the target's, when the caller knows it is current."""
        incident = incident or self.desk.load(target)
        if due(incident, now) or target not in self._awaiting or self._awaiting[target] is not None:
            return False
        settings = self.desk.settings(target)
        return incident == Incident(target, Phase.CLEAR, since=incident.since) or all(
            advance(incident, RuleRecovered(healthy=h, version=version), now, settings) == (incident, [])
            for h in (True, False))

    def _recovered(self, target: str) -> set[object]:
        """The decisions of `target` whose `recovered_at` mark the history has (its latest ones)."""
        return {e.data.get("decision_id") for e in self.store.history(target, limit=50, kinds=["timeline"])
                if e.data.get("mark") == "recovered_at"}

    def _watch_recovery(self, view: TargetView, incident: Incident, now: float) -> None:
        """Mark `recovered_at` on the target's last acted-on decision once every rollback rule
        of the target is inactive again and judged within its threshold (not firing, not
        pending, not merely warming up)."""
        target = view.target
        if incident.decision_id and incident.decision_id not in self._seen:
            self._seen.add(incident.decision_id)  # (after a start: one marked before it is not marked again)
            self._awaiting[target] = None if incident.decision_id in self._recovered(target) else incident.decision_id
        if target not in self._awaiting:  # after a start: the newest decision not yet recovered
            newest = self.store.decisions(target=target, limit=1)
            self._awaiting[target] = newest[0].id if newest and newest[0].id not in self._recovered(target) else None
        waiting = self._awaiting[target]
        if waiting is None or not all(s.phase is RulePhase.INACTIVE and s.outcome == "ok" for s in view.series.values()):
            return  # still breaching, pending, or not judged yet (warming up on the version rolled back to)
        decision = self.store.get_decision(waiting)
        if decision is not None and decision.status in ("pending", "running"):
            return  # not acted on yet
        self._awaiting[target] = None
        if decision is not None and decision.status != "skipped" and decision.context.timed:
            with self.store.transaction():
                self.desk.mark(target, decision.rule, decision.id, "recovered_at", now)

    def observe_clock(self, taken: tuple[float, ...]) -> None:
        """The steps of the wall clock this tick took (`StepBack.observe`, once per tick, at the
        start of Engine.tick): a step back is kept in the store (Guards.keep_step); a step
        forward moves the incidents' phases on this tick (`_tick`)."""
        if taken:
            self.guards.keep_step()
        self._forward = sum(step for step in taken if step > 0)

    def _tick(self, view: TargetView, now: float, incident: Incident | None = None) -> Incident:
        incident = incident if incident is not None else self.desk.load(view.target)
        steps = self.guards.steps
        if incident.since is not None and incident.since > now + steps.tolerance:
            # The clock stepped back: the phase and its deadline move with it (docs/operations.md)
            incident = self.desk.send(view.target, ClockStepped(steps.seen(incident.since, now)), now)
        elif self._forward and incident.since is not None and incident.until is not None:
            # ... and forward: the phase began on a tick before the step, on the old clock, and
            # its deadline lies no nearer than it did before the step
            incident = self.desk.send(view.target, ClockStepped(min(incident.since + self._forward, now), forward=True), now)
        for signal in due(incident, now):
            incident = self.desk.send(view.target, signal, now)
        firing = self._firing(view, incident)
        if firing is None and incident == Incident(view.target, Phase.CLEAR, since=incident.since):
            return incident  # nothing fires, nothing pending: no need to take the incident's lock
        if firing is None:
            healthy = self._healthy(view, incident.rule)
            return self.desk.send(view.target, RuleRecovered(healthy=healthy, version=view.version), now)
        (key, state), lr = firing
        asks = incident.phase is Phase.CLEAR or (incident.phase is Phase.BLOCKED and incident.guard not in STICKY_GUARDS)
        if not asks:
            return self.desk.send(view.target, RuleFiring(lr.rule.name, None, version=view.version,
                                                          newly_fired=view.newly_fired), now)
        request: RollbackRequest | str = replace(self.request(lr, key, state, view), depth=incident.depth)
        if self.loaded.config.targets[view.target].components:
            request = stack(self.ledger, request)  # type: ignore[arg-type]
        if isinstance(request, str):
            return self.desk.send(view.target, RuleFiring(lr.rule.name, GuardVerdict("blocked", "no_plan", request),
                                                          version=view.version, newly_fired=view.newly_fired,
                                                          summary=state.reason), now)
        verdict = self._guards(lr, request, view, now)
        return self.desk.send(view.target, RuleFiring(
            lr.rule.name, verdict, request, version=view.version, to_version=request.to_version or request.previous_version,
            newly_fired=view.newly_fired, summary=state.reason, decision_id=self.new_id()), now)

    def new_version(self, target: str, version: str, now: float) -> Incident:
        return self.desk.send(target, NewVersion(version), now)

    def decision_finished(self, decision: Decision, status: str, now: float, message: str) -> None:
        """Inside the transaction that finishes a decision: the release ledger and the incident."""
        to_release = decision.context.stack.to_release if decision.context.stack is not None else None
        if status == "succeeded" and to_release is not None:
            to = next((r for r in self.store.releases(decision.target, limit=200) if r.id == to_release), None)
            if to is not None:
                self.ledger.record(decision.target, to.components, now, f"rolled back to #{to.id} by decision {decision.id}",
                                   "rollback", state="healthy")
        if decision.target in self.loaded.config.targets:
            self.desk.send(decision.target, DecisionFinished(decision.id, status, message), now)

    # -- what the signals carry -----------------------------------------------------------------

    def _rules(self, target: str) -> dict[str, LoadedRule]:
        return self._rollback_rules.get(target, {})

    def _firing(self, view: TargetView, incident: Incident) -> tuple[tuple[StateKey, SeriesState], LoadedRule] | None:
        """The firing series to act on: the incident's rule if it still fires, else the first in rule order."""
        rules = self._rules(view.target)
        firing = [(k, s) for k, s in view.series.items() if s.phase is RulePhase.FIRING and k[1] in rules]
        if not firing:
            return None
        order = list(rules)
        firing.sort(key=lambda item: (item[0][1] != incident.rule, order.index(item[0][1]), item[0][2]))
        return firing[0], rules[firing[0][0][1]]

    def _healthy(self, view: TargetView, rule: str | None) -> bool:
        """Recovered and judged healthy — or no longer judgeable against its baseline (after
        going back, the version rolled back from is the bad one)."""
        series = [s for k, s in view.series.items() if k[1] == rule]
        return bool(series) and all(s.phase is RulePhase.INACTIVE and s.outcome in ("ok", "insufficient") for s in series)

    def request(self, lr: LoadedRule, key: StateKey, state: SeriesState, view: TargetView) -> RollbackRequest:
        target = self.loaded.config.targets[lr.target]
        return RollbackRequest(
            target=lr.target, rule=lr.rule.name, value=state.value, threshold=lr.rule.threshold(),
            labels=json.loads(key[2]), version=view.version, previous_version=view.previous_version,
            reason=state.reason, severity=lr.rule.severity, plan=actuator_plan(target.rollback),
            breach_started_at=state.pending_since, pending_at=state.pending_since,
            fired_at=state.firing_since)

    def _guards(self, lr: LoadedRule, request: RollbackRequest, view: TargetView, now: float) -> GuardVerdict:
        result = self.guards.check(Situation(
            target=lr.target, rule=lr.rule, now=now, version=request.version,
            to_version=request.to_version or request.previous_version, version_changed_at=view.version_changed_at,
            version_problem=view.version_problem))
        if result.outcome is Outcome.ACT or result.outcome is Outcome.AWAIT_APPROVAL:
            return GuardVerdict(result.outcome.value)
        return GuardVerdict(result.outcome.value, result.guard, result.reason, result.until)


def stack(ledger: Ledger, request: RollbackRequest, to_release: int | None = None) -> RollbackRequest | str:
    """For a target with components: the plan back to the newest healthy release."""
    plan = ledger.plan(request.target, to_release)
    if isinstance(plan, str):
        return plan
    return with_stack(request, plan)
