"""Stories of the SQLite state store: what is written survives, what fails leaves no trace.

The stories both stores tell alike (contract.py) run on SQLite too, collected by
test_postgres_store.py; this file keeps SQLite's own."""

from __future__ import annotations

import math
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from watchdog.errors import StateError
from watchdog.state import (
    Decision,
    HistoryEvent,
    SQLiteStateStore,
    StateStore,
    open_store,
)
from watchdog.state.sqlite import SCHEMA_VERSION

T0 = 1_700_000_000.0


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "state.db")


@pytest.fixture
def store(path: str):
    with SQLiteStateStore(path) as opened:
        yield opened


def decision(id_: str, created_at: float = T0, status: str = "pending") -> Decision:
    return Decision(id_, "fraud", "p99-latency", "rollback", created_at, {"value": 0.9}, status)


def event(target: str, kind: str, at: float = T0, **data: object) -> HistoryEvent:
    return HistoryEvent(None, at, target, "p99", {"pod": "a"}, kind, f"{kind} happened", data)


# --- transactions ---------------------------------------------------------------------


def test_nested_transactions_join_the_outer_one(store: StateStore) -> None:
    with store.transaction():
        store.set_meta("kept", "1")
        with pytest.raises(RuntimeError):
            with store.transaction():
                store.set_meta("undone", "1")
                raise RuntimeError("inner fails, outer goes on")
        with store.transaction():
            store.set_meta("inner", "1")

    assert store.get_meta("kept") == "1"
    assert store.get_meta("inner") == "1"
    assert store.get_meta("undone") is None


# --- rule states, holds, meta -----------------------------------------------------------


def test_rule_states_round_trip_and_delete(path: str) -> None:
    a, b = ("fraud", "p99", '{"pod":"a"}'), ("fraud", "p99", '{"pod":"b"}')
    with SQLiteStateStore(path) as store:
        store.save_rule_states({a: '{"s": "pending"}', b: '{"s": "firing"}'}, [])
        store.save_rule_states({a: '{"s": "firing"}'}, [b, ("nobody", "x", "")])

    with SQLiteStateStore(path) as reopened:
        assert reopened.load_rule_states() == {a: '{"s": "firing"}'}


def test_meta_round_trips_and_records_the_schema_version(store: StateStore) -> None:
    store.set_meta("instance", "a")
    store.set_meta("instance", "b")

    assert store.get_meta("instance") == "b"
    assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
    assert store.get_meta("missing") is None


# --- versions ---------------------------------------------------------------------------


def test_observe_version_reports_changes_only(store: StateStore) -> None:
    assert store.current_version("fraud") is None
    assert store.observe_version("fraud", "v1", T0) is True  # first sighting
    assert store.observe_version("fraud", "v1", T0 + 10) is False
    assert store.observe_version("fraud", "v2", T0 + 20) is True
    assert store.observe_version("fraud", "v1", T0 + 30) is True  # back to v1 is a change
    assert store.observe_version("other", "v1", T0 + 30) is True  # targets are independent

    assert store.current_version("fraud") == "v1"
    v1 = store.versions("fraud")[0]
    assert (v1.version, v1.first_seen, v1.last_seen) == ("v1", T0, T0 + 30)


# --- decisions and steps ----------------------------------------------------------------


def test_decision_and_steps_survive_a_crash(path: str) -> None:
    store = SQLiteStateStore(path)
    store.create_decision(decision("d-old", T0))
    store.create_decision(decision("d-new", T0 + 5))
    store.create_decision(decision("d-done", T0 + 1))
    store.set_decision_status("d-old", "running")
    store.start_step("d-old", 0, "webhook", T0 + 1)
    store.finish_step("d-old", 0, "failed", T0 + 2, "HTTP 503")
    retried = store.start_step("d-old", 0, "webhook", T0 + 3)
    store.set_decision_status("d-done", "succeeded", finished_at=T0 + 4)
    store.close()  # "the crash": only what was committed is in the file

    assert (retried.status, retried.attempts, retried.message) == ("started", 2, "")
    with SQLiteStateStore(path) as reopened:
        assert [d.id for d in reopened.unfinished_decisions()] == ["d-old", "d-new"]
        assert reopened.get_decision("d-done") == Decision(
            "d-done", "fraud", "p99-latency", "rollback", T0 + 1, {"value": 0.9},
            "succeeded", T0 + 4,
        )
        [step] = reopened.steps("d-old")
        assert (step.index, step.actuator, step.status) == (0, "webhook", "started")
        assert step.attempts == 2
        reopened.finish_step("d-old", 0, "succeeded", T0 + 6, "rolled back to v1")
        assert reopened.steps("d-old")[0].finished_at == T0 + 6
        assert [d.id for d in reopened.decisions()] == ["d-new", "d-done", "d-old"]
        assert [d.id for d in reopened.decisions(target="nobody")] == []


def test_an_uncommitted_transaction_is_gone_after_a_real_crash(path: str) -> None:
    # The child commits d1, writes d2 inside an open transaction and dies without cleanup.
    script = f"""
import os
from watchdog.state.base import Decision
from watchdog.state.sqlite import SQLiteStateStore
store = SQLiteStateStore({path!r})
store.create_decision(Decision("d1", "fraud", "r", "rollback", 1.0, {{}}, "running"))
with store.transaction():
    store.create_decision(Decision("d2", "fraud", "r", "rollback", 2.0, {{}}, "pending"))
    os._exit(17)
"""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    result = subprocess.run([sys.executable, "-c", script], env=env, timeout=30)
    assert result.returncode == 17

    with SQLiteStateStore(path) as reopened:
        assert [d.id for d in reopened.unfinished_decisions()] == ["d1"]


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
    fraud_alerts_and_states = store.history(target="fraud", kinds={"alert", "state"})
    assert [e.id for e in fraud_alerts_and_states] == [ids[3], ids[0]]
    assert [e.id for e in store.history(since_id=ids[1])] == [ids[3], ids[2]]
    assert [e.id for e in store.history(limit=1)] == [ids[3]]
    newest = store.history()[0]
    assert newest == HistoryEvent(
        ids[3], T0 + 3, "fraud", "p99", {"pod": "a"}, "alert", "alert happened", {}
    )


def test_nan_in_history_data_round_trips_as_null(store: StateStore) -> None:
    store.append(event("fraud", "state", value=math.nan, window=[1.0, math.inf], note="x"))

    [stored] = store.history()
    assert stored.data == {"value": None, "window": [1.0, None], "note": "x"}


def test_history_rows_cannot_be_rewritten_even_by_hand(store: StateStore, path: str) -> None:
    store.append(event("fraud", "alert"))
    other = sqlite3.connect(path)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            other.execute("DELETE FROM history")
    finally:
        other.close()


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


# --- faults -----------------------------------------------------------------------------


@pytest.mark.parametrize("garbage", [b"garbage", b"\x00\xffnot sqlite" * 500])
def test_a_corrupt_file_is_refused_not_reset(path: str, garbage: bytes) -> None:
    Path(path).write_bytes(garbage)

    with pytest.raises(StateError, match="not a model-watchdog state database") as info:
        SQLiteStateStore(path)
    assert "Move it aside" in str(info.value)
    assert Path(path).read_bytes() == garbage


def test_a_foreign_sqlite_database_is_refused(path: str) -> None:
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE customers (id INTEGER)")
    other.close()

    with pytest.raises(StateError, match="not a model-watchdog state database"):
        SQLiteStateStore(path)


def test_a_newer_schema_is_refused(path: str) -> None:
    with SQLiteStateStore(path) as store:
        store.set_meta("schema_version", str(SCHEMA_VERSION + 1))

    with pytest.raises(StateError, match="newer release"):
        SQLiteStateStore(path)


def test_a_store_locked_by_another_process_says_so(path: str) -> None:
    SQLiteStateStore(path).close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with SQLiteStateStore(path, busy_timeout=0.1) as store:
            with pytest.raises(StateError, match="locked by another process"):
                store.append(event("fraud", "alert"))
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_a_new_file_locked_while_opening_says_so(path: str) -> None:
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    other.execute("CREATE TABLE half_made (id INTEGER)")
    try:
        with pytest.raises(StateError, match="locked"):
            SQLiteStateStore(path, busy_timeout=0.1)
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"

    with pytest.raises(StateError, match=f"directory {missing} does not exist"):
        SQLiteStateStore(str(missing / "state.db"))
    assert not missing.exists()


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write to any directory"
)
def test_a_read_only_directory_is_named(tmp_path: Path) -> None:
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(StateError, match="not writable"):
            SQLiteStateStore(str(tmp_path / "state.db"))
    finally:
        tmp_path.chmod(0o755)


def test_a_full_disk_rolls_back_and_says_so(store: SQLiteStateStore) -> None:
    store.append(event("fraud", "alert"))
    # Cap the file at its current size: the next growth fails exactly like a full disk.
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")

    with pytest.raises(StateError, match="disk is full"):
        with store.transaction():
            store.set_meta("first", "written before the disk filled up")
            for n in range(200):
                store.append(event("fraud", "state", note="x" * 1000, n=n))

    assert store.get_meta("first") is None
    assert len(store.history()) == 1
    store.set_meta("after", "small writes still work")  # the store stays usable


def test_a_full_disk_inside_a_nested_block_fails_the_whole_transaction(
    store: SQLiteStateStore,
) -> None:
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages + 2}")

    with pytest.raises(StateError):
        with store.transaction():
            store.set_meta("outer", "1")
            try:
                with store.transaction():
                    for n in range(200):
                        store.append(event("fraud", "state", note="x" * 1000, n=n))
            except StateError:
                pass  # a careless caller goes on after the inner failure
            store.set_meta("after", "1")

    assert store.get_meta("outer") is None
    assert store.get_meta("after") is None
    assert store.history() == []


# --- open_store -------------------------------------------------------------------------


def test_open_store_accepts_paths_and_sqlite_urls(tmp_path: Path) -> None:
    with open_store(str(tmp_path / "a.db")) as plain:
        assert isinstance(plain, SQLiteStateStore)
    with open_store(f"sqlite:///{tmp_path}/b.db") as url:
        assert url.path == str(tmp_path / "b.db")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://watchdog:secret@127.0.0.1:1/state", "cannot connect"),
        ("mysql://watchdog:secret@db/state", "unknown state store URL scheme 'mysql'"),
        ("", "empty"),
    ],
)
def test_open_store_refuses_what_it_cannot_open(url: str, message: str) -> None:
    with pytest.raises(StateError, match=message) as info:
        open_store(url)
    assert "secret" not in str(info.value)
