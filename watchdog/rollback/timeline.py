"""Incident timelines: when each rollback decision's breach began, fired, was acted on, and
health came back — read from where each moment is recorded once:

    breach_started_at, pending_at, fired_at   the decision's context (the firing series' state)
    decided_at                                the decision's creation
    actuated_at                               the last step's end, when every step succeeded
    verified_at, recovered_at                 `timeline` history events (watchdog.rollback.desk.Desk.mark)

    time_to_detect_s  = fired_at − breach_started_at
    time_to_act_s     = actuated_at − fired_at
    time_to_recover_s = recovered_at − breach_started_at

The `model_watchdog_time_to_*_seconds` histograms observe the same differences when they
happen (desk.py, actions.py).
"""

from __future__ import annotations

from typing import Any

from watchdog.clock import rfc3339
from watchdog.state.base import Decision, Journal, StateStore

MARKS = ("breach_started_at", "pending_at", "fired_at", "decided_at", "actuated_at", "verified_at", "recovered_at")
DERIVED = ("time_to_detect_s", "time_to_act_s", "time_to_recover_s")
KEYS = ("decision_id", "target", "rule", "status", *MARKS, *DERIVED)


def incidents(store: StateStore, target: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The newest `limit` rollback decisions as timelines (times in epoch seconds)."""
    decisions = store.decisions(target=target, limit=limit)
    marks: dict[str, dict[str, float]] = {}
    for event in store.history(target, limit=max(200, 4 * limit), kinds=["timeline"]):
        found = marks.setdefault(str(event.data.get("decision_id")), {})
        mark = str(event.data.get("mark"))
        found[mark] = min(found.get(mark, event.at), event.at)
    return [timeline(d, store, marks.get(d.id, {})) for d in decisions]


def timeline(decision: Decision, store: Journal, marks: dict[str, float]) -> dict[str, Any]:
    ctx = decision.context
    steps = store.steps(decision.id)
    actuated = (max((s.finished_at for s in steps if s.finished_at is not None), default=None)
                if decision.status == "succeeded" else None)
    times: dict[str, float | None] = {
        "breach_started_at": ctx.breach_started_at, "pending_at": ctx.pending_at,
        "fired_at": ctx.fired_at, "decided_at": decision.created_at, "actuated_at": actuated,
        "verified_at": marks.get("verified_at"), "recovered_at": marks.get("recovered_at")}
    return {"decision_id": decision.id, "target": decision.target, "rule": decision.rule, "status": decision.status,
            **times,
            "time_to_detect_s": _between(times["breach_started_at"], times["fired_at"]),
            "time_to_act_s": _between(times["fired_at"], times["actuated_at"]),
            "time_to_recover_s": _between(times["breach_started_at"], times["recovered_at"])}


def _between(start: float | None, end: float | None) -> float | None:
    return round(max(0.0, end - start), 3) if start is not None and end is not None else None


def as_json(item: dict[str, Any]) -> dict[str, Any]:
    """Times as RFC 3339, for `incidents --json` and the API."""
    return {k: (rfc3339(v) if k in MARKS and v is not None else v) for k, v in item.items()}


PAD = 600.0  # seconds shown before the breach and after recovery
MAX_POINTS = 500  # history events plotted per incident


def with_plots(store: StateStore, thresholds: dict[tuple[str, str], dict[str, float]], now: float,
               limit: int = 5) -> list[dict[str, Any]]:
    """The newest incidents, each with the rule's values around it from the history (every
    evaluation that changed the rule's state, or its data) and the rule's threshold."""
    out = []
    for item in incidents(store, None, limit):
        start = (item["breach_started_at"] or item["decided_at"]) - PAD
        end = (item["recovered_at"] or now) + PAD
        points = []
        for event in store.history(item["target"], limit=MAX_POINTS, kinds=["state", "no_data"]):
            value = event.data.get("value")
            if event.rule == item["rule"] and start <= event.at <= end and isinstance(value, (int, float)):
                points.append((event.at, float(value)))
        item["plot"] = {"start": start, "end": min(end, max(now, start + 1)), "points": sorted(points),
                        "threshold": thresholds.get((item["target"], item["rule"]), {})}
        out.append(item)
    return out
