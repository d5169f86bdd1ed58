"""What the state store says about each target: for `status`, the API and the status page."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

from watchdog.clock import rfc3339
from watchdog.config.loader import LoadedConfig
from watchdog.rollback.incident import Incident
from watchdog.rules.state import SeriesState
from watchdog.state.base import StateStore

if TYPE_CHECKING:
    from watchdog.engine import Engine
    from watchdog.runtime.ownership import Owner


class RunningDaemon(Protocol):
    """What the snapshot reads from the running daemon (watchdog.daemon.Daemon, which builds
    the web side and so is not imported here)."""

    loaded: LoadedConfig
    store: StateStore
    owner: Owner
    engine: Engine
    last_tick: float | None
    last_error: str


def _time(ts: float | None) -> str | None:
    return rfc3339(ts) if ts is not None else None


def store_snapshot(loaded: LoadedConfig, store: StateStore) -> dict[str, Any]:
    states = store.load_rule_states()
    holds = store.holds()
    incidents = {t: Incident.from_json(text) for t, text in store.incidents().items()}
    targets: dict[str, Any] = {}
    for name in loaded.config.targets:
        hold = holds.get(name)
        rules = []
        for lr in [r for r in loaded.rules if r.target == name]:
            series = [(json.loads(k[2]), SeriesState.from_json(v)) for k, v in states.items() if k[:2] == (name, lr.rule.name)]
            rules.append({
                "rule": lr.rule.name, "action": lr.rule.action, "severity": lr.rule.severity,
                "threshold": lr.rule.threshold(), "for": lr.rule.for_,
                "series": [{"labels": labels, "state": s.phase.value, "value": s.value, "outcome": s.outcome,
                            "reason": s.reason, "pending_since": _time(s.pending_since),
                            "firing_since": _time(s.firing_since), "evaluated_at": _time(s.evaluated_at),
                            "decision_id": s.decision_id} for labels, s in series],
            })
        versions = store.versions(name)
        targets[name] = {
            "version": versions[0].version if versions else None,
            "held": hold is not None,
            "incident": _incident(incidents.get(name)),
            "hold": None if hold is None else {"since": _time(hold.since), "decision_id": hold.decision_id,
                                               "version": hold.version, "reason": hold.reason},
            "versions": [{"version": v.version, "first_seen": _time(v.first_seen), "last_seen": _time(v.last_seen),
                          "bad": v.bad, "bad_reason": v.bad_reason} for v in versions],
            "rules": rules,
            "decisions": [{"id": d.id, "rule": d.rule, "status": d.status, "created_at": _time(d.created_at),
                           "finished_at": _time(d.finished_at)} for d in store.decisions(target=name, limit=5)],
        }
    return {"targets": targets}


def _incident(incident: Incident | None) -> dict[str, Any]:
    """The target's rollback lifecycle: its phase, and why and until when if blocked."""
    if incident is None:
        return {"phase": "clear"}
    return {"phase": incident.phase.value, "since": _time(incident.since), "rule": incident.rule,
            "guard": incident.guard, "reason": incident.reason or None, "until": _time(incident.until),
            "decision_id": incident.decision_id, "depth": incident.depth}


def snapshot(daemon: RunningDaemon) -> dict[str, Any]:
    data = store_snapshot(daemon.loaded, daemon.store)
    data["replica"] = {"id": daemon.owner.replica_id, "guards": sorted(daemon.engine.owned)}
    data["owners"] = daemon.store.target_owners()
    data["last_evaluation"] = _time(daemon.last_tick)
    data["last_error"] = daemon.last_error or None
    data["sources"] = {}
    for name, health in daemon.engine.runner.health().items():
        data["sources"][name] = {"up": health.up, "last_success": _time(health.last_success),
                                 "last_error": health.last_error or None, **health.details}
    return data
