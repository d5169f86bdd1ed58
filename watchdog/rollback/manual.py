"""What a human can do to the watchdog: pause, resume, approve, reject, roll back by hand.

Each function writes to the state store (so every replica and a running daemon see it at
their next tick) and records who did what and why in the history. The CLI and the HTTP API
both call these; neither has logic of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from watchdog.rollback.executor import RollbackRequest, record_decision, with_stack
from watchdog.state.decisions import actuator_plan
from watchdog.clock import rfc3339
from watchdog.config.loader import LoadedConfig
from watchdog.errors import WatchdogError
from watchdog.rollback.guards import Guards, Outcome, Situation
from watchdog.runtime.notify import enqueue
from watchdog.rollback.pauses import ALL, Pause, clear_pause, set_pause
from watchdog.rollback.desk import Desk
from watchdog.rollback.incident import Approved, ManualRollback, Paused, Rejected, Resumed
from watchdog.state.base import History, HistoryEvent, Journal, StateStore
from watchdog.text.versions import previous_good, shown, version_problem


class OperatorError(WatchdogError):
    exit_code = 2


@dataclass(frozen=True)
class Done:
    message: str
    decision_id: str | None = None


def _record(store: History, now: float, target: str, kind: str, message: str, data: dict) -> None:  # type: ignore[type-arg]
    store.append(HistoryEvent(None, now, target, None, {}, kind, message, data))


def desk(loaded: LoadedConfig, store: StateStore, now: float) -> Desk:
    """The incidents' desk of an operator command: its alerts wait in the store's queue for
    the running daemon to deliver them."""
    return Desk(loaded.config, store, lambda target, alert: enqueue(store, loaded.config.targets[target].alert, alert, now))


def _valid_version(store: StateStore, target: str, what: str, version: str, by: str, now: float, origin: str) -> None:
    """Versions are untrusted (watchdog/text/versions.py): an invalid one is refused, and the
    attempt is recorded in the history."""
    why = version_problem(version)
    if why is None:
        return
    _record(store, now, target, "version", f"invalid version {shown(version)} refused ({what}, {origin}, by {by}): {why}",
            {"invalid_version": shown(version), "reason": why, "origin": origin, "operator": by})
    raise OperatorError(f"{what} {shown(version)} is not a valid version: {why}")


def _known(loaded: LoadedConfig, target: str) -> None:
    if target != ALL and target not in loaded.config.targets:
        raise OperatorError(f"unknown target '{target}' (targets: {', '.join(loaded.config.targets)})")


def pause(loaded: LoadedConfig, store: StateStore, target: str, by: str, reason: str, now: float,
          duration: float | None = None) -> Done:
    _known(loaded, target)
    if not reason:
        raise OperatorError("a pause needs --reason: the next person on call will want to know why")
    until = now + duration if duration else None
    with store.transaction():
        set_pause(store, Pause(target=target, by=by, reason=reason, since=now, until=until))
        scope = "all targets" if target == ALL else target
        message = f"{scope} paused by {by}" + (f" until {rfc3339(until)}" if until else "") + f": {reason}"
        _record(store, now, target, "pause", message, {"operator": by, "until": until})
        for name in (loaded.config.targets if target == ALL else [target]):
            desk(loaded, store, now).send(name, Paused(by, reason), now)
    return Done(message)


def resume(loaded: LoadedConfig, store: StateStore, target: str, by: str, reason: str, now: float) -> Done:
    """Lift a pause and a hold: automatic actions may happen again."""
    _known(loaded, target)
    with store.transaction():
        pause_ = clear_pause(store, target)
        hold = store.holds().get(target) if target != ALL else None
        if target != ALL:
            desk(loaded, store, now).send(target, Resumed(by, reason), now)
        done = []
        if pause_ is not None:
            done.append(f"pause lifted (paused by {pause_.by} since {rfc3339(pause_.since)})")
        if hold is not None:
            done.append(f"hold lifted (held since {rfc3339(hold.since)} by decision {hold.decision_id})")
        if not done:
            return Done(f"{target} is neither paused nor held; nothing to do")
        message = f"{target}: {' and '.join(done)} by {by}" + (f": {reason}" if reason else "")
        _record(store, now, target, "resume", message,
                {"operator": by, "decision_id": hold.decision_id if hold else None})
    return Done(message)


def approve(loaded: LoadedConfig, store: StateStore, decision_id: str, by: str, now: float) -> Done:
    decision = _awaiting(store, decision_id)
    with store.transaction():
        desk(loaded, store, now).send(decision.target, Approved(decision_id, by), now)
        if store.get_decision(decision_id).status != "running":  # type: ignore[union-attr]
            raise OperatorError(f"decision {decision_id} is no longer the one {decision.target} awaits "
                                "(it expired, or a new version made it moot)")
    return Done(f"rollback {decision_id} approved by {by}; it runs at the next evaluation", decision_id)


def reject(loaded: LoadedConfig, store: StateStore, decision_id: str, by: str, reason: str, now: float) -> Done:
    decision = _awaiting(store, decision_id)
    with store.transaction():
        desk(loaded, store, now).send(decision.target, Rejected(decision_id, by, reason), now)
        if store.get_decision(decision_id).status == "pending":  # type: ignore[union-attr]
            store.set_decision_status(decision_id, "skipped", finished_at=now)  # an incident that lost track of it
    return Done(f"rollback {decision_id} rejected by {by}" + (f": {reason}" if reason else ""), decision_id)


def stack_request(loaded: LoadedConfig, store: StateStore, request: RollbackRequest,
                   to_version: str | None) -> RollbackRequest:
    from watchdog.rollback.releases import Ledger

    wanted = None
    if to_version:
        try:
            wanted = int(to_version.lstrip("#"))
        except ValueError:
            raise OperatorError(f"--to for a target with components is a release number (see `releases`), got {to_version!r}") from None
    plan = Ledger(store, loaded.config).plan(request.target, wanted)
    if isinstance(plan, str):
        raise OperatorError(f"not rolling back {request.target}: {plan}")
    return with_stack(request, plan)


def _awaiting(store: Journal, decision_id: str):  # type: ignore[no-untyped-def]
    decision = store.get_decision(decision_id)
    if decision is None:
        raise OperatorError(f"no decision {decision_id} (see `model-watchdog status` for pending approvals)")
    if decision.status != "pending" or not decision.context.awaiting_approval:
        raise OperatorError(f"decision {decision_id} is {decision.status}, not awaiting approval")
    return decision


def manual_rollback(loaded: LoadedConfig, store: StateStore, target: str, by: str, reason: str, now: float,
                    to_version: str | None = None, force: bool = False) -> Done:  # noqa: C901
    """Record a rollback decision through the same journal and guards as an automatic one;
    the daemon carries it out at its next evaluation."""
    _known(loaded, target)
    if not reason:
        raise OperatorError("a manual rollback needs --reason: it goes into the audit history")
    config = loaded.config.targets[target]
    if to_version and not config.components:  # with components, --to is a release number
        _valid_version(store, target, "--to", to_version, by, now, "rollback")
    versions = store.versions(target)
    current = versions[0].version if versions else None
    previous = previous_good(versions, current)
    if not force:
        verdict = Guards(loaded.config, store).check(Situation(
            target=target, rule=None, now=now, version=current, to_version=to_version or previous,
            version_changed_at=None, manual=True))
        if verdict.outcome is Outcome.BLOCKED:
            raise OperatorError(f"not rolling back {target}: {verdict.reason} (use --force to override)")
    hold = store.holds().get(target)
    if hold is not None and not force:
        raise OperatorError(f"{target} is held by decision {hold.decision_id} since {rfc3339(hold.since)}; "
                            "resume it first or use --force")
    if not config.rollback and not config.components:
        raise OperatorError(f"target {target} has no rollback actuators")
    request = RollbackRequest(target=target, rule="manual", value=None, threshold={}, labels={}, version=current,
                              previous_version=previous, reason=f"manual rollback by {by}: {reason}",
                              severity="critical", plan=actuator_plan(config.rollback), to_version=to_version, requested_by=by)
    if config.components:
        request = stack_request(loaded, store, request, to_version)
    with store.transaction():
        decision_id = record_decision(store, request, now)
        desk(loaded, store, now).send(target, ManualRollback(decision_id, by, current, to_version or previous), now)
    return Done(f"rollback {decision_id} of {target} recorded (to {to_version or previous or 'the previous version'}); "
                "the daemon carries it out at its next evaluation", decision_id)


def record_release(loaded: LoadedConfig, store: StateStore, target: str, components: dict[str, str], by: str,
                   note: str, now: float, origin: str = "cli") -> Done:
    """A deployment happened: remember what went out together (used by CI/CD pipelines)."""
    _known(loaded, target)
    if target == ALL or not components:
        raise OperatorError("a release needs a target and at least one --component NAME=VERSION")
    declared = loaded.config.targets[target].components
    unknown = sorted(set(components) - set(declared)) if declared else []
    if unknown:
        raise OperatorError(f"target {target} has no component(s) {', '.join(unknown)} "
                            f"(components: {', '.join(declared)})")
    for component, version in sorted(components.items()):
        _valid_version(store, target, f"component {component}", version, by, now, origin)
    from watchdog.rollback.releases import Ledger

    release = Ledger(store, loaded.config).record(target, components, now, note or f"recorded by {by}", origin)
    return Done(f"release #{release.id} of {target} recorded: "
                + ", ".join(f"{k}={v}" for k, v in sorted(components.items())))
