"""Retention (`history_retention`): the store prunes what is old and no longer needed, in
bounded batches, on SQLite and on a real PostgreSQL alike (SQLStateStore.prune)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.state.stores import ENGINES, T0, Backend, decision, event, new_backend
from watchdog.errors import StateError
from watchdog.state import Hold, StateStore, open_store
from watchdog.state.base import Release

pytestmark = pytest.mark.timeout(60)
DAY = 86400.0
NOW = T0 + 100 * DAY
CUTOFF = NOW - 90 * DAY


@pytest.fixture(params=ENGINES)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return new_backend(request.param, request, tmp_path)


@pytest.fixture
def store(backend: Backend) -> Iterator[StateStore]:
    with open_store(backend.url) as opened:
        yield opened


def kinds(store: StateStore, target: str) -> list[tuple[str, float]]:
    return sorted((e.kind, e.at) for e in store.history(target, limit=10_000))


def test_old_history_goes_recent_stays_and_each_kinds_newest_event_is_kept(store: StateStore) -> None:
    for day in range(5):
        store.append(event("fraud", "state", at=T0 + day))
        store.append(event("fraud", "drill", at=T0 + day))
    store.append(event("fraud", "state", at=NOW - DAY))  # recent
    counts = store.prune(CUTOFF)
    # Every old state but... none: a newer state exists, so all five old ones go; the drills'
    # newest (day 4) stays, because it is the last drill the schedule and /metrics read.
    assert kinds(store, "fraud") == [("drill", T0 + 4), ("state", NOW - DAY)]
    assert counts["history"] == 9
    assert store.prune(CUTOFF)["history"] == 0  # idempotent


def test_an_open_incident_a_hold_or_an_unfinished_decision_keeps_its_targets_rows(store: StateStore) -> None:
    for target in ("incident", "held", "pending", "clear"):
        store.append(event(target, "state", at=T0))
        store.append(event(target, "state", at=T0 + 1))
    store.save_incident("incident", json.dumps({"target": "incident", "phase": "verifying"}), T0)
    store.save_incident("clear", json.dumps({"target": "clear", "phase": "clear"}), T0)
    store.put_hold(Hold("held", T0, None, None, "operator hold"))
    store.create_decision(decision("d-open", T0, "pending", target="pending"))
    store.prune(CUTOFF)
    for target in ("incident", "held", "pending"):
        assert len(kinds(store, target)) == 2, target
    assert kinds(store, "clear") == [("state", T0 + 1)]
    assert store.get_decision("d-open") is not None
    assert store.incidents().keys() == {"incident", "clear"} and store.holds().keys() == {"held"}


def test_finished_old_decisions_and_their_steps_go_but_named_and_newest_stay(store: StateStore) -> None:
    for i in range(4):
        store.create_decision(decision(f"d{i}", T0 + i, "pending"))
        store.start_step(f"d{i}", 0, "k8s", T0 + i)
        store.finish_step(f"d{i}", 0, "succeeded", T0 + i, "ok")
        store.set_decision_status(f"d{i}", "succeeded", T0 + i)
    store.create_decision(decision("recent", NOW - DAY, "failed", target="other"))
    store.set_decision_status("recent", "failed", NOW - DAY)
    store.save_incident("fraud", json.dumps({"target": "fraud", "phase": "clear", "decision_id": "d1"}), T0)
    counts = store.prune(CUTOFF)
    assert {d.id for d in store.decisions(limit=100)} == {"d1", "d3", "recent"}  # named, newest, recent
    assert counts["decisions"] == 2 and counts["steps"] == 2
    assert store.steps("d0") == [] and len(store.steps("d1")) == 1


def test_the_current_and_previous_releases_and_versions_stay(store: StateStore) -> None:
    ids = [store.record_release(Release(None, "fraud", T0 + i, {"model": f"v{i}"}, state=state)).id
           for i, state in enumerate(["healthy", "healthy", "bad", "unknown", "unknown", "unknown"])]
    for i in range(6):
        store.observe_version("fraud", f"v{i}", T0 + i)
    store.mark_bad("fraud", "v0", "rolled back")
    counts = store.prune(CUTOFF)
    kept = [r.id for r in store.releases("fraud")]
    assert kept == [ids[5], ids[4], ids[3], ids[1], ids[0]]  # three newest and the two newest healthy
    # three newest, v2 (rollback's target) and v1 (one more good one); v0 is bad: stays
    assert {v.version for v in store.versions("fraud")} == {"v5", "v4", "v3", "v2", "v1", "v0"}
    assert store.current_version("fraud") == "v5"
    assert counts["releases"] == 1 and counts["versions"] == 0


def test_the_previous_healthy_release_stays_when_the_current_one_is_healthy_too(store: StateStore) -> None:
    states = ["healthy", "bad", "unknown", "unknown", "unknown", "healthy"]
    ids = [store.record_release(Release(None, "fraud", T0 + i, {"model": f"v{i}"}, state=state)).id
           for i, state in enumerate(states)]
    store.prune(CUTOFF)
    assert [r.id for r in store.releases("fraud")] == [ids[5], ids[4], ids[3], ids[0]]


def test_batches_are_bounded_each_its_own_transaction(store: StateStore, monkeypatch) -> None:
    for i in range(25):
        store.append(event("fraud", "state", at=T0 + i))
    store.append(event("fraud", "state", at=NOW))
    sizes: list[int] = []
    real = store.transaction

    def counting():
        sizes.append(0)
        return real()

    original_exec = store._exec

    def exec_(sql, params=()):
        if sql.startswith("DELETE FROM history") and sizes:
            sizes[-1] += len(params)
        return original_exec(sql, params)

    monkeypatch.setattr(store, "transaction", counting)
    monkeypatch.setattr(store, "_exec", exec_)
    assert store.prune(CUTOFF, batch=4)["history"] == 25
    deletes = [n for n in sizes if n]
    assert max(deletes) <= 4 and sum(deletes) == 25 and len(deletes) >= 7


def test_history_stays_append_only_outside_a_prune(backend: Backend, store: StateStore) -> None:
    store.append(event("fraud", "state", at=T0))
    with pytest.raises(backend.refusal):
        backend.execute("DELETE FROM history")
    assert len(kinds(store, "fraud")) == 1
    with pytest.raises(StateError):
        store._exec("DELETE FROM history")


def test_two_stores_on_one_database_prune_idempotently(backend: Backend, store: StateStore) -> None:
    for i in range(30):
        store.append(event("fraud", "state", at=T0 + i))
    store.append(event("fraud", "state", at=NOW))
    with open_store(backend.url) as other:
        first = store.prune(CUTOFF, batch=7)
        second = other.prune(CUTOFF, batch=7)
    assert first["history"] + second["history"] == 30
    assert kinds(store, "fraud") == [("state", NOW)]


def test_a_kept_decision_keeps_its_timeline_marks(store: StateStore) -> None:
    store.create_decision(decision("kept", T0, "succeeded"))  # the newest decision of fraud
    store.append(event("fraud", "timeline", at=T0, decision_id="kept", mark="verified_at"))
    store.append(event("fraud", "timeline", at=T0 + 1, decision_id="gone", mark="verified_at"))
    store.append(event("fraud", "timeline", at=NOW, decision_id="new", mark="verified_at"))
    store.prune(CUTOFF)
    assert sorted(e.data["decision_id"] for e in store.history("fraud")) == ["kept", "new"]


def test_the_previous_good_version_stays_behind_bad_ones(store: StateStore) -> None:
    for i in range(6):
        store.observe_version("fraud", f"v{i}", T0 + i)
    for bad in ("v3", "v4"):
        store.mark_bad("fraud", bad, "rolled back")
    store.prune(CUTOFF)
    # v5 current; v4, v3 bad; v2 the rollback's target, v1 one more good one; v0 goes.
    assert {v.version for v in store.versions("fraud")} == {"v5", "v4", "v3", "v2", "v1"}
