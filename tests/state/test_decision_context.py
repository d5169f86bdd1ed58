"""Decision contexts are typed in memory and JSON only in the store; rows the previous
(dict-passing) code wrote read back whole, and write back byte-for-byte the same."""

from __future__ import annotations

import json
import sqlite3

from watchdog.actuators.base import ActionContext
from watchdog.state.decisions import DecisionContext, PlannedStep, StackMove
from watchdog.state.sqlite import SQLiteStateStore

# Exactly what record_decision wrote before the context was typed (a classic and a stack rollback).
CLASSIC = json.loads("""{"approve_by": null, "awaiting_approval": false, "breach_started_at": 1700000030.0, "context":
 {"action": "rollback", "decision_id": "0ed9f2a9", "fired_at": "2023-11-14T22:14:20Z", "from_version": "v2", "labels": {},
 "previous_version": null, "reason": "error-rate = 0.2 is > 0.05", "rule": "error-rate", "target": "fraud-model",
 "threshold": {"above": 0.05}, "to_version": "", "value": 0.2, "version": "v2"}, "depth": 1, "fired_at": 1700000060.0,
 "pending_at": 1700000030.0, "plan": ["first", "second"], "requested_by": null, "severity": "critical"}""")
STACK = json.loads("""{"approve_by": null, "awaiting_approval": false, "breach_started_at": 1700000660.0, "context":
 {"action": "rollback", "decision_id": "b774de4d", "fired_at": "2023-11-14T22:24:50Z", "from_version": "", "labels": {},
 "previous_version": null, "reason": "error-rate = 0.2 is > 0.05", "rule": "error-rate", "target": "fraud-model",
 "threshold": {"above": 0.05}, "to_version": "release #1", "value": 0.2, "version": null}, "depth": 1,
 "fired_at": 1700000690.0, "from_components": {"features": "fp-2", "model": "fraud:6", "schema": "v14"}, "from_release": 2,
 "pending_at": 1700000660.0, "plan": [{"actuator": "second", "component": "features", "from_version": "fp-2",
 "on_failure": "stop", "to_version": "fp-1"}, {"actuator": "first", "component": "schema", "from_version": "v14",
 "on_failure": "stop", "to_version": "v13"}], "requested_by": null, "severity": "critical",
 "to_components": {"features": "fp-1", "model": "fraud:6", "schema": "v13"}, "to_release": 1}""")


def _stored(tmp_path, context: dict) -> DecisionContext:  # type: ignore[type-arg]
    path = tmp_path / "state.db"
    SQLiteStateStore(str(path)).close()  # the schema
    raw = sqlite3.connect(path)
    raw.execute("INSERT INTO decisions (id, target, rule, action, created_at, context, status) "
                "VALUES ('d1', 'fraud-model', 'error-rate', 'rollback', 1.0, ?, 'running')", (json.dumps(context),))
    raw.commit()
    raw.close()
    with SQLiteStateStore(str(path)) as store:
        return store.get_decision("d1").context  # type: ignore[union-attr]


def test_a_classic_rollback_row_reads_as_types(tmp_path) -> None:
    context = _stored(tmp_path, CLASSIC)
    assert context.plan == (PlannedStep("first"), PlannedStep("second"))
    assert isinstance(context.action, ActionContext)
    assert context.action.value == 0.2 and context.action.extra == {"from_version": "v2", "to_version": ""}
    assert (context.severity, context.depth, context.stack, context.timed) == ("critical", 1, None, True)
    assert (context.breach_started_at, context.pending_at, context.fired_at) == (1700000030.0, 1700000030.0, 1700000060.0)
    assert context.to_json() == CLASSIC


def test_a_stack_rollback_row_reads_as_types(tmp_path) -> None:
    context = _stored(tmp_path, STACK)
    assert context.plan[0] == PlannedStep("second", "features", "fp-2", "fp-1", "stop")
    assert context.stack == StackMove(2, 1, STACK["from_components"], STACK["to_components"])
    assert context.to_json() == STACK


def test_a_row_from_before_timelines_and_depth_still_reads(tmp_path) -> None:
    old = {k: v for k, v in CLASSIC.items() if k not in ("fired_at", "pending_at", "breach_started_at", "depth")}
    context = _stored(tmp_path, old)
    assert (context.depth, context.fired_at, context.timed) == (1, None, False)
    assert context.plan == (PlannedStep("first"), PlannedStep("second"))
