"""Stories only the PostgreSQL state store tells; the shared ones are in test_store_contract.py."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from tests.servers import PostgresServer, free_port
from tests.state.stores import T0, event
from watchdog.errors import StateError
from watchdog.state import open_store
from watchdog.state.postgres import SCHEMA_VERSION, PostgresStateStore

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def dsn(postgres: PostgresServer) -> str:
    return postgres.create_database(f"mw_{uuid.uuid4().hex[:16]}")


@pytest.fixture
def pg(dsn: str) -> Iterator[PostgresStateStore]:
    with PostgresStateStore(dsn) as opened:
        yield opened


@pytest.fixture
def admin(dsn: str) -> Iterator[psycopg.Connection]:
    """A hand-held connection to the same database, as an operator's psql would be."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


def test_open_store_opens_postgresql_urls(dsn: str) -> None:
    with open_store(dsn) as store:
        assert isinstance(store, PostgresStateStore)
        assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
    with open_store(dsn.replace("postgresql://", "postgresql+psycopg://")) as sqlalchemy_style:
        assert isinstance(sqlalchemy_style, PostgresStateStore)


def test_an_unreachable_server_is_named_without_the_password() -> None:
    url = f"postgresql://watchdog:hunter2secret@127.0.0.1:{free_port()}/state?sslmode=disable"

    with pytest.raises(StateError, match="cannot connect to the state database") as info:
        open_store(url)
    assert "hunter2secret" not in str(info.value)
    assert "postgresql://watchdog:***@127.0.0.1" in str(info.value)


def test_three_replicas_creating_the_schema_at_once_all_succeed(dsn: str) -> None:
    barrier = threading.Barrier(3)
    results: list[object] = []

    def start() -> None:
        barrier.wait()
        try:
            with PostgresStateStore(dsn) as store:
                results.append(store.get_meta("schema_version"))
        except BaseException as exc:  # reported below
            results.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == [str(SCHEMA_VERSION)] * 3


def test_a_connection_lost_between_transactions_is_reopened(
    pg: PostgresStateStore, admin: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    pg.set_meta("before", "1")
    [(pid,)] = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'model-watchdog' "
        "AND datname = current_database()").fetchall()

    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with caplog.at_level(logging.WARNING, logger="watchdog.state.postgres"):
        assert pg.get_meta("before") == "1"  # a read: reconnected and retried
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE application_name = 'model-watchdog' AND datname = current_database()")
        pg.set_meta("after", "1")  # a write: its BEGIN reconnects

    assert pg.get_meta("after") == "1"
    assert "reconnecting" in caplog.text and "connection was lost" in caplog.text


def test_a_connection_lost_inside_a_transaction_fails_it_whole(
    pg: PostgresStateStore, admin: psycopg.Connection
) -> None:
    with pytest.raises(StateError, match="lost the connection"):
        with pg.transaction():
            pg.set_meta("first", "1")
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name = 'model-watchdog' "
                          "AND datname = current_database()")
            pg.set_meta("second", "1")

    assert pg.get_meta("first") is None  # reconnected; nothing of the transaction was kept
    assert pg.get_meta("second") is None


def test_a_statement_blocked_past_the_timeout_says_so(dsn: str) -> None:
    store = PostgresStateStore(dsn, statement_timeout=0.5)
    blocker = psycopg.connect(dsn)  # an operator's forgotten transaction
    try:
        blocker.execute("LOCK TABLE meta IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(StateError, match=r"statement_timeout \(0.5s\)") as info:
            store.set_meta("blocked", "1")
        assert "pg_stat_activity" in str(info.value)
        blocker.rollback()
        store.set_meta("unblocked", "1")  # the store stays usable
        assert store.get_meta("blocked") is None
    finally:
        blocker.close()
        store.close()


def test_a_failed_read_inside_a_transaction_fails_the_rest_of_it(dsn: str) -> None:
    store = PostgresStateStore(dsn, statement_timeout=0.3)
    blocker = psycopg.connect(dsn)
    try:
        with pytest.raises(StateError, match="rolled back after an earlier error"):
            with store.transaction():
                store.set_meta("outer", "1")
                blocker.execute("LOCK TABLE holds IN ACCESS EXCLUSIVE MODE")
                with pytest.raises(StateError, match="statement_timeout"):
                    store.holds()
                blocker.rollback()
                store.set_meta("after", "1")  # a careless caller goes on

        assert store.get_meta("outer") is None and store.get_meta("after") is None

        # Nothing after the swallowed error: PostgreSQL's COMMIT would quietly roll back.
        with pytest.raises(StateError, match="rolled back after an earlier error"):
            with store.transaction():
                store.set_meta("outer", "1")
                blocker.execute("LOCK TABLE holds IN ACCESS EXCLUSIVE MODE")
                with pytest.raises(StateError, match="statement_timeout"):
                    store.holds()
                blocker.rollback()
        assert store.get_meta("outer") is None
    finally:
        blocker.close()
        store.close()


def test_history_ids_follow_commit_order_across_replicas(dsn: str) -> None:
    # A poller using since_id must never miss a row that another replica committed late.
    with PostgresStateStore(dsn) as first, PostgresStateStore(dsn, statement_timeout=5) as second:
        appended = threading.Event()
        with first.transaction():
            early = first.append(event("fraud", "state", T0))
            thread = threading.Thread(
                target=lambda: (second.append(event("churn", "state", T0 + 1)), appended.set()))
            thread.start()
            assert not appended.wait(0.5)  # waits for the first transaction to commit
        thread.join(10)
        [late] = second.history(limit=1)
        assert late.id is not None and late.id > early
