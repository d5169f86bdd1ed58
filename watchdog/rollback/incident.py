"""The rollback lifecycle of one target, as an explicit state machine (diagram: docs/rules.md).

    clear      ─ a rollback rule fires, the guards say act ──▶ acting
               ─ … a guard says not now ─────────────────────▶ blocked (asked again every tick)
               ─ … approval is required ─────────────────────▶ awaiting_approval
    blocked    ─ the guards say act / approval ──────────────▶ acting / awaiting_approval
               ─ the rule recovers, a new version runs ──────▶ clear
    awaiting   ─ approved / rejected / expired, new version ─▶ acting / blocked / clear
    acting     ─ the decision succeeded / failed ────────────▶ verifying (held if manual) / held
    verifying  ─ recovered (new version / same version) ─────▶ clear / held
               ─ verify_window elapsed ──────────────────────▶ held, or clear one release deeper (max_depth)
    held       ─ a new version runs, `resume` ───────────────▶ clear
    any        ─ a manual rollback ──────────────────────────▶ acting

`advance(incident, signal, now, settings)` is the only transition function. It is pure: it
returns the next incident and the effects (hold, decision, history, alerts) that
`watchdog.rollback.desk` applies in one place. Time is always handed in; `due()` turns the
incident's own deadlines (approval, verification window) into signals.

Guards *defer* a decision, they never swallow it: while a rollback rule of the target fires,
the engine sends `RuleFiring` on every tick with what the guards say *now*, so the tick on
which a pause is lifted, an initial delay or a cooldown ends, or a rate-limit window moves
on is the tick that rolls back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import Any, Union

from watchdog.clock import rfc3339 as _time


class Phase(str, Enum):
    CLEAR = "clear"  # nothing to do: no rollback rule fires, nothing is held
    BLOCKED = "blocked"  # a rollback rule fires but a guard says not now (`guard`, `until`)
    AWAITING_APPROVAL = "awaiting_approval"  # a decision waits for a human until `until`
    ACTING = "acting"  # a decision is being carried out
    VERIFYING = "verifying"  # rolled back; the rule must recover by `until` (verify_window)
    HELD = "held"  # no further automatic action until a new version runs or `resume`


#: the phases in which the target is held (and `model_watchdog_target_held` is 1)
HOLDING = frozenset({Phase.AWAITING_APPROVAL, Phase.ACTING, Phase.VERIFYING, Phase.HELD})

#: guards that end only when the firing episode ends (not re-checked)
STICKY_GUARDS = frozenset({"rejected"})
#: guards that block without paging anyone (shadow mode is a deliberate dry run)
QUIET_GUARDS = frozenset({"shadow", "rejected"})


@dataclass(frozen=True)
class Incident:
    target: str
    phase: Phase = Phase.CLEAR
    since: float | None = None  # when the current phase began
    rule: str | None = None  # the rollback rule the incident is about ("manual" for a manual rollback)
    decision_id: str | None = None
    guard: str | None = None  # blocked: which guard (paused, initial_delay, cooldown, rate_limit, ...)
    reason: str = ""  # blocked / held: why, in words
    until: float | None = None  # blocked: when the guard lifts, if known; awaiting: approval deadline; verifying: window end
    depth: int = 1  # 2 when the rollback follows one that did not restore health (max_depth)
    version: str | None = None  # the version running when the hold began (the bad one)
    to_version: str | None = None  # what the decision rolls back to; None if unknown
    blocked_since: float | None = None  # start of the current blocked episode
    open_alerts: tuple[tuple[str, str], ...] = ()  # (kind, dedup key) of operational alerts still firing

    @property
    def held(self) -> bool:
        return self.phase in HOLDING

    def to_json(self) -> str:
        data = asdict(self)
        data["phase"] = self.phase.value
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Incident:
        data = json.loads(text)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["phase"] = Phase(known.get("phase", "clear"))
        known["open_alerts"] = tuple(tuple(a) for a in known.get("open_alerts", ()))
        return cls(**known)


@dataclass(frozen=True)
class Settings:
    verify_window: float
    max_depth: int
    approve_timeout: float


# -- signals ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GuardVerdict:
    """What the guards say about acting now: act, blocked, shadow or await_approval."""

    outcome: str
    guard: str = ""
    reason: str = ""
    until: float | None = None


@dataclass(frozen=True)
class RuleFiring:
    """A rollback rule of the target fires on this tick (sent on every tick while it does)."""

    rule: str
    guards: GuardVerdict | None  # None where the guards were not asked (the target is held)
    request: Any = None  # what to decide on (a RollbackRequest); opaque to the machine
    version: str | None = None
    to_version: str | None = None
    newly_fired: tuple[str, ...] = ()  # rollback rules that became firing on this tick
    summary: str = ""  # the rule's reason, for alert texts
    decision_id: str = ""  # the id a decision taken on this signal gets (made by the caller)


@dataclass(frozen=True)
class RuleRecovered:
    """No rollback rule of the target fires on this tick; `healthy`: the incident's rule
    was judged healthy (not merely not firing)."""

    healthy: bool = True
    version: str | None = None


@dataclass(frozen=True)
class Approved:
    decision_id: str
    by: str


@dataclass(frozen=True)
class Rejected:
    decision_id: str
    by: str
    reason: str = ""


@dataclass(frozen=True)
class ApprovalExpired:
    decision_id: str


@dataclass(frozen=True)
class DecisionFinished:
    decision_id: str
    status: str  # succeeded | failed
    message: str = ""


@dataclass(frozen=True)
class NewVersion:
    version: str


@dataclass(frozen=True)
class ClockStepped:
    """The wall clock stepped back: the incident's phase, begun at a time that now lies in the
    clock's future, began at `since` on the new clock. Its deadline (approval, verify window)
    moves with it, so it lies no further from the present than it did before the step.
    `forward`: the clock stepped forward (seen by the scheduler): the phase began at the later
    `since`, and its deadline lies no nearer than it did before the step."""

    since: float
    forward: bool = False


@dataclass(frozen=True)
class WindowElapsed:
    pass


@dataclass(frozen=True)
class Resumed:
    by: str
    reason: str = ""


@dataclass(frozen=True)
class Paused:
    by: str
    reason: str = ""


@dataclass(frozen=True)
class ManualRollback:
    decision_id: str
    by: str
    version: str | None = None
    to_version: str | None = None


Signal = Union[RuleFiring, RuleRecovered, Approved, Rejected, ApprovalExpired, DecisionFinished, NewVersion,
               WindowElapsed, Resumed, Paused, ManualRollback, ClockStepped]


# -- effects ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decide:
    """Record decision `decision_id` for `request` (awaiting approval until `awaiting_until`
    if set)."""

    decision_id: str
    request: Any
    depth: int = 1
    awaiting_until: float | None = None


@dataclass(frozen=True)
class Execute:
    """Carry out the incident's decision (after the incident is committed)."""


@dataclass(frozen=True)
class SetDecision:
    """Change a decision's status: running once approved, skipped when rejected or expired."""

    decision_id: str
    status: str
    mark_bad: str | None = None  # the version to mark bad with it (an approved rollback)


@dataclass(frozen=True)
class PutHold:
    reason: str


@dataclass(frozen=True)
class LiftHold:
    reason: str


@dataclass(frozen=True)
class Record:
    kind: str  # history kind: decision, resume, ...
    message: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Fire:
    kind: str
    key: str
    summary: str
    severity: str = "critical"


@dataclass(frozen=True)
class Resolve:
    kind: str
    key: str
    summary: str


@dataclass(frozen=True)
class Restored:
    """The incident's decision restored health: the rule recovered within verify_window."""

    decision_id: str


@dataclass(frozen=True)
class ReleaseBad:
    """The release a rollback went back to did not restore health: never go back to it again."""

    decision_id: str


Effect = Union[Decide, Execute, SetDecision, PutHold, LiftHold, Record, Fire, Resolve, Restored, ReleaseBad]


# -- the transition function ----------------------------------------------------------------------


def advance(incident: Incident, signal: Signal, now: float, settings: Settings) -> tuple[Incident, list[Effect]]:
    """The next incident after `signal` at `now`, and the effects to apply."""
    handler = _HANDLERS[type(signal)]
    return handler(incident, signal, now, settings)


def due(incident: Incident, now: float) -> list[Signal]:
    """The incident's own deadlines that have passed at `now`, as signals."""
    if incident.until is None or now < incident.until:
        return []
    if incident.phase is Phase.AWAITING_APPROVAL and incident.decision_id:
        return [ApprovalExpired(incident.decision_id)]
    if incident.phase is Phase.VERIFYING:
        return [WindowElapsed()]
    return []


def _enter(incident: Incident, phase: Phase, now: float, **changes: Any) -> Incident:
    return replace(incident, phase=phase, since=now, **changes)


def _fire(incident: Incident, effects: list[Effect], kind: str, key: str, summary: str,
          severity: str = "critical") -> Incident:
    effects.append(Fire(kind, key, summary, severity))
    return replace(incident, open_alerts=(*[a for a in incident.open_alerts if a[1] != key], (kind, key)))


def _resolve(incident: Incident, effects: list[Effect], summary: str, kinds: tuple[str, ...] | None = None) -> Incident:
    """Resolve the open operational alerts (of `kinds`, or all of them)."""
    keep = []
    for kind, key in incident.open_alerts:
        if kinds is None or kind in kinds:
            effects.append(Resolve(kind, key, summary))
        else:
            keep.append((kind, key))
    return replace(incident, open_alerts=tuple(keep))


def _clear(incident: Incident, now: float, effects: list[Effect], summary: str) -> Incident:
    """Back to clear: resolve everything still open, lift the hold if there is one."""
    if incident.held:
        effects.append(LiftHold(summary))
    incident = _resolve(incident, effects, summary)
    return Incident(incident.target, Phase.CLEAR, since=now)


def _blocked_key(incident: Incident) -> str:
    return f"{incident.target}/rollback_blocked/{incident.rule}/{int(incident.blocked_since or 0)}"


def _on_firing(incident: Incident, s: RuleFiring, now: float, settings: Settings) -> tuple[Incident, list[Effect]]:
    effects: list[Effect] = []
    if incident.held:
        for rule in s.newly_fired:
            effects.append(Record("decision", f"{rule} fired; rollback not repeated: {incident.target} is held "
                                  f"since {_time(incident.since or now)} ({incident.phase.value}: decision "
                                  f"{incident.decision_id}); run `model-watchdog resume {incident.target}` to lift it",
                                  {"held_by": incident.decision_id, "rule": rule}))
        return incident, effects
    if incident.phase not in (Phase.CLEAR, Phase.BLOCKED) or s.guards is None:
        return incident, effects
    if incident.phase is Phase.BLOCKED and incident.guard in STICKY_GUARDS:
        return incident, effects
    verdict = s.guards
    if verdict.outcome in ("blocked", "shadow"):
        return _block(incident, s, verdict, now, effects), effects
    incident = _resolve(incident, effects, f"{incident.target}: no longer blocked, rolling back", ("rollback_blocked",))
    incident = replace(incident, rule=s.rule, version=s.version, to_version=s.to_version, guard=None,
                       blocked_since=None, reason=s.summary, decision_id=s.decision_id)
    if verdict.outcome == "await_approval":
        until = now + settings.approve_timeout
        effects.append(Decide(s.decision_id, s.request, incident.depth, awaiting_until=until))
        effects.append(PutHold(f"rollback {s.decision_id} awaits approval ({s.rule})"))
        incident = _fire(incident, effects, "approval_required", f"{incident.target}/approval/{s.decision_id}",
                         f"{incident.target}/{s.rule}: rollback awaits approval until {_time(until)}: {s.summary}. "
                         f"Run `model-watchdog approve {s.decision_id}` or `reject {s.decision_id}`")
        return _enter(incident, Phase.AWAITING_APPROVAL, now, until=until), effects
    effects.append(Decide(s.decision_id, s.request, incident.depth))
    effects.append(PutHold(f"rollback {s.decision_id} ({s.rule})"))
    effects.append(Execute())
    return _enter(incident, Phase.ACTING, now, until=None), effects


def _block(incident: Incident, s: RuleFiring, verdict: GuardVerdict, now: float, effects: list[Effect]) -> Incident:
    guard = verdict.guard or verdict.outcome
    message = f"{verdict.reason}: {s.summary}" if guard == "shadow" else f"rollback blocked: {verdict.reason}"
    data = {"guard": guard, "until": verdict.until, "version": s.version, "to_version": s.to_version}
    if incident.phase is Phase.CLEAR:
        incident = _enter(incident, Phase.BLOCKED, now, rule=s.rule, guard=guard, reason=verdict.reason,
                          until=verdict.until, blocked_since=now, version=s.version)
        effects.append(Record("decision", message, data))
        if guard not in QUIET_GUARDS:
            incident = _fire(incident, effects, "rollback_blocked", _blocked_key(incident),
                             f"{incident.target}/{s.rule} fires but is not rolled back yet: {verdict.reason}")
        return incident
    if guard != incident.guard:
        effects.append(Record("decision", message, data))
    return replace(incident, guard=guard, reason=verdict.reason, until=verdict.until, rule=s.rule)


def _on_recovered(incident: Incident, s: RuleRecovered, now: float, settings: Settings) -> tuple[Incident, list[Effect]]:
    effects: list[Effect] = []
    if incident.phase is Phase.BLOCKED:
        effects.append(Record("decision", f"{incident.rule} no longer fires: no rollback needed "
                              f"(it was blocked: {incident.reason})", {"guard": incident.guard}))
        return _clear(incident, now, effects, f"{incident.target}/{incident.rule} no longer fires"), effects
    if incident.phase is Phase.CLEAR and incident.depth != 1:
        return replace(incident, depth=1), effects
    if incident.phase is not Phase.VERIFYING or not s.healthy:
        return incident, effects
    moved_on = s.version is not None and s.version != incident.version
    message = (f"rollback {incident.decision_id} restored health: {incident.rule} recovered"
               + ("; hold lifted" if moved_on else "; the target stays held until a new version runs"))
    effects.append(Record("resume" if moved_on else "decision", message, {"decision_id": incident.decision_id}))
    effects.append(Restored(incident.decision_id or ""))
    if moved_on:
        return _clear(incident, now, effects, f"{incident.target}: {message}"), effects
    incident = _resolve(incident, effects, f"{incident.target}: {message}")
    return _enter(incident, Phase.HELD, now, until=None, reason=f"rollback {incident.decision_id} restored health"), effects


def _on_approved(incident: Incident, s: Approved, now: float, settings: Settings) -> tuple[Incident, list[Effect]]:
    effects: list[Effect] = []
    if incident.phase is not Phase.AWAITING_APPROVAL or incident.decision_id != s.decision_id:
        return incident, effects
    message = f"rollback {s.decision_id} approved by {s.by}; it runs at the next evaluation"
    effects.append(SetDecision(s.decision_id, "running", mark_bad=incident.version))
    effects.append(Record("decision", message, {"decision_id": s.decision_id, "operator": s.by}))
    incident = _resolve(incident, effects, f"{incident.target}: {message}", ("approval_required",))
    return _enter(incident, Phase.ACTING, now, until=None), effects


def _on_rejected(incident: Incident, s: Rejected, now: float, settings: Settings) -> tuple[Incident, list[Effect]]:
    effects: list[Effect] = []
    if incident.phase is not Phase.AWAITING_APPROVAL or incident.decision_id != s.decision_id:
        return incident, effects
    message = f"rollback {s.decision_id} rejected by {s.by}" + (f": {s.reason}" if s.reason else "")
    effects.append(SetDecision(s.decision_id, "skipped"))
    effects.append(Record("decision", message, {"decision_id": s.decision_id, "operator": s.by}))
    effects.append(LiftHold(message))
    incident = _resolve(incident, effects, f"{incident.target}: {message}")
    # Not asked again while this episode lasts: a human said no.
    return _enter(incident, Phase.BLOCKED, now, guard="rejected", reason=message, until=None,
                  blocked_since=now, decision_id=None), effects


def _on_expired(incident: Incident, s: ApprovalExpired, now: float, settings: Settings) -> tuple[Incident, list[Effect]]:
    effects: list[Effect] = []
    if incident.phase is not Phase.AWAITING_APPROVAL or incident.decision_id != s.decision_id:
        return incident, effects
    message = f"approval timed out: rollback {s.decision_id} not carried out"
    effects.append(SetDecision(s.decision_id, "skipped"))
    effects.append(Record("decision", message, {"decision_id": s.decision_id}))
    # A rule still firing asks again on this very tick (a new decision, a new page).
    return _clear(incident, now, effects, f"{incident.target}: {message}"), effects


def _on_finished(incident: Incident, s: DecisionFinished, now: float, settings: Settings) -> tuple[Incident, list[Effect]]:
    effects: list[Effect] = []
    if incident.phase is not Phase.ACTING or incident.decision_id != s.decision_id:
        return incident, effects
    key = f"{incident.target}/rollback/{s.decision_id}"
    if s.status != "succeeded":
        incident = _fire(incident, effects, "actuator_failed", key, f"{incident.target}: {s.message}")
        return _enter(incident, Phase.HELD, now, until=None, reason=f"rollback {s.decision_id} failed"), effects
    incident = _fire(incident, effects, "rollback_completed", key, f"{incident.target}: {s.message}")
    if incident.rule == "manual":
        return _enter(incident, Phase.HELD, now, until=None, reason=f"manual rollback {s.decision_id}"), effects
    return _enter(incident, Phase.VERIFYING, now, until=now + settings.verify_window,
                  reason=f"rollback {s.decision_id}"), effects


def _on_new_version(incident: Incident, s: NewVersion, now: float, settings: Settings) -> tuple[Incident, list[Effect]]:
    effects: list[Effect] = []
    phase = incident.phase
    if phase is Phase.CLEAR or phase is Phase.ACTING:
        return incident, effects  # while acting, a new version is what the rollback does
    ours = s.version == incident.to_version or (incident.to_version is None and phase is Phase.VERIFYING)
    if phase is Phase.VERIFYING and ours:
        return incident, effects  # the rolled-back-to version: verification goes on
    if phase is Phase.HELD and s.version == incident.version:
        return incident, effects
    message = f"new version {s.version} is running"
    if phase is Phase.AWAITING_APPROVAL and incident.decision_id:
        effects.append(SetDecision(incident.decision_id, "skipped"))
        message += f": rollback {incident.decision_id} no longer needed"
    effects.append(Record("resume" if incident.held else "decision",
                          (f"hold lifted: {message}" if incident.held else f"{message}; {incident.rule} is judged afresh"),
                          {"version": s.version, "decision_id": incident.decision_id}))
    return _clear(incident, now, effects, f"{incident.target}: {message}"), effects


def _on_window(incident: Incident, s: WindowElapsed, now: float, settings: Settings) -> tuple[Incident, list[Effect]]:
    effects: list[Effect] = []
    if incident.phase is not Phase.VERIFYING:
        return incident, effects
    deeper = incident.depth < settings.max_depth
    message = (f"rollback {incident.decision_id} did not restore health: {incident.rule} has not recovered within "
               f"{settings.verify_window:g}s" + (f"; rolling back one release further (max_depth {settings.max_depth})"
                                                  if deeper else "; no further automatic rollback"))
    effects.append(Record("decision", message, {"decision_id": incident.decision_id}))
    effects.append(ReleaseBad(incident.decision_id or ""))
    incident = _resolve(incident, effects, f"{incident.target}: {message}", ("rollback_completed",))
    incident = _fire(incident, effects, "rollback_ineffective", f"{incident.target}/ineffective/{incident.decision_id}",
                     f"{incident.target}: {message}")
    if not deeper:
        return _enter(incident, Phase.HELD, now, until=None, reason=message), effects
    # The still-firing rule decides again on this tick, one release further back.
    effects.append(LiftHold(message))
    return _enter(incident, Phase.CLEAR, now, until=None, depth=incident.depth + 1, decision_id=None), effects


def _on_resumed(incident: Incident, s: Resumed, now: float, settings: Settings) -> tuple[Incident, list[Effect]]:
    effects: list[Effect] = []
    if not incident.held and not (incident.phase is Phase.BLOCKED and incident.guard in STICKY_GUARDS):
        return incident, effects
    if incident.phase is Phase.AWAITING_APPROVAL and incident.decision_id:
        effects.append(SetDecision(incident.decision_id, "skipped"))
    message = f"resumed by {s.by}" + (f": {s.reason}" if s.reason else "")
    return _clear(incident, now, effects, f"{incident.target}: {message}"), effects


def _on_paused(incident: Incident, s: Paused, now: float, settings: Settings) -> tuple[Incident, list[Effect]]:
    # A pause is a guard: it blocks the next decision (re-checked every tick), never one in flight.
    return incident, []


def _on_clock_stepped(incident: Incident, s: ClockStepped, now: float,
                      settings: Settings) -> tuple[Incident, list[Effect]]:
    if incident.since is None or (incident.since >= s.since if s.forward else incident.since <= s.since):
        return incident, []  # (moved already, by another replica)
    shift = s.since - incident.since  # blocked_since stays: it names the open rollback_blocked alert
    return replace(incident, since=s.since, until=None if incident.until is None else incident.until + shift), []


def _on_manual(incident: Incident, s: ManualRollback, now: float, settings: Settings) -> tuple[Incident, list[Effect]]:
    effects: list[Effect] = []
    if incident.phase is Phase.AWAITING_APPROVAL and incident.decision_id:
        effects.append(SetDecision(incident.decision_id, "skipped"))
    incident = _resolve(incident, effects, f"{incident.target}: manual rollback {s.decision_id} by {s.by}")
    effects.append(PutHold(f"manual rollback by {s.by}"))
    return Incident(incident.target, Phase.ACTING, since=now, rule="manual", decision_id=s.decision_id,
                    version=s.version, to_version=s.to_version, reason=f"manual rollback by {s.by}"), effects


_HANDLERS: dict[type, Any] = {
    RuleFiring: _on_firing, RuleRecovered: _on_recovered, Approved: _on_approved, Rejected: _on_rejected,
    ApprovalExpired: _on_expired, DecisionFinished: _on_finished, NewVersion: _on_new_version,
    WindowElapsed: _on_window, Resumed: _on_resumed, Paused: _on_paused, ManualRollback: _on_manual,
    ClockStepped: _on_clock_stepped,
}
