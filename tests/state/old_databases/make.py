"""Write the databases of tests/state/old_databases/ with an earlier release's code.

The files are what a state file (SQLite) or database (PostgreSQL) holds after that release
ran: schema version 1 (the first release's tables) and schema version 4 (the release before
the SQL store was written once, commit a22363c). The contract suite loads them and opens
them with the current code, which must migrate them and read every row. Run it with the
old release first on the path, never the current code:

    git archive a22363c watchdog | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python tests/state/old_databases/make.py postgresql://…/empty_db

The PostgreSQL database named must be empty (it is filled twice, emptied in between);
pg_dump comes from /usr/lib/postgresql/*/bin.
"""

from __future__ import annotations

import glob
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

from watchdog.state import sqlite as old_sqlite
from watchdog.state.base import Decision, HistoryEvent, Hold, Release, Replica, StateStore

T0 = 1_700_000_000.0
HERE = Path(__file__).resolve().parent

# Rows of the first schema, the same in both engines but for the JSON casts.
V1_ROWS = (
    ("INSERT INTO rule_states VALUES ('fraud', 'p99', '{{\"pod\":\"a\"}}', '{{\"state\":\"firing\"}}')"),
    ("INSERT INTO holds VALUES ('fraud', 1700000000.0, 'd1', 'v2', 'rolled back')"),
    ("INSERT INTO versions VALUES ('fraud', 'v1', 1700000000.0, 1700000000.0, 1, {false}, '')"),
    ("INSERT INTO versions VALUES ('fraud', 'v2', 1700000010.0, 1700000010.0, 2, {true}, 'p99 900ms')"),
    ("INSERT INTO decisions (id, target, rule, action, created_at, context, status, finished_at) "
     "VALUES ('d0', 'fraud', 'p99', 'rollback', 1700000005.0, '{{}}'{json}, 'succeeded', 1700000006.0)"),
    ("INSERT INTO decisions (id, target, rule, action, created_at, context, status, finished_at) "
     "VALUES ('d1', 'fraud', 'p99', 'rollback', 1700000020.0, '{{\"value\": 0.9}}'{json}, 'running', NULL)"),
    ("INSERT INTO steps VALUES ('d1', 0, 'webhook', 'started', 1700000023.0, NULL, '', 2)"),
    ("INSERT INTO history (at, target, rule, series, kind, message, data) VALUES (1700000020.0, "
     "'fraud', 'p99', '{{\"pod\": \"a\"}}'{json}, 'decision', 'rolling back', '{{\"value\": 0.9}}'{json})"),
    ("INSERT INTO meta VALUES ('schema_version', '1')"),
)


def fill(store: StateStore) -> None:
    """The same rows through the old release's API, plus one for each later table."""
    store.save_rule_states({("fraud", "p99", '{"pod":"a"}'): '{"state":"firing"}'}, [])
    store.put_hold(Hold("fraud", T0, "d1", "v2", "rolled back"))
    store.observe_version("fraud", "v1", T0)
    store.observe_version("fraud", "v2", T0 + 10)
    store.mark_bad("fraud", "v2", "p99 900ms")
    store.create_decision(Decision("d0", "fraud", "p99", "rollback", T0 + 5, {}, "succeeded", T0 + 6))
    store.create_decision(Decision("d1", "fraud", "p99", "rollback", T0 + 20, {"value": 0.9}, "running"))
    store.start_step("d1", 0, "webhook", T0 + 21)
    store.finish_step("d1", 0, "failed", T0 + 22, "HTTP 503")
    store.start_step("d1", 0, "webhook", T0 + 23)
    store.append(HistoryEvent(None, T0 + 20, "fraud", "p99", {"pod": "a"}, "decision", "rolling back",
                              {"value": 0.9}))
    release = store.record_release(Release(None, "fraud", T0, {"model": "fraud:7"}, "initial"))
    store.set_release_state(release.id, "bad")  # type: ignore[arg-type]
    store.save_incident("fraud", '{"phase": "acting"}', T0 + 20)
    store.enqueue_alert("ops", '{"a": 1}', T0 + 20)
    locks = store.open_target_locks(Replica("mw-1", "host-a", 42, T0, T0))
    locks.try_lock("fraud")
    locks.close()
    store.claim_decision("d1", "mw-1", T0 + 21)


def sqlite_files() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        first = sqlite3.connect(f"{tmp}/v1.db")
        for statement in old_sqlite.MIGRATIONS[0]:
            first.execute(statement)
        for row in V1_ROWS:
            first.execute(row.format(false=0, true=1, json=""))
        first.commit()
        (HERE / "sqlite-v1.sql").write_text("\n".join(first.iterdump()) + "\n")
        first.close()
        with old_sqlite.SQLiteStateStore(f"{tmp}/v4.db") as store:
            fill(store)
            (HERE / "sqlite-v4.sql").write_text("\n".join(store._db.iterdump()) + "\n")


def postgres_files(dsn: str) -> None:
    from watchdog.state import postgres as old_postgres

    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in old_postgres.MIGRATIONS[0]:
            conn.execute(statement)
        for row in V1_ROWS:
            conn.execute(row.format(false="FALSE", true="TRUE", json="::jsonb"))
        dump(dsn, HERE / "postgresql-v1.sql")
        conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    with old_postgres.PostgresStateStore(dsn) as store:
        fill(store)
    dump(dsn, HERE / "postgresql-v4.sql")


def dump(dsn: str, out: Path) -> None:
    pg_dump = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"))[-1]
    text = subprocess.run([pg_dump, "--no-owner", "--no-privileges", "--inserts", "--no-comments",
                           "--schema=public", dsn], check=True, capture_output=True, text=True).stdout
    # Only SQL: psql's backslash commands (\restrict), comments and the schema (a new
    # database has it already) go.
    kept = [line for line in text.splitlines()
            if line and not line.startswith(("\\", "--")) and line != "CREATE SCHEMA public;"]
    out.write_text("\n".join(kept) + "\n")


if __name__ == "__main__":
    sqlite_files()
    postgres_files(sys.argv[1])
