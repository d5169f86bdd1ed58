"""Rollback decisions: recorded first, then carried out step by step.

A decision is committed to the state store — together with the bad mark on the version (the
target's hold is the incident's, see watchdog.rollback) — before any actuator runs. Each step's start and outcome are recorded,
so after a crash `resume_unfinished()` re-sends exactly the steps whose outcome is unknown,
with the same decision id (the actuators' idempotency key), and never the ones that succeeded.
"""

from __future__ import annotations

import logging
import threading
import uuid
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Callable

from watchdog.actuators.base import ActionContext, Actuator
from watchdog.clock import rfc3339
from watchdog.errors import WatchdogError
from watchdog.metrics import DaemonMetrics
from watchdog.redact import redact
from watchdog.rollback.releases import StackPlan
from watchdog.state.base import Decision, HistoryEvent, StateStore, Versions
from watchdog.state.decisions import DecisionContext, PlannedStep, StackMove

log = logging.getLogger("watchdog.rollback.executor")


@dataclass(frozen=True)
class RollbackRequest:
    target: str
    rule: str
    value: float | None
    threshold: dict[str, float]
    labels: dict[str, str]
    version: str | None
    previous_version: str | None
    reason: str
    severity: str
    plan: tuple[PlannedStep, ...]  # actuators in order, or stack steps (watchdog.rollback.plans)
    to_version: str | None = None  # an explicit target version (manual `--to`); else previous_version
    requested_by: str | None = None  # the operator of a manual rollback; None when a rule fired
    stack: StackMove | None = None  # stack rollbacks: which release to which
    depth: int = 1  # 2 when a rollback that did not restore health is followed by another (max_depth)
    breach_started_at: float | None = None  # the first breaching evaluation (time to detect / to recover)
    pending_at: float | None = None  # the rule went pending (the series' pending_since)
    fired_at: float | None = None  # the rule fired (time to detect ends, time to act begins)


AWAITING = "awaiting_approval"


def record_decision(store: StateStore, request: RollbackRequest, now: float, *, awaiting_until: float | None = None,
                    decision_id: str | None = None) -> str:
    """Commit a decision and the bad mark on the running version, together.

    With `awaiting_until`, the decision waits (status pending) for a human to approve it and
    the version is marked bad only once approved."""
    decision_id = decision_id or uuid.uuid4().hex
    to_version = request.to_version or request.previous_version
    context = ActionContext(
        decision_id=decision_id, target=request.target, rule=request.rule, action="rollback",
        value=request.value, threshold=request.threshold, labels=request.labels,
        version=request.version, previous_version=request.previous_version,
        fired_at=rfc3339(now), reason=request.reason,
        extra={"from_version": request.version or "", "to_version": to_version or ""})
    details = DecisionContext(
        action=context, plan=request.plan, severity=request.severity, requested_by=request.requested_by,
        awaiting_approval=awaiting_until is not None, approve_by=awaiting_until, depth=request.depth,
        breach_started_at=request.breach_started_at, pending_at=request.pending_at, fired_at=request.fired_at,
        stack=request.stack)
    decision = Decision(id=decision_id, target=request.target, rule=request.rule, action="rollback",
                        created_at=now, context=details, status="pending" if awaiting_until else "running")
    who = f" by {request.requested_by}" if request.requested_by else ""
    with store.transaction():
        store.create_decision(decision)
        if awaiting_until is None:
            mark_bad(store, request.target, request.version, f"{request.rule}: {request.reason}")
        message = (f"rollback awaiting approval until {rfc3339(awaiting_until)}: {request.reason}" if awaiting_until
                   else f"rollback decided{who}: {request.reason}; plan: {' → '.join(s.describe() for s in request.plan)}")
        store.append(HistoryEvent(id=None, at=now, target=request.target, rule=request.rule, series=request.labels,
                                  kind="decision", message=message,
                                  data={"decision_id": decision_id, "value": request.value, "threshold": request.threshold,
                                        "version": request.version, "previous_version": request.previous_version,
                                        "to_version": to_version, "plan": [s.to_json() for s in request.plan],
                                        "requested_by": request.requested_by}))
    return decision_id


def mark_bad(store: Versions, target: str, version: str | None, reason: str) -> None:
    if version and any(v.version == version for v in store.versions(target)):
        store.mark_bad(target, version, reason)


class RollbackExecutor:
    def __init__(self, store: StateStore, actuators: dict[str, Actuator], metrics: DaemonMetrics,
                 stop: threading.Event):
        self._store = store
        self._actuators = actuators
        self._metrics = metrics
        self._stop = stop
        self.stop_event = stop  # shutdown: cut retries short (shared with the source runner)
        # Whether this replica may still act on a target (ownership can be lost mid-plan).
        self.may_continue: Callable[[str], bool] = lambda target: True
        # Called inside the transaction that finishes a decision (status, time, what happened):
        # the release ledger and the target's incident learn of it there.
        self.on_finish: Callable[[Decision, str, float, str], None] = lambda decision, status, now, message: None
        # Wraps each step (decision id, index): the daemon's process journal (watchdog.state.processes).
        self.step_scope: Callable[[str, int], AbstractContextManager[object]] = lambda decision_id, index: nullcontext()

    def decide(self, request: RollbackRequest, now: float, awaiting_until: float | None = None) -> str:
        return record_decision(self._store, request, now, awaiting_until=awaiting_until)

    def execute(self, decision_id: str, clock: Callable[[], float]) -> str:
        """Run the decision's remaining steps in order; returns the final status."""
        decision = self._store.get_decision(decision_id)
        if decision is None:
            raise WatchdogError(f"decision {decision_id} not found in the state store")
        context = _context_of(decision)
        done = {s.index for s in self._store.steps(decision_id) if s.status in ("succeeded", "skipped")}
        steps = decision.context.plan
        log.debug("rollback %s of %s: carrying out %d of %d steps", decision.id, decision.target,
                  len(steps) - len(done), len(steps))
        for index, step in enumerate(steps):
            if index in done:
                continue
            if not self.may_continue(decision.target):
                log.warning("rollback %s paused before step %d: this replica no longer owns %s; the new owner resumes it",
                            decision.id, index + 1, decision.target)
                return "running"
            with self.step_scope(decision.id, index):  # hook: e.g. ends a process group a killed daemon left
                ran = self._run_step(decision, step_context(context, step), index, step, clock)
            if not ran:
                return self._store.get_decision(decision_id).status  # type: ignore[union-attr]
        shown = " → ".join(step.describe() for step in steps)
        self._finish(decision, context, "succeeded", clock(), f"rollback completed: {shown}")
        return "succeeded"

    def _run_step(self, decision: Decision, context: ActionContext, index: int, step: PlannedStep,
                  clock: Callable[[], float]) -> bool:
        name = step.actuator
        actuator = self._actuators.get(name)
        self._store.start_step(decision.id, index, name, clock())
        try:
            if actuator is None:
                raise WatchdogError(f"actuator '{name}' is no longer configured")
            skip = _compare_and_set(actuator, context)
            if skip:
                self._store.finish_step(decision.id, index, "skipped", clock(), skip)
                self._history(clock(), decision.target, decision.rule, context.labels, "step",
                              f"step {index + 1} ({step.describe()}) skipped: {skip}",
                              {"decision_id": decision.id, "actuator": name, "index": index, **step.versions()})
                return True
            message = actuator.apply(context, self._stop)
            verified = actuator.verify(context, self._stop)
            message = f"{message}; verified: {verified}"
        except Exception as exc:  # an actuator plugin's bug counts as a failed step
            text = redact(str(exc) if isinstance(exc, WatchdogError) else f"{type(exc).__name__}: {exc}")
            if self._stop.is_set():
                # Outcome unknown (shutdown mid-step): leave it to be re-sent on restart.
                log.warning("rollback %s step %s interrupted by shutdown: %s", decision.id, name, text)
                return False
            self._store.finish_step(decision.id, index, "failed", clock(), text)
            self._metrics.actions.labels(decision.target, name, "failed").inc()
            restored = self._restore(decision, context, step, actuator, clock) if step.on_failure == "restore" else ""
            self._finish(decision, context, "failed", clock(),
                         f"rollback step {index + 1} ({step.describe()}) failed: {text}{restored}")
            return False
        self._store.finish_step(decision.id, index, "succeeded", clock(), redact(message))
        self._metrics.actions.labels(decision.target, name, "succeeded").inc()
        self._history(clock(), decision.target, decision.rule, context.labels, "step",
                      f"step {index + 1} ({step.describe()}) succeeded: {redact(message)}",
                      {"decision_id": decision.id, "actuator": name, "index": index, **step.versions()})
        return True

    def _restore(self, decision: Decision, context: ActionContext, step: PlannedStep, actuator: Actuator | None,
                 clock: Callable[[], float]) -> str:
        """Compensation (`on_failure: restore`): put the component back where it was."""
        if actuator is None or not step.from_version:
            return "; nothing to restore"
        back = replace(context, extra={**context.extra, "from_version": step.to_version or "", "to_version": step.from_version})
        try:
            actuator.apply(back, self._stop)
            actuator.verify(back, self._stop)
        except Exception as exc:  # report, never mask the original failure
            outcome = f"; restoring {step.component} to {step.from_version} failed too: {redact(str(exc))}"
        else:
            outcome = f"; {step.component} restored to {step.from_version}"
        self._history(clock(), decision.target, decision.rule, context.labels, "step", outcome.lstrip("; "),
                      {"decision_id": decision.id, "component": step.component})
        return outcome

    def _finish(self, decision: Decision, context: ActionContext, status: str, now: float, message: str) -> None:
        components = self._component_versions(decision)
        if components:
            message += "; components now: " + ", ".join(f"{c}={v}" for c, v in components.items())
        with self._store.transaction():
            self._store.set_decision_status(decision.id, status, finished_at=now)
            self._history(now, decision.target, decision.rule, context.labels, "decision", message,
                          {"decision_id": decision.id, "status": status, "components": components or None})
            self.on_finish(decision, status, now, message)
        # Where the actuators finish: the decision's outcome, and time to act when it succeeded.
        self._metrics.decisions.labels(decision.target, status).inc()
        if status == "succeeded":  # from the rule firing to the last step done (watchdog.rollback.timeline)
            fired = decision.context.fired_at or decision.created_at
            self._metrics.time_to_act.labels(decision.target).observe(max(0.0, now - fired))
        log.log(logging.INFO if status == "succeeded" else logging.ERROR, "%s: %s", decision.target, message)

    def _component_versions(self, decision: Decision) -> dict[str, str]:
        """Which version each component of a stack rollback is at, from the recorded steps."""
        steps = decision.context.plan
        if not any(s.component is not None for s in steps):
            return {}
        outcome = {s.index: s for s in self._store.steps(decision.id)}
        stack = decision.context.stack
        versions = dict(stack.from_components if stack is not None else {})
        for index, step in enumerate(steps):
            recorded = outcome.get(index)
            if step.component is None:
                continue
            if recorded is not None and recorded.status in ("succeeded", "skipped"):
                versions[step.component] = step.to_version  # type: ignore[assignment]
            else:
                versions.setdefault(step.component, step.from_version or "unknown")
        return dict(sorted(versions.items()))

    def resume_unfinished(self, clock: Callable[[], float],
                          may_run: Callable[[Decision], bool] = lambda d: True) -> list[str]:
        """Carry out decisions left running (a crash, an approval, a manual rollback).
        Called at the start of every tick; `may_run` says whether this replica owns (and has
        claimed) a decision. Decisions awaiting approval wait (their incident expires them)."""
        resumed = []
        for decision in self._store.unfinished_decisions():
            if self._stop.is_set():
                break
            if not may_run(decision):
                continue
            if decision.status == "pending":
                continue
            self._history(clock(), decision.target, decision.rule, {}, "decision",
                          f"carrying out rollback {decision.id}", {"decision_id": decision.id})
            self.execute(decision.id, clock)
            resumed.append(decision.id)
        return resumed

    def _history(self, now: float, target: str, rule: str | None, labels: dict[str, str], kind: str,
                 message: str, data: dict) -> None:  # type: ignore[type-arg]
        self._store.append(HistoryEvent(id=None, at=now, target=target, rule=rule, series=labels,
                                        kind=kind, message=message, data=data))


def step_context(context: ActionContext, step: PlannedStep) -> ActionContext:
    if step.component is None:
        return context
    return replace(context, extra={**context.extra, "component": step.component,
                                   "from_version": step.from_version or "", "to_version": step.to_version or ""})


def with_stack(request: RollbackRequest, plan: StackPlan) -> RollbackRequest:
    """A request for a target with components: the plan's steps, from its release to the other."""
    return replace(request, plan=tuple(PlannedStep(s.actuator, s.component, s.from_version, s.to_version, s.on_failure)
                                       for s in plan.steps),
                   to_version=f"release #{plan.to.id}",
                   stack=StackMove(plan.current.id, plan.to.id, dict(plan.current.components), dict(plan.to.components)))


def _compare_and_set(actuator: Actuator, context: ActionContext) -> str:
    """Why not to write (the component already changed under us), or "" to go ahead."""
    current = actuator.current_version(context)
    to_version, from_version = context.extra.get("to_version"), context.extra.get("from_version")
    if current is None:
        return ""
    if to_version and current == to_version:
        return f"already runs {to_version}"
    if from_version and current != from_version:
        return (f"runs {current}, not {from_version} as when the decision was taken: "
                "someone else changed it; not overwriting")
    return ""


def _context_of(decision: Decision) -> ActionContext:
    if decision.context.action is None:
        raise WatchdogError(f"decision {decision.id} has no action context in the state store")
    return decision.context.action
