"""What happens around a rollback, as part of the engine: the running version and the holds
it lifts, the release ledger's plans, and the verification window that follows a rollback.

A mixin of `Engine` (it works on the engine's rule states, versions and store); kept apart
so that `engine.py` stays about one tick: fetch, judge, step, persist, dispatch.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from watchdog import verification
from watchdog.actions import RollbackRequest
from watchdog.alerters.base import Alert
from watchdog.clock import rfc3339
from watchdog.config.schema import TargetConfig
from watchdog.errors import WatchdogError
from watchdog.rules.evaluate import Outcome, Verdict
from watchdog.rules.state import Phase, SeriesState, reset_pending
from watchdog.state.base import Decision

if TYPE_CHECKING:
    from watchdog.engine import Engine, StateKey, TickReport

log = logging.getLogger("watchdog.engine")


class Lifecycle:
    # -- versions and holds -------------------------------------------------------------------

    def _observe_version(self: Engine, name: str, target: TargetConfig, now: float) -> None:
        if target.version is None:
            return
        result = self.runner.query(target.version.source, target.version.query, now)
        if isinstance(result, WatchdogError):
            log.debug("target %s: version unknown: %s", name, result)
            return
        found = next((s.label(target.version.label) for s in result.samples if s.label(target.version.label)), None)
        found = self.version_gate.admit(name, found, now)  # untrusted: an invalid version is recorded, alerted, ignored
        if found is None or found == self.versions.get(name):
            if found is not None:
                self.store.observe_version(name, found, now)
            return
        previous = self.versions.get(name)
        with self.store.transaction():
            self.store.observe_version(name, found, now)
            self._history(now, name, None, {}, "version", f"version {found} is running (was {previous or 'unknown'})",
                          {"version": found, "previous": previous})
            self.ledger.discovered(name, target.version.component, found, now)
            self.versions[name] = found
            if previous is not None:
                self._on_new_version(name, found, now)

    def _on_new_version(self: Engine, target: str, version: str, now: float) -> None:
        """Evidence gathered under the old version proves nothing about the new one: pending
        timers restart and firing series are re-judged (a new release that is just as bad
        is rolled back again)."""
        self.version_changed_at[target] = now
        for key, state in list(self.states.items()):
            if key[0] != target:
                continue
            if state.phase is Phase.FIRING:
                self._rejudge(key, state, version, now)
            self.states[key] = replace(reset_pending(self.states[key]), insufficient_since=None, insufficient_alerted=False)
        hold = self.store.holds().get(target)
        ours = hold is not None and hold.decision_id is not None and self._rolled_back_to(hold.decision_id, version)
        if hold is not None and hold.version != version and not ours:
            self.store.delete_hold(target)
            self.metrics.target_held.labels(target).set(0)
            verification.finish(self.store, target)
            self._history(now, target, None, {}, "resume", f"hold lifted: new version {version} is running", {"version": version})

    def _rolled_back_to(self: Engine, decision_id: str, version: str) -> bool:
        """Whether `version` is what decision `decision_id` rolled back to (so the hold stays
        until the verification window says the rollback restored health)."""
        decision = self.store.get_decision(decision_id)
        if decision is None:
            return False
        extra = decision.context.get("context", {})
        to_version = extra.get("to_version") or extra.get("previous_version")
        if not to_version and not decision.context.get("to_components"):
            # Nobody knew what it would roll back to: the first version change is its effect.
            pending = verification.pending(self.store, decision.target)
            return pending is not None and pending.decision_id == decision_id
        return version == to_version or version in (decision.context.get("to_components") or {}).values()

    def _rejudge(self: Engine, key: StateKey, state: SeriesState, version: str, now: float) -> None:
        rule = next((lr for lr in self.loaded.rules if (lr.target, lr.rule.name) == key[:2]), None)
        self.states[key] = replace(state, phase=Phase.INACTIVE, pending_since=None, firing_since=None,
                                   decision_id=None, outcome="warming_up", reason=f"re-judging: version {version} is running")
        self._history(now, key[0], key[1], json.loads(key[2]), "state",
                      f"firing → inactive: version {version} is running; the rule is judged afresh", {"version": version})
        if rule is not None:
            labels = tuple(sorted(json.loads(key[2]).items()))
            self._alert_rule(rule, Verdict(labels, Outcome.WARMING_UP, None, f"version {version} is running; judged afresh"),
                             self.states[key], now, resolved=True)

    def previous_version(self: Engine, target: str) -> str | None:
        current = self.versions.get(target)
        for record in self.store.versions(target):
            if record.version != current and not record.bad:
                return record.version
        return None


    # -- after a rollback: releases, verification, escalation -----------------------------------

    def _stack(self: Engine, request: RollbackRequest, to_release: int | None = None) -> RollbackRequest | str:
        """For a target with components: the plan back to the newest healthy release."""
        plan = self.ledger.plan(request.target, to_release)
        if isinstance(plan, str):
            return plan
        return replace(request, plan=[step.as_json() for step in plan.steps], to_version=f"release #{plan.to.id}",
                       stack={"from_release": plan.current.id, "to_release": plan.to.id,
                              "from_components": plan.current.components, "to_components": plan.to.components})

    def _firing(self: Engine, target: str) -> bool:
        rollback_rules = {lr.rule.name for lr in self.loaded.rules if lr.target == target and lr.rule.action == "rollback"}
        return any(k[0] == target and k[1] in rollback_rules and s.phase is Phase.FIRING for k, s in self.states.items())

    def _decision_finished(self: Engine, decision: Decision, status: str, now: float) -> None:
        """Inside the transaction that finishes a decision: ledger and verification."""
        if status != "succeeded":
            return
        to_release = decision.context.get("to_release")
        if to_release is not None:
            to = next((r for r in self.store.releases(decision.target, limit=200) if r.id == to_release), None)
            if to is not None:
                self.ledger.record(decision.target, to.components, now, f"rolled back to #{to.id} by decision {decision.id}",
                                   "rollback", state="healthy")
        target = self.loaded.config.targets.get(decision.target)
        if target is not None and decision.rule != "manual":
            verification.start(self.store, verification.Verification(
                decision.target, decision.id, decision.rule, now + target.verify_window,
                int(decision.context.get("depth", 1))))

    def _verify(self: Engine, target: str, now: float, report: TickReport) -> None:
        pending = verification.pending(self.store, target)
        if pending is None:
            return
        series = [s for k, s in self.states.items() if k[:2] == (target, pending.rule)]
        # Recovered: nothing pending or firing, and judged healthy — or no longer judgeable
        # against its baseline (after going back, the version rolled back from is the bad one).
        if series and all(s.phase is Phase.INACTIVE and s.outcome in ("ok", "insufficient") for s in series):
            with self.store.transaction():
                verification.finish(self.store, target)
                hold = self.store.holds().get(target)
                # The hold lifts once the rolled-back version is gone and health is back; if the
                # version never changed, it stays until a new version is seen or `resume`.
                lift = hold is not None and hold.decision_id == pending.decision_id and \
                    self.versions.get(target) not in (None, hold.version)
                if lift:
                    self.store.delete_hold(target)
                    self.metrics.target_held.labels(target).set(0)
                self._history(now, target, pending.rule, {}, "resume" if lift else "decision",
                              f"rollback {pending.decision_id} restored health: {pending.rule} recovered"
                              + ("; hold lifted" if lift else "; the target stays held until a new version runs"),
                              {"decision_id": pending.decision_id})
            return
        if now < pending.until:
            return
        self._escalate(target, pending, now, report)

    def _escalate(self: Engine, target: str, pending: verification.Verification, now: float, report: TickReport) -> None:
        config = self.loaded.config.targets[target]
        deeper = pending.depth < config.max_depth
        message = (f"rollback {pending.decision_id} did not restore health: {pending.rule} has not recovered within "
                   f"{config.verify_window:g}s" + ("; rolling back one release further (max_depth "
                                                   f"{config.max_depth})" if deeper else "; no further automatic rollback"))
        verification.finish(self.store, target)
        self._history(now, target, pending.rule, {}, "decision", message, {"decision_id": pending.decision_id})
        self.alert(target, Alert(status="firing", kind="rollback_ineffective", dedup_key=f"{target}/ineffective/{pending.decision_id}",
                                 target=target, rule=pending.rule, severity="critical", summary=f"{target}: {message}",
                                 at=rfc3339(now), decision_id=pending.decision_id, version=self.versions.get(target)))
        if not deeper:
            return
        lr = next((lr for lr in self.loaded.rules if (lr.target, lr.rule.name) == (target, pending.rule)), None)
        key = next((k for k, s in self.states.items() if k[:2] == (target, pending.rule)), None)
        if lr is None or key is None:
            return
        self.store.delete_hold(target)
        current = self.ledger.current(target)
        if current is not None:
            self.store.set_release_state(current.id, "bad")  # type: ignore[arg-type]
        state = self.states[key]
        request = self._rollback_request(lr, Verdict(tuple(sorted(json.loads(key[2]).items())), Outcome.BREACH,
                                                     state.value, state.reason), state)
        self._rollback(key, replace(request, depth=pending.depth + 1), now, report)

    def _previous_seen_at(self: Engine, target: str) -> float | None:
        previous = self.previous_version(target)
        record = next((v for v in self.store.versions(target) if v.version == previous), None) if previous else None
        return record.last_seen if record is not None else None
