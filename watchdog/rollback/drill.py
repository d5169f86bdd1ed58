"""Rollback drills: what would a rollback of TARGET do right now — without doing it.

Builds the same request a firing rule would (the previous version, or the stack plan back to
the newest healthy release), runs the guards, and asks each actuator for its `plan` and for
the version it sees running (`current_version`, a read-only call that also proves the
actuator can reach what it controls). Nothing is written except one history entry, so
drills are on the audit record too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from watchdog.config import plugins
from watchdog.rollback.executor import RollbackRequest, step_context
from watchdog.state.decisions import PlannedStep, actuator_plan
from watchdog.actuators.base import ActionContext
from watchdog.clock import rfc3339
from watchdog.config.loader import LoadedConfig
from watchdog.rollback.guards import Guards, Situation
from watchdog.metrics import DaemonMetrics
from watchdog.redact import redact
from watchdog.state.base import History, HistoryEvent, StateStore
from watchdog.text.versions import previous_good


@dataclass
class DrillStep:
    actuator: str
    plan: str
    component: str | None = None
    from_version: str | None = None
    to_version: str | None = None
    sees: str | None = None
    problem: str = ""


@dataclass
class Drill:
    target: str
    at: str
    version: str | None
    to: str | None
    guard: str
    steps: list[DrillStep] = field(default_factory=list)
    blocked: str = ""
    # Why the drill did not read or plan anything: a guard that defers rollbacks too
    # (version_unknown: what runs is unknown, so a plan from the last valid version may be wrong).
    deferred: str = ""

    @property
    def ready(self) -> bool:
        return not self.blocked and not self.deferred and not any(s.problem for s in self.steps)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "ready": self.ready}


@dataclass
class PreparedDrill:
    """A drill whose request, guards and plan are known (read from the store), its actuator
    reads not yet done: `probe_drill` does those, without the store."""

    drill: Drill
    plan: list[PlannedStep]
    context: ActionContext | None


def run_drill(loaded: LoadedConfig, store: StateStore, target: str, now: float, by: str,
              version_problem: str | None = None) -> Drill:
    """Prepare, probe and record one drill (the CLI's; the daemon does the three apart, the
    actuator reads outside its tick lock). `version_problem`: why the version the target
    reports now is invalid, if it is (the engine knows; the CLI reads it from the history)."""
    prepared = prepare_drill(loaded, store, target, now, by, version_problem)
    return record_drill(store, probe_drill(loaded, prepared), now, by)


def prepare_drill(loaded: LoadedConfig, store: StateStore, target: str, now: float, by: str,
                  version_problem: str | None = None) -> PreparedDrill:
    """The request a firing rule would make and the guards' verdict on it. The guards that defer
    a rollback because what runs is unknown (version_unknown, unless the target's
    `unknown_version: proceed`) defer the drill too: nothing is planned or read."""
    from watchdog.rollback.manual import OperatorError, stack_request

    if target not in loaded.config.targets:
        raise OperatorError(f"unknown target '{target}' (targets: {', '.join(loaded.config.targets)})")
    config = loaded.config.targets[target]
    versions = store.versions(target)
    current = versions[0].version if versions else None
    previous = previous_good(versions, current)
    request = RollbackRequest(target=target, rule="drill", value=None, threshold={}, labels={}, version=current,
                              previous_version=previous, reason=f"rollback drill by {by}", severity="info",
                              plan=actuator_plan(config.rollback))
    drill = Drill(target=target, at=rfc3339(now), version=current, to=previous, guard="")
    if config.components:
        try:
            request = stack_request(loaded, store, request, None)
            drill.to = request.to_version
        except OperatorError as exc:
            drill.blocked = str(exc)
            return PreparedDrill(drill, [], None)
    verdict = Guards(loaded.config, store).check(Situation(target=target, rule=None, now=now, version=current,
                                                             to_version=request.to_version or previous,
                                                             version_changed_at=None, version_problem=version_problem))
    drill.guard = verdict.outcome.value + (f": {verdict.reason}" if verdict.reason else "")
    if verdict.guard == "version_unknown":
        drill.deferred = verdict.reason
        return PreparedDrill(drill, [], None)
    hold = store.holds().get(target)
    if hold is not None:
        drill.guard += f"; held by decision {hold.decision_id} (an automatic rollback would not run)"
    context = ActionContext(decision_id="drill", target=target, rule="drill", action="rollback", value=None,
                            threshold={}, labels={}, version=current, previous_version=previous, fired_at=drill.at,
                            reason=request.reason, extra={"from_version": current or "", "to_version": previous or ""})
    return PreparedDrill(drill, list(request.plan), context)


def probe_drill(loaded: LoadedConfig, prepared: PreparedDrill) -> Drill:
    """Ask each actuator for its plan and the version it sees (may be slow: network, APIs).
    Touches neither the store nor the engine, so it runs outside the daemon's tick lock."""
    if prepared.context is not None:
        for entry in prepared.plan:
            prepared.drill.steps.append(_drill_step(loaded, entry, prepared.context))
    return prepared.drill


def unknown_version(store: StateStore, target: str) -> str | None:
    """Why the target's running version is unknown, as the history tells it (for a drill run
    outside the daemon): the newest invalid version recorded, unless a valid version was seen
    after it."""
    recorded = store.history(target, limit=1, kinds=["version"])
    if not recorded or "invalid_version" not in recorded[0].data:
        return None
    seen = [v.last_seen for v in store.versions(target)]
    if seen and max(seen) > recorded[0].at:
        return None
    return str(recorded[0].data.get("reason") or "an invalid version was reported")


def _drill_step(loaded: LoadedConfig, step: PlannedStep, context: ActionContext) -> DrillStep:
    name = step.actuator
    out = DrillStep(actuator=name, plan="", component=step.component, from_version=step.from_version,
                    to_version=step.to_version or context.previous_version)
    spec = loaded.config.actuators.get(name)
    if spec is None:
        out.problem = f"actuator '{name}' is not configured"
        return out
    try:
        actuator = plugins.create(plugins.ACTUATORS, spec)
    except Exception as exc:  # a plugin refusing its options
        out.problem = redact(f"cannot create actuator: {exc}")
        return out
    scoped = step_context(context, step)
    try:
        out.plan = redact(actuator.plan(scoped))
        out.sees = actuator.current_version(scoped)
    except Exception as exc:  # unreachable API, missing credentials, ...: exactly what a drill is for
        out.problem = redact(f"{type(exc).__name__}: {exc}")
    finally:
        actuator.close()
    return out


class DrillMetrics:
    """Drills on /metrics (`model_watchdog_drill_ready`, `..._drill_last_success_timestamp_seconds`),
    read back from the history: whoever ran them (the CLI, another replica) recorded them there."""

    def __init__(self, store: History, metrics: DaemonMetrics,
                 on_drill: Callable[[HistoryEvent, bool], None] | None = None):
        self._store = store
        self._metrics = metrics
        self._seen: int | None = None
        # Told of each drill read back, and whether it is from before the first call (replayed).
        self._on_drill = on_drill

    def refresh(self) -> None:
        """Export the drills recorded since the last call, oldest first (the newest wins)."""
        replayed = self._seen is None
        events = self._store.history(kinds=["drill"], since_id=self._seen, limit=1000)
        for event in sorted(events, key=lambda e: e.id or 0):
            ready = bool((event.data.get("drill") or {}).get("ready"))
            self._metrics.drill_ready.labels(event.target).set(1 if ready else 0)
            if ready:
                self._metrics.drill_last_success.labels(event.target).set(event.at)
            self._seen = max(self._seen or 0, event.id or 0)
            if self._on_drill is not None:
                self._on_drill(event, replayed)
        if self._seen is None:
            self._seen = 0  # nothing recorded yet: whatever comes next is new


def record_drill(store: History, drill: Drill, now: float, by: str) -> Drill:
    """One history entry: kind `drill`, or `drill_deferred` for a drill a guard deferred (not
    a drill that ran: the schedule, the gauges and the drill alert do not count it)."""
    if drill.deferred:
        store.append(HistoryEvent(None, now, drill.target, None, {}, "drill_deferred",
                                  f"rollback drill by {by} deferred: {drill.deferred}",
                                  {"drill": drill.as_json(), "guard": "version_unknown"}))
        return drill
    outcome = "ready" if drill.ready else f"NOT ready: {drill.blocked or '; '.join(s.problem for s in drill.steps if s.problem)}"
    store.append(HistoryEvent(None, now, drill.target, None, {}, "drill",
                              f"rollback drill by {by}: {outcome}; guards: {drill.guard or '-'}",
                              {"drill": drill.as_json()}))
    return drill
