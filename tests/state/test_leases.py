"""Stories of target ownership: one live replica per target, and takeover when it dies.

The stories shared by both stores (split, release, claims) are in test_store_contract.py; these are the
ones about real processes and sessions dying, which only PostgreSQL can tell.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.servers import PostgresServer
from tests.state.stores import ROOT, T0, decision
from watchdog.clock import FakeClock
from watchdog.errors import StateError
from watchdog.state.decisions import DecisionContext
from watchdog.state import Decision, Replica, SQLiteStateStore, TargetLocks
from watchdog.state.leases import TargetOwnership
from watchdog.state.locks import lock_key
from watchdog.state.postgres import TAKEOVER_BOUND, PostgresStateStore, PostgresTargetLocks
from watchdog.state.sqlite import MIGRATIONS as SQLITE_MIGRATIONS

pytestmark = pytest.mark.timeout(60)
TARGETS = ["fraud", "churn", "search"]
TAKEOVER_LIMIT = 15.0  # seconds; generous: locally a takeover takes well under one


@pytest.fixture
def dsn(postgres: PostgresServer) -> str:
    return postgres.create_database(f"mw_{uuid.uuid4().hex[:16]}")


@pytest.fixture
def admin(dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


def take_over(ownership: TargetOwnership, targets: list[str]) -> float:
    """Seconds until `ownership` owns all `targets`, acquiring every 50 ms."""
    started = time.monotonic()
    while ownership.acquire(targets) != set(targets):
        assert time.monotonic() - started < TAKEOVER_LIMIT, ownership.owners()
        time.sleep(0.05)
    return time.monotonic() - started


def test_lock_keys_are_stable_signed_64_bit_hashes() -> None:
    assert lock_key("fraud") == -1140653235283898811  # never changes: replicas must agree
    assert lock_key("fraud") == int.from_bytes(
        hashlib.sha256(b"fraud").digest()[:8], "big", signed=True)
    assert len({lock_key(t) for t in TARGETS}) == len(TARGETS)
    assert all(-(2**63) <= lock_key(t) < 2**63 for t in [*TARGETS, "", "ü" * 1000])
    assert TAKEOVER_BOUND == 11  # keepalive idle 5 s + 3 probes x 2 s, as docs/replicas.md says


def test_a_replica_whose_session_is_terminated_loses_its_targets_to_the_other(
    dsn: str, admin: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    with (PostgresStateStore(dsn) as a_store, PostgresStateStore(dsn) as b_store,
          TargetOwnership(a_store, "mw-a") as a, TargetOwnership(b_store, "mw-b") as b):
        assert a.acquire(TARGETS) == set(TARGETS)
        assert b.acquire(TARGETS) == set()
        assert b.owners() == {t: "mw-a" for t in TARGETS}
        [(pid,)] = admin.execute(
            "SELECT backend_pid FROM replicas WHERE replica_id = 'mw-a'").fetchall()

        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        took = take_over(b, TARGETS)
        with caplog.at_level(logging.ERROR, logger="watchdog.state.leases"):
            assert a.still_owned("fraud") is False

        assert took < TAKEOVER_LIMIT
        assert a.owned() == set()
        assert "mw-a lost ownership of churn, fraud, search" in caplog.text
        assert a.owners() == {t: "mw-b" for t in TARGETS}
        assert a.acquire(TARGETS + ["ads"]) == {"ads"}  # a new session; only what is free
        assert a_store.get_meta("schema_version") is not None  # the store itself goes on


def test_a_killed_replica_process_frees_its_targets_for_the_survivor(dsn: str) -> None:
    child = f"""
import sys, time
from watchdog.state.leases import TargetOwnership
ownership = TargetOwnership({dsn!r}, "mw-child")
print(",".join(sorted(ownership.acquire({TARGETS!r}))), flush=True)
time.sleep(60)
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", child], env=env, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "churn,fraud,search"
        with TargetOwnership(dsn, "mw-survivor") as survivor:
            assert survivor.acquire(TARGETS) == set()
            assert set(survivor.owners().values()) == {"mw-child"}

            proc.kill()  # SIGKILL: no cleanup, only the kernel closing the socket
            proc.wait(10)
            took = take_over(survivor, TARGETS)

            assert took < TAKEOVER_LIMIT
            assert survivor.owners() == {t: "mw-survivor" for t in TARGETS}
    finally:
        proc.kill()
        proc.wait(10)


def test_only_the_owner_wins_a_concurrent_claim_and_the_successor_resumes(
    dsn: str, admin: psycopg.Connection
) -> None:
    with (PostgresStateStore(dsn) as a_store, PostgresStateStore(dsn) as b_store,
          TargetOwnership(a_store, "mw-a") as a, TargetOwnership(b_store, "mw-b") as b):
        a_store.create_decision(decision("d1", status="running"))
        a.acquire(["fraud"])
        b.acquire(["fraud"])
        barrier = threading.Barrier(2)
        won: dict[str, bool] = {}

        def claim(store: PostgresStateStore, replica: str) -> None:
            barrier.wait()
            won[replica] = store.claim_decision("d1", replica, T0)

        threads = [threading.Thread(target=claim, args=args)
                   for args in ((a_store, "mw-a"), (b_store, "mw-b"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert won == {"mw-a": True, "mw-b": False}

        admin.execute("SELECT pg_terminate_backend(backend_pid) FROM replicas "
                      "WHERE replica_id = 'mw-a'")  # mw-a dies in the middle of d1
        take_over(b, ["fraud"])
        assert b_store.claim_decision("d1", "mw-b", T0 + 5) is True
        assert a_store.claim_decision("d1", "mw-a", T0 + 6) is False
        resumed = b_store.get_decision("d1")
        assert (resumed.claimed_by, resumed.claimed_at) == ("mw-b", T0 + 5)  # type: ignore[union-attr]


def test_replicas_record_heartbeats(dsn: str) -> None:
    clock = FakeClock(T0)
    with PostgresStateStore(dsn) as store, TargetOwnership(store, "mw-a", clock=clock) as a:
        a.acquire(["fraud"])
        clock.advance(30)
        a.acquire(["fraud"])

        [replica] = store.replicas()
        assert (replica.replica_id, replica.pid, replica.started_at) == ("mw-a", os.getpid(), T0)
        assert replica.last_seen == T0 + 30


def test_the_lock_session_detects_dead_peers_and_never_idles_out(dsn: str) -> None:
    # The takeover bound rests on these server settings of the lock session (private peek).
    with TargetOwnership(dsn, "mw-a") as a:
        a.acquire(["fraud"])
        conn = a._locks._conn  # type: ignore[union-attr]
        shown = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in (
            "tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count",
            "idle_session_timeout", "statement_timeout")}

    assert shown == {"tcp_keepalives_idle": "5", "tcp_keepalives_interval": "2",
                     "tcp_keepalives_count": "3", "idle_session_timeout": "0",
                     "statement_timeout": "10s"}


class TransactionPooledLocks(PostgresTargetLocks):
    """What PgBouncer's pool_mode=transaction does: each transaction may run on another
    server session, here a brand-new one every statement."""

    def _execute(self, sql, params=None):  # type: ignore[no-untyped-def]
        if self._conn is not None:
            old, self._conn = self._conn, self._store._connect("pooled")
            old.close()
        return super()._execute(sql, params)


class BehindTransactionPooler(PostgresStateStore):
    def open_target_locks(self, replica: Replica) -> TargetLocks:
        return TransactionPooledLocks(self, replica)


def test_a_transaction_pooled_lock_connection_is_refused(dsn: str) -> None:
    with BehindTransactionPooler(dsn) as store, TargetOwnership(store, "mw-a") as a:
        with pytest.raises(StateError, match="pool_mode=session") as info:
            a.acquire(["fraud"])

        assert "transaction pooling would let two replicas own the same target" in str(info.value)
        assert a.owned() == set()
        assert store.target_owners() == {}


def test_sqlite_means_one_daemon_owning_everything(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    with SQLiteStateStore(path) as store, TargetOwnership(store, "mw-a") as a:
        assert a.acquire(TARGETS) == set(TARGETS)
        assert a.still_owned("fraud")
        store.close()  # the process's locks end with its store
        assert not a.still_owned("fraud")


def test_a_version_1_sqlite_file_gains_claims_and_replicas(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    old = sqlite3.connect(path)
    for statement in SQLITE_MIGRATIONS[0]:
        old.execute(statement)
    old.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    old.execute("INSERT INTO decisions VALUES ('d1', 'fraud', 'r', 'rollback', 1.0, '{}', "
                "'running', NULL)")
    old.commit()
    old.close()

    with SQLiteStateStore(path) as store:
        assert store.get_decision("d1") == Decision("d1", "fraud", "r", "rollback", 1.0, DecisionContext(timed=False),
                                                    "running")
        assert store.claim_decision("d1", "mw-a", T0) is True
        assert store.replicas() == []
