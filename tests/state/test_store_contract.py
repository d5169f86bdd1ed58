"""Stories every StateStore must tell alike, run on SQLite and on a real PostgreSQL.

Each test gets an empty store of its own: a fresh SQLite file or a fresh PostgreSQL
database. Stories only one engine can tell (flock, a file replaced, advisory locks, lost
connections) are in test_sqlite_store.py, test_postgres_store.py and test_leases.py.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.state.stores import ENGINES, ROOT, T0, Backend, decision, event, new_backend
from watchdog.errors import StateError
from watchdog.state import (
    AlertQueue,
    Decision,
    History,
    HistoryEvent,
    Hold,
    Holds,
    Incidents,
    Journal,
    Meta,
    Releases,
    Replicas,
    RuleStates,
    SQLiteStateStore,
    StateStore,
    Versions,
    open_store,
)
from watchdog.state import postgres as pg_module
from watchdog.state import sqlite as sqlite_module
from watchdog.state.base import Release, Step
from watchdog.state.decisions import DecisionContext
from watchdog.state.leases import TargetOwnership

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=ENGINES)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return new_backend(request.param, request, tmp_path)


@pytest.fixture
def url(backend: Backend) -> str:
    return backend.url


@pytest.fixture
def store(url: str) -> Iterator[StateStore]:
    with open_store(url) as opened:
        yield opened


@pytest.fixture
def reopen(url: str) -> Iterator[Callable[[], StateStore]]:
    opened: list[StateStore] = []

    def open_again() -> StateStore:
        opened.append(open_store(url))
        return opened[-1]

    yield open_again
    for each in opened:
        each.close()


# --- the parts of the interface -------------------------------------------------------


def test_the_small_protocols_together_are_the_whole_store_without_overlap() -> None:
    parts = [RuleStates, Holds, Versions, Journal, History, Releases, Replicas, Incidents,
             AlertQueue, Meta]
    methods = [name for part in parts for name in part.__abstractmethods__ - {"transaction"}]

    assert len(methods) == len(set(methods)) == 36  # History.prune (retention) joined them
    assert set(methods) | {"transaction", "close"} == StateStore.__abstractmethods__
    for store_class in (SQLiteStateStore, pg_module.PostgresStateStore):
        assert set(parts) <= set(store_class.__mro__)
        assert not store_class.__abstractmethods__


# --- transactions ---------------------------------------------------------------------


def test_a_transaction_that_raises_leaves_nothing_written(store: StateStore) -> None:
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.save_rule_states({("fraud", "r", "{}"): '{"state": "firing"}'}, [])
            store.create_decision(decision("d1"))
            store.append(event("fraud", "decision"))
            raise RuntimeError("boom")

    assert store.load_rule_states() == {}
    assert store.get_decision("d1") is None
    assert store.history() == []


def test_nested_transactions_join_the_outer_one(store: StateStore) -> None:
    with store.transaction():
        store.set_meta("kept", "1")
        with pytest.raises(RuntimeError):
            with store.transaction():
                store.set_meta("undone", "1")
                raise RuntimeError("inner fails, outer goes on")
        with pytest.raises(StateError, match="already exists"):
            store.create_decision(decision("d1"))
            store.create_decision(decision("d1"))  # a failed write inside the outer block
        with store.transaction():
            store.set_meta("inner", "1")

    assert store.get_meta("kept") == "1"
    assert store.get_meta("inner") == "1"
    assert store.get_meta("undone") is None
    assert store.get_decision("d1") is not None


# --- rule states, holds, meta -----------------------------------------------------------


def test_rule_states_round_trip_and_delete(store: StateStore, reopen) -> None:
    a, b = ("fraud", "p99", '{"pod":"a"}'), ("fraud", "p99", '{"pod":"b"}')
    store.save_rule_states({a: '{"s": "pending"}', b: '{"s": "firing"}'}, [])
    store.save_rule_states({a: '{"s": "firing"}'}, [b, ("nobody", "x", "")])
    store.close()

    assert reopen().load_rule_states() == {a: '{"s": "firing"}'}


def test_holds_are_put_replaced_and_deleted(store: StateStore) -> None:
    store.put_hold(Hold("fraud", T0, "d1", "v2", "rolled back"))
    store.put_hold(Hold("fraud", T0 + 1, None, None, "operator hold"))

    assert store.holds() == {"fraud": Hold("fraud", T0 + 1, None, None, "operator hold")}
    assert store.delete_hold("fraud") == Hold("fraud", T0 + 1, None, None, "operator hold")
    assert store.delete_hold("fraud") is None
    assert store.holds() == {}


def test_meta_round_trips_and_both_stores_share_schema_versions(store: StateStore) -> None:
    store.set_meta("instance", "a")
    store.set_meta("instance", "b")

    assert store.get_meta("instance") == "b"
    assert sqlite_module.SCHEMA_VERSION == pg_module.SCHEMA_VERSION
    assert store.get_meta("schema_version") == str(sqlite_module.SCHEMA_VERSION)
    assert store.get_meta("missing") is None


def test_values_that_look_like_sql_are_bound_not_spliced(store: StateStore) -> None:
    sly = "it's 100% ? %s done'); DROP TABLE holds; --"
    store.set_meta(sly, sly)
    store.put_hold(Hold(sly, T0, None, sly, sly))
    store.append(HistoryEvent(None, T0, sly, sly, {sly: sly}, sly, sly, {"why": sly}))

    assert store.get_meta(sly) == sly
    assert store.holds() == {sly: Hold(sly, T0, None, sly, sly)}
    assert [(e.target, e.series, e.data) for e in store.history(sly, kinds=[sly])] == [
        (sly, {sly: sly}, {"why": sly})]


# --- versions ---------------------------------------------------------------------------


def test_observe_version_reports_changes_only(store: StateStore) -> None:
    assert store.current_version("fraud") is None
    assert store.observe_version("fraud", "v1", T0) is True
    assert store.observe_version("fraud", "v1", T0 + 10) is False
    assert store.observe_version("fraud", "v2", T0 + 20) is True
    assert store.observe_version("fraud", "v1", T0 + 30) is True
    assert store.observe_version("other", "v1", T0 + 30) is True

    assert store.current_version("fraud") == "v1"
    v1 = store.versions("fraud")[0]
    assert (v1.version, v1.first_seen, v1.last_seen) == ("v1", T0, T0 + 30)


def test_versions_of_many_targets_read_at_once_equal_each_read_alone(store: StateStore) -> None:
    for i, (target, version) in enumerate([("fraud", "v1"), ("fraud", "v2"), ("b", "x"), ("fraud", "v1"),
                                           ("c", "y"), ("b", "z"), ("b", "x")]):
        store.observe_version(target, version, T0 + 10 * (i // 2))  # equal times: the order falls to seq
    store.mark_bad("b", "z", "why")
    assert store.versions_of(["fraud", "b", "none"]) == {t: store.versions(t) for t in ("fraud", "b", "none")}


def test_current_versions_of_many_targets_read_at_once_equal_each_read_alone(store: StateStore) -> None:
    for i, (target, version) in enumerate([("fraud", "v1"), ("fraud", "v2"), ("b", "x"), ("fraud", "v1"),
                                           ("c", "y"), ("b", "z"), ("b", "x"), ("c", "y")]):
        store.observe_version(target, version, T0 + 10 * (i // 2))  # back to an older version, and equal times
    wanted = ["fraud", "b", "c", "none"]
    assert store.current_versions(wanted) == {t: store.current_version(t) for t in wanted} \
        == {"fraud": "v1", "b": "x", "c": "y", "none": None}
    assert list(store.current_versions(wanted)) == wanted


def test_mark_bad_shows_in_versions(store: StateStore) -> None:
    store.observe_version("fraud", "v1", T0)
    store.observe_version("fraud", "v2", T0 + 10)
    store.mark_bad("fraud", "v2", "p99 latency 900ms > 500ms")

    assert [(v.version, v.bad, v.bad_reason) for v in store.versions("fraud")] == [
        ("v2", True, "p99 latency 900ms > 500ms"),
        ("v1", False, ""),
    ]
    with pytest.raises(StateError, match="never observed"):
        store.mark_bad("fraud", "v9", "unknown")


# --- decisions and steps ----------------------------------------------------------------


def test_decision_and_steps_survive_a_restart(store: StateStore, reopen) -> None:
    store.create_decision(decision("d-old", T0))
    store.create_decision(decision("d-new", T0 + 5))
    store.create_decision(decision("d-done", T0 + 1))
    store.create_decision(decision("d-same-time", T0 + 5))
    store.set_decision_status("d-old", "running")
    store.start_step("d-old", 0, "webhook", T0 + 1)
    store.finish_step("d-old", 0, "failed", T0 + 2, "HTTP 503")
    retried = store.start_step("d-old", 0, "webhook", T0 + 3)
    store.set_decision_status("d-done", "succeeded", finished_at=T0 + 4)
    store.close()

    assert (retried.status, retried.attempts, retried.message) == ("started", 2, "")
    reopened = reopen()
    assert [d.id for d in reopened.unfinished_decisions()] == ["d-old", "d-new", "d-same-time"]
    assert reopened.get_decision("d-done") == Decision(
        "d-done", "fraud", "p99-latency", "rollback", T0 + 1, DecisionContext(severity="critical"), "succeeded", T0 + 4
    )
    [step] = reopened.steps("d-old")
    assert (step.index, step.actuator, step.status, step.attempts) == (0, "webhook", "started", 2)
    reopened.finish_step("d-old", 0, "succeeded", T0 + 6, "rolled back to v1")
    assert reopened.steps("d-old")[0].finished_at == T0 + 6
    assert [d.id for d in reopened.decisions()] == ["d-same-time", "d-new", "d-done", "d-old"]
    assert [d.id for d in reopened.decisions(target="nobody")] == []


def test_an_uncommitted_transaction_is_gone_after_a_real_crash(url: str, reopen) -> None:
    # The child commits d1, writes d2 inside an open transaction and dies without cleanup.
    script = f"""
import os
from watchdog.state import open_store
from watchdog.state.base import Decision
from watchdog.state.decisions import DecisionContext
store = open_store({url!r})
store.create_decision(Decision("d1", "fraud", "r", "rollback", 1.0, DecisionContext(), "running"))
with store.transaction():
    store.create_decision(Decision("d2", "fraud", "r", "rollback", 2.0, DecisionContext(), "pending"))
    os._exit(17)
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", script], env=env, timeout=30)
    assert result.returncode == 17

    assert [d.id for d in reopen().unfinished_decisions()] == ["d1"]


def test_decision_ids_are_unique_and_steps_need_a_decision(store: StateStore) -> None:
    store.create_decision(decision("d1"))

    with pytest.raises(StateError, match="already exists"):
        store.create_decision(decision("d1"))
    with pytest.raises(StateError, match="does not exist"):
        store.start_step("nope", 0, "webhook", T0)
    with pytest.raises(StateError, match="never started"):
        store.finish_step("d1", 3, "succeeded", T0, "")
    with pytest.raises(StateError, match="does not exist"):
        store.set_decision_status("nope", "failed")
    with pytest.raises(ValueError, match="unknown decision status"):
        store.set_decision_status("d1", "exploded")
    with pytest.raises(StateError, match="does not exist"):
        store.claim_decision("nope", "mw-1", T0)


# --- history ----------------------------------------------------------------------------


def test_history_is_newest_first_and_filtered(store: StateStore) -> None:
    ids = [
        store.append(event("fraud", "state", T0)),
        store.append(event("churn", "alert", T0 + 1)),
        store.append(event("fraud", "decision", T0 + 2)),
        store.append(event("fraud", "alert", T0 + 3)),
    ]

    assert ids == sorted(ids) and len(set(ids)) == 4
    assert [e.id for e in store.history()] == ids[::-1]
    assert [e.id for e in store.history(target="fraud")] == [ids[3], ids[2], ids[0]]
    assert [e.id for e in store.history(kinds=["alert"])] == [ids[3], ids[1]]
    assert [e.id for e in store.history(target="fraud", kinds={"alert", "state"})] == [
        ids[3], ids[0]]
    assert store.history(kinds=[]) == []
    assert [e.id for e in store.history(since_id=ids[1])] == [ids[3], ids[2]]
    assert [e.id for e in store.history(limit=1)] == [ids[3]]
    assert store.history()[0] == HistoryEvent(
        ids[3], T0 + 3, "fraud", "p99", {"pod": "a"}, "alert", "alert happened", {}
    )


def test_history_rows_cannot_be_rewritten_even_by_hand(store: StateStore, backend: Backend) -> None:
    store.append(event("fraud", "alert"))
    rewrites = ["DELETE FROM history", "UPDATE history SET message = 'x'"]
    if backend.engine == "postgresql":
        rewrites.append("TRUNCATE history")  # SQLite has no TRUNCATE

    for statement in rewrites:
        with pytest.raises(backend.refusal, match="append-only"):
            backend.execute(statement)
    assert len(store.history()) == 1


def test_nan_round_trips_as_null(store: StateStore) -> None:
    store.append(event("fraud", "state", value=math.nan, window=[1.0, math.inf], note="x"))
    store.create_decision(Decision("d1", "fraud", "r", "rollback", T0, DecisionContext(approve_by=-math.inf), "running"))

    [stored] = store.history()
    assert stored.data == {"value": None, "window": [1.0, None], "note": "x"}
    assert store.get_decision("d1").context == DecisionContext(approve_by=None)  # type: ignore[union-attr]


def test_a_reader_thread_and_the_writer_do_not_trip_over_each_other(store: StateStore) -> None:
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(200):
                store.history(limit=5)
                store.unfinished_decisions()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    for n in range(200):
        with store.transaction():
            store.append(event("fraud", "state", T0 + n))
            store.save_rule_states({("fraud", "r", str(n)): "{}"}, [])
    reader.join()

    assert errors == []
    assert len(store.history(limit=1000)) == 200


# --- faults and lifecycle ---------------------------------------------------------------


def test_a_newer_schema_is_refused(store: StateStore, reopen) -> None:
    store.set_meta("schema_version", str(sqlite_module.SCHEMA_VERSION + 1))
    store.close()

    with pytest.raises(StateError, match="newer release"):
        reopen()


def test_a_foreign_database_is_refused(backend: Backend) -> None:
    backend.execute("CREATE TABLE customers (id INTEGER)")

    with pytest.raises(StateError, match="not a model-watchdog state database") as info:
        open_store(backend.url)
    assert "customers" in str(info.value)


def test_a_closed_store_says_so(store: StateStore) -> None:
    store.close()
    store.close()

    with pytest.raises(StateError, match="closed"):
        store.history()


# --- replicas: claims, ownership --------------------------------------------------------


def test_only_the_targets_owner_claims_a_decision_and_a_successor_takes_over(
    store: StateStore,
) -> None:
    store.create_decision(decision("d1", status="running"))
    store.create_decision(decision("d-done", status="succeeded"))
    first, second = TargetOwnership(store, "mw-1"), TargetOwnership(store, "mw-2")
    try:
        assert first.acquire(["fraud"]) == {"fraud"}
        assert second.acquire(["fraud"]) == set()

        assert store.claim_decision("d1", "mw-2", T0) is False  # mw-1 owns the target
        assert store.claim_decision("d1", "mw-1", T0 + 1) is True
        assert store.claim_decision("d1", "mw-1", T0 + 2) is True  # a resume by the claimer
        assert store.claim_decision("d-done", "mw-1", T0) is False  # nothing left to do
        claimed = store.get_decision("d1")
        assert (claimed.claimed_by, claimed.claimed_at) == ("mw-1", T0 + 2)  # type: ignore[union-attr]

        first.release_all()  # mw-1 is gone; its claim no longer stands in the way
        assert second.acquire(["fraud"]) == {"fraud"}
        assert store.claim_decision("d1", "mw-2", T0 + 3) is True
        assert store.get_decision("d1").claimed_by == "mw-2"  # type: ignore[union-attr]
        assert [d.id for d in store.unfinished_decisions()] == ["d1"]
    finally:
        first.close()
        second.close()


def test_two_ownerships_split_targets_and_report_owners(store: StateStore) -> None:
    targets = ["fraud", "churn", "search", "ads"]
    with TargetOwnership(store, "mw-1") as first, TargetOwnership(store, "mw-2") as second:
        mine = first.acquire(targets[:2])
        theirs = second.acquire(targets)

        assert mine == {"fraud", "churn"} and theirs == {"search", "ads"}
        assert first.owned() == mine and first.still_owned("fraud")
        assert not first.still_owned("search")
        assert store.target_owners() == {"ads": "mw-2", "churn": "mw-1", "fraud": "mw-1",
                                         "search": "mw-2"}
        assert first.owners() == store.target_owners()
        assert {r.replica_id for r in store.replicas()} == {"mw-1", "mw-2"}

        first.release_all()
        assert first.owned() == set() and not first.still_owned("fraud")
        assert second.acquire(targets) == set(targets)
    assert store.target_owners() == {}


def test_releases_are_appended_newest_first_and_marked(store: StateStore) -> None:
    first = store.record_release(Release(None, "fraud", T0, {"model": "fraud:6", "schema": "v13"}, "initial"))
    second = store.record_release(Release(None, "fraud", T0 + 60, {"model": "fraud:7", "schema": "v14"}, origin="api"))
    store.record_release(Release(None, "churn", T0 + 30, {"model": "churn:1"}))
    assert [r.id for r in store.releases("fraud")] == [second.id, first.id]
    assert store.releases("fraud")[1].components == {"model": "fraud:6", "schema": "v13"}
    store.set_release_state(first.id, "healthy")  # type: ignore[arg-type]
    store.set_release_state(second.id, "bad")  # type: ignore[arg-type]
    assert [r.state for r in store.releases("fraud")] == ["bad", "healthy"]
    with pytest.raises(StateError):
        store.set_release_state(9999, "healthy")
    with pytest.raises(ValueError):
        store.set_release_state(first.id, "great")  # type: ignore[arg-type]


def test_current_releases_of_many_targets_read_at_once_equal_each_read_alone(store: StateStore) -> None:
    assert store.current_releases(["fraud"]) == {}
    for i, (target, model) in enumerate([("fraud", "6"), ("churn", "1"), ("fraud", "7"), ("ads", "3"), ("churn", "2")]):
        store.record_release(Release(None, target, T0 + 60 - i, {"model": f"{target}:{model}"}))  # ids, not times, order
    store.set_release_state(store.releases("fraud")[0].id, "healthy")  # type: ignore[arg-type, union-attr]
    one_by_one = {t: store.releases(t, limit=1)[0] for t in ("fraud", "churn")}
    assert store.current_releases(["fraud", "churn", "none"]) == one_by_one
    assert one_by_one["fraud"].components == {"model": "fraud:7"} and one_by_one["fraud"].state == "healthy"


def test_incidents_are_saved_replaced_and_survive_a_restart(store: StateStore, reopen) -> None:
    assert store.incidents() == {} and store.incident("fraud") is None
    store.save_incident("fraud", '{"phase": "blocked"}', T0)
    store.save_incident("fraud", '{"phase": "acting"}', T0 + 1)
    store.save_incident("churn", '{"phase": "clear"}', T0 + 1)
    with store.transaction():
        assert store.incident("fraud", for_update=True) == '{"phase": "acting"}'
    again = reopen()
    assert again.incidents() == {"fraud": '{"phase": "acting"}', "churn": '{"phase": "clear"}'}


def test_queued_alerts_survive_a_restart_and_go_to_one_claimant_at_a_time(store: StateStore, reopen) -> None:
    store.enqueue_alert("ops", '{"a": 1}', T0)
    store.enqueue_alert("pager", '{"a": 2}', T0)
    again = reopen()
    first = again.claim_alerts("n1", T0 + 1, limit=1)
    assert [(q.alerter, q.alert) for q in first] == [("ops", '{"a": 1}')]
    rest = store.claim_alerts("n2", T0 + 1)
    assert [(q.alerter, q.alert) for q in rest] == [("pager", '{"a": 2}')]  # not n1's
    assert store.claim_alerts("n2", T0 + 2) == []
    again.delete_alert(first[0].id)
    # n2 died without delivering: after `stale_after` its claim goes to someone else.
    assert [q.id for q in store.claim_alerts("n3", T0 + 100, stale_after=60)] == [rest[0].id]
    store.delete_alert(rest[0].id)
    store.delete_alert(rest[0].id)  # twice is harmless
    assert store.claim_alerts("n3", T0 + 500, stale_after=60) == []


FIRING, RESOLVED = '{"status": "firing"}', '{"status": "resolved"}'


def test_a_failed_delivery_waits_for_its_retry_and_keeps_its_key_in_order_across_a_restart(
        store: StateStore, reopen) -> None:
    store.enqueue_alert("ops", FIRING, T0, "fraud/p99")
    store.enqueue_alert("ops", RESOLVED, T0 + 1, "fraud/p99")
    store.enqueue_alert("pager", FIRING, T0 + 1, "fraud/p99")  # another alerter: its own order
    store.enqueue_alert("ops", FIRING, T0 + 1, "churn/p99")  # another key: not held back
    claimed = store.claim_alerts("n1", T0 + 2)
    assert [(q.alerter, q.alert, q.attempts) for q in claimed] == [
        ("ops", FIRING, 0), ("pager", FIRING, 0), ("ops", FIRING, 0)]  # the resolve waits behind its firing
    firing = claimed[0]
    for q in claimed[1:]:
        store.delete_alert(q.id)
    store.retry_alert(firing.id, T0 + 30, "503 Service Unavailable")
    again = reopen()  # a restart between two attempts
    assert again.claim_alerts("n2", T0 + 29) == []  # not due yet, and the resolve may not overtake it
    [retried] = again.claim_alerts("n2", T0 + 30)
    assert (retried.id, retried.attempts, retried.queued_at) == (firing.id, 1, T0)
    again.delete_alert(retried.id)
    assert [q.alert for q in again.claim_alerts("n2", T0 + 31)] == [RESOLVED]


def test_a_retry_planned_further_ahead_than_retry_within_is_due_now(store: StateStore) -> None:
    """The wall clock stepped back an hour after the retry was planned (runtime/notify.py)."""
    store.enqueue_alert("ops", FIRING, T0, "fraud/p99")
    [first] = store.claim_alerts("n1", T0 + 1)
    store.retry_alert(first.id, T0 + 6, "503 Service Unavailable")
    stepped = T0 + 2 - 3600
    assert store.claim_alerts("n1", stepped) == []  # without retry_within: waits the hour
    [retried] = store.claim_alerts("n1", stepped, retry_within=301)
    assert (retried.id, retried.attempts) == (first.id, 1)
    store.retry_alert(retried.id, T0 + 10, "503 Service Unavailable")
    assert store.claim_alerts("n1", T0 + 3, retry_within=301) == []  # 7 s ahead: a retry not yet due


def test_a_retry_is_replaced_by_a_newer_alert_of_its_key_with_the_same_status(store: StateStore) -> None:
    store.enqueue_alert("ops", FIRING, T0, "fraud/p99")
    [first] = store.claim_alerts("n1", T0 + 1)
    store.retry_alert(first.id, T0 + 60, "timeout")
    store.enqueue_alert("ops", '{"status": "firing", "value": 2}', T0 + 10, "fraud/p99")  # newer news
    store.enqueue_alert("ops", RESOLVED, T0 + 11, "fraud/p99")
    store.enqueue_alert("ops", FIRING, T0 + 12, "fraud/p99")  # firing, resolved, firing: all three stay
    claimed = store.claim_alerts("n1", T0 + 13)
    assert [q.alert for q in claimed] == ['{"status": "firing", "value": 2}']
    store.delete_alert(claimed[0].id)
    [resolved] = store.claim_alerts("n1", T0 + 14)
    store.delete_alert(resolved.id)
    assert [q.alert for q in store.claim_alerts("n1", T0 + 15)] == [FIRING]


# --- databases written by earlier releases ----------------------------------------------


@pytest.mark.parametrize("schema_version", [1, 4])
def test_a_database_an_earlier_release_wrote_opens_migrated_with_every_row(
    backend: Backend, schema_version: int
) -> None:
    # Written by the code of that release (old_databases/make.py): schema 1 is the first
    # release's, schema 4 the last one before both stores shared their SQL.
    backend.load_old(schema_version)

    with open_store(backend.url) as store:
        assert store.get_meta("schema_version") == str(sqlite_module.SCHEMA_VERSION)
        assert store.load_rule_states() == {("fraud", "p99", '{"pod":"a"}'): '{"state":"firing"}'}
        assert store.holds() == {"fraud": Hold("fraud", T0, "d1", "v2", "rolled back")}
        assert [(v.version, v.bad, v.bad_reason) for v in store.versions("fraud")] == [
            ("v2", True, "p99 900ms"), ("v1", False, "")]
        assert store.current_version("fraud") == "v2"
        assert [d.id for d in store.unfinished_decisions()] == ["d1"]
        assert store.get_decision("d0") == Decision(
            "d0", "fraud", "p99", "rollback", T0 + 5, DecisionContext.from_json({}), "succeeded", T0 + 6)
        assert store.get_decision("d1").context == DecisionContext.from_json({"value": 0.9})  # type: ignore[union-attr]
        assert store.steps("d1") == [Step("d1", 0, "webhook", "started", T0 + 23, None, "", 2)]
        [old_event] = store.history()
        assert (old_event.series, old_event.message, old_event.data) == (
            {"pod": "a"}, "rolling back", {"value": 0.9})
        if schema_version == 4:
            assert store.get_decision("d1").claimed_by == "mw-1"  # type: ignore[union-attr]
            [release] = store.releases("fraud")
            assert (release.components, release.state) == ({"model": "fraud:7"}, "bad")
            assert store.incidents() == {"fraud": '{"phase": "acting"}'}
            assert [r.replica_id for r in store.replicas()] == ["mw-1"]

        # New rows go on where the old ones stop: ids and versions keep increasing.
        assert store.observe_version("fraud", "v3", T0 + 30) is True
        assert store.current_version("fraud") == "v3"
        assert store.append(event("fraud", "state", T0 + 30)) > old_event.id  # type: ignore[operator]
        store.create_decision(decision("d2", T0 + 30))
        assert store.claim_decision("d2", "mw-2", T0 + 31) is True
        assert [d.id for d in store.decisions()] == ["d2", "d1", "d0"]
        added = store.record_release(Release(None, "fraud", T0 + 30, {"model": "fraud:8"}))
        assert [r.id for r in store.releases("fraud")][0] == added.id
        store.enqueue_alert("pager", '{"a": 2}', T0 + 30)
        expected = ["ops", "pager"] if schema_version == 4 else ["pager"]
        assert [q.alerter for q in store.claim_alerts("n1", T0 + 31)] == expected



def test_a_claimant_still_delivering_renews_its_claims_and_only_its_own(store: StateStore, reopen) -> None:
    store.enqueue_alert("ops", FIRING, T0, "fraud/p99")
    store.enqueue_alert("ops", FIRING, T0, "churn/p99")
    mine = store.claim_alerts("n1", T0 + 1)
    assert len(mine) == 2
    store.retry_alert(mine[1].id, T0 + 2, "503")  # given back: no longer n1's to renew
    store.renew_alert_claims("n1", [q.id for q in mine], T0 + 100)
    other = reopen()
    # 110 s after the claim, but 10 s after its renewal: n1 is alive, only the given-back one is free
    assert [q.id for q in other.claim_alerts("n2", T0 + 110, stale_after=60)] == [mine[1].id]
    store.renew_alert_claims("n1", [], T0 + 120)  # nothing to renew: harmless
    assert [q.id for q in other.claim_alerts("n3", T0 + 161, stale_after=60)] == [mine[0].id]
