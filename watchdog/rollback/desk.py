"""The one place where an incident's effects happen: the hold (and with it the
`model_watchdog_target_held` gauge), decisions in the journal, the history, the
operational alerts and the incident metrics (time to detect and to recover, decisions
blocked, shadowed or skipped; time to act and succeeded/failed are counted where the
actuators finish, in `RollbackExecutor`).

`Desk.send(target, signal, now)` reads the target's incident under a row lock, advances the
pure machine (`incident.advance`), applies the effects and saves the incident — all in one
transaction, so the daemon's tick and an operator's CLI command never overwrite each
other's step. Carrying out a decision (`Execute`) happens after the commit.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Callable

from watchdog.rollback.executor import RollbackExecutor, mark_bad, record_decision
from watchdog.alerters.base import Alert
from watchdog.clock import rfc3339
from watchdog.config.schema import Config
from watchdog.metrics import DaemonMetrics
from watchdog.rollback.incident import (
    STICKY_GUARDS, Decide, Effect, Execute, Fire, Incident, LiftHold, Phase, PutHold, Record, ReleaseBad, Resolve,
    Restored, SetDecision, Settings, Signal, advance,
)
from watchdog.state.base import HistoryEvent, Hold, StateStore

log = logging.getLogger("watchdog.rollback")

NotifyFn = Callable[[str, Alert], None]  # (target, alert)


class Desk:
    def __init__(self, config: Config, store: StateStore, notify: NotifyFn, metrics: DaemonMetrics | None = None,
                 executor: RollbackExecutor | None = None, clock: Callable[[], float] | None = None):
        self.config = config
        self.store = store
        self.notify = notify
        self.metrics = metrics  # None in a CLI process: the daemon re-reads holds every tick
        self.executor = executor
        self.clock = clock
        # Every hold, as `sync` read them at the start of this tick: `load` of a target with no
        # incident yet looks there, not at the store (one read per tick, not one per target).
        # Exact: a hold comes and goes only with a step of `send`, which saves the target's
        # incident in the same transaction, so a target without one has the holds of the tick's start.
        self._holds: dict[str, Hold] | None = None

    def settings(self, target: str) -> Settings:
        t = self.config.targets[target]
        return Settings(verify_window=t.verify_window, max_depth=t.max_depth, approve_timeout=t.approve_timeout)

    def load(self, target: str) -> Incident:
        text = self.store.incident(target)
        return Incident.from_json(text) if text else self._first(target, self._holds)

    def _first(self, target: str, holds: dict[str, Hold] | None = None) -> Incident:
        """A target without an incident yet: clear — or held, if a hold was put before
        incidents existed (a store written by an earlier release). `holds`: already read."""
        hold = (holds if holds is not None else self.store.holds()).get(target)
        if hold is None:
            return Incident(target)
        return Incident(target, Phase.HELD, since=hold.since, rule=None, decision_id=hold.decision_id,
                        version=hold.version, reason=hold.reason)

    def send(self, target: str, signal: Signal, now: float) -> Incident:
        """Advance `target`'s incident by `signal` and apply what follows from it."""
        with self.store.transaction():
            text = self.store.incident(target, for_update=True)
            before = Incident.from_json(text) if text else self._first(target)
            after, effects = advance(before, signal, now, self.settings(target))
            if after == before and not effects:
                return before
            applied = [effect for effect in effects if self._apply(after, effect, now)]
            self.store.save_incident(target, after.to_json(), now)
        self._show(after)
        self._measure(before, after, applied, now)
        if any(isinstance(e, Execute) for e in effects) and self.executor is not None and after.decision_id:
            self.executor.execute(after.decision_id, self.clock or (lambda: now))
            return self.load(target)
        return after

    def sync(self, targets: list[str] | set[str]) -> None:
        """The gauge from the store (an operator may have lifted a hold from the CLI)."""
        holds = self._holds = self.store.holds()
        for target in targets:
            if self.metrics is not None:
                self.metrics.target_held.labels(target).set(1 if target in holds else 0)

    def _show(self, incident: Incident) -> None:
        if self.metrics is not None:
            self.metrics.target_held.labels(incident.target).set(1 if incident.held else 0)

    def _measure(self, before: Incident, after: Incident, effects: list[Effect], now: float) -> None:
        """The incident metrics of a committed step (a CLI process has none: metrics is None)."""
        if self.metrics is None:
            return
        target = after.target
        if after.phase is Phase.BLOCKED and before.phase is not Phase.BLOCKED and after.guard not in STICKY_GUARDS:
            # Once per blocked episode: the rule fired and was not acted on (yet).
            self.metrics.decisions.labels(target, "shadow" if after.guard == "shadow" else "blocked").inc()
        for effect in effects:
            if isinstance(effect, Decide) and effect.depth == 1:
                started = getattr(effect.request, "breach_started_at", None)
                fired = getattr(effect.request, "fired_at", None) or now
                if started is not None and not self._decided_before(target, effect.decision_id, started):
                    # from the first breaching evaluation to the rule firing
                    self.metrics.time_to_detect.labels(target).observe(max(0.0, fired - started))
            elif isinstance(effect, SetDecision) and effect.status == "skipped":
                # Expired, rejected, or overtaken by a new version / resume / a manual rollback.
                self.metrics.decisions.labels(target, "skipped").inc()

    def _decided_before(self, target: str, decision_id: str, started: float) -> bool:
        """An earlier decision on the same breach (an approval that expired, asked again): the
        breach was detected once."""
        return any(d.id != decision_id and d.context.breach_started_at == started
                   for d in self.store.decisions(target=target, limit=5))

    # -- effects ------------------------------------------------------------------------------

    def _apply(self, incident: Incident, effect: Effect, now: float) -> bool:
        """Apply `effect`; False if it changed nothing (a decision already finished)."""
        target = incident.target
        if isinstance(effect, Decide):
            request = replace(effect.request, depth=effect.depth)
            record_decision(self.store, request, now, awaiting_until=effect.awaiting_until, decision_id=effect.decision_id)
            if request.stack is not None and effect.awaiting_until is None:
                self.store.set_release_state(request.stack.from_release, "bad")
        elif isinstance(effect, PutHold):
            self.store.put_hold(Hold(target, now, incident.decision_id, incident.version, effect.reason))
        elif isinstance(effect, LiftHold):
            self.store.delete_hold(target)
        elif isinstance(effect, SetDecision):
            return self._set_decision(target, effect, now)
        elif isinstance(effect, Record):
            self.store.append(HistoryEvent(None, now, target, incident.rule, {}, effect.kind, effect.message, effect.data))
            log.info("%s: %s", target, effect.message)
        elif isinstance(effect, (Fire, Resolve)):
            self._alert(incident, effect, now)
        elif isinstance(effect, ReleaseBad):
            self._release_bad(target, effect.decision_id)
        elif isinstance(effect, Restored):
            self.mark(target, incident.rule, effect.decision_id, "verified_at", now)
        return True

    def mark(self, target: str, rule: str | None, decision_id: str, mark: str, now: float) -> None:
        """The one place where a decision's later timeline marks (`verified_at`: the rule
        recovered within verify_window; `recovered_at`: every rollback rule of the target
        inactive again) are recorded: a `timeline` history event (read by watchdog.rollback.timeline)."""
        what = {"verified_at": "verified: the rule recovered within verify_window",
                "recovered_at": "recovered: every rollback rule of the target is inactive again"}[mark]
        self.store.append(HistoryEvent(None, now, target, rule, {}, "timeline", f"rollback {decision_id} {what}",
                                       {"decision_id": decision_id, "mark": mark}))
        if mark == "recovered_at" and self.metrics is not None:
            decision = self.store.get_decision(decision_id)
            started = decision.context.breach_started_at if decision is not None else None
            if started is not None:  # from the first breaching evaluation to every rule inactive
                self.metrics.time_to_recover.labels(target).observe(max(0.0, now - started))

    def _set_decision(self, target: str, effect: SetDecision, now: float) -> bool:
        decision = self.store.get_decision(effect.decision_id)
        if decision is None or decision.status not in ("pending", "running"):
            return False
        finished = now if effect.status in ("succeeded", "failed", "skipped") else None
        self.store.set_decision_status(effect.decision_id, effect.status, finished_at=finished)
        if effect.mark_bad:
            mark_bad(self.store, target, effect.mark_bad, f"{decision.rule}: rollback {effect.decision_id} approved")
        return True

    def _alert(self, incident: Incident, effect: Fire | Resolve, now: float) -> None:
        firing = isinstance(effect, Fire)
        self.notify(incident.target, Alert(
            status="firing" if firing else "resolved", kind=effect.kind, dedup_key=effect.key,
            target=incident.target, rule=incident.rule or "",
            severity=effect.severity if isinstance(effect, Fire) else "info", summary=effect.summary,
            at=rfc3339(now), decision_id=incident.decision_id, version=incident.version))

    def _release_bad(self, target: str, decision_id: str) -> None:
        """The release a rollback went back to did not restore health (its copy is current)."""
        decision = self.store.get_decision(decision_id) if decision_id else None
        if decision is None or decision.context.stack is None:
            return
        stack = decision.context.stack
        releases = self.store.releases(target, limit=200)
        for release in releases:
            if release.id == stack.to_release or release.components == stack.to_components:
                if release.state != "bad":
                    self.store.set_release_state(release.id, "bad")  # type: ignore[arg-type]
