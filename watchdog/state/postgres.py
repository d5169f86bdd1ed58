"""The PostgreSQL state store: several replicas share one database.

The domain SQL and the transaction and migration skeleton are in sql.py, shared with the
SQLite store; this module supplies the PostgreSQL dialect (connection, DDL, error
translation, locks). Same schema, semantics and messages, with these differences:

* One connection (autocommit; transactions issued explicitly) guarded by an RLock held from
  BEGIN to COMMIT; nested transactions are savepoints. A connection lost *between*
  transactions is reopened, with a warning, and the first statement (a BEGIN or a read) is
  retried once; one lost inside a transaction fails that transaction. A lost COMMIT is
  reported as such: it may or may not have been written.
* The schema is created and migrated under `pg_advisory_xact_lock`, so replicas starting
  together do not race; `meta.schema_version` numbers match the SQLite store's.
* History ids come from an identity column, and appends take a transaction-level advisory
  lock: ids are then handed out in commit order, so `since_id` polling never skips a row
  that another replica committed late.
* Target locks are session-level advisory locks on a dedicated connection per replica
  (`PostgresTargetLocks`, see docs/replicas.md); `claim_decision` grants a decision only
  while no other replica holds its target's lock, so the target's next owner resumes it.

Every session sets `statement_timeout`; TCP keepalives bound how long a dead peer goes
unnoticed. Faults become `StateError`s that name the database — never its password.
"""

from __future__ import annotations


import functools
import logging
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from watchdog.errors import StateError
from watchdog.redact import redact, redact_url
from watchdog.state.base import DECISION_STATUSES, STEP_STATUSES, Replica, TargetLocks
from watchdog.state.locks import lock_key
from watchdog.state.sql import REPLICA_COLUMNS, R, SQLStateStore
from watchdog.state.sql import sql_list as _sql_list

log = logging.getLogger("watchdog.state.postgres")


_TIME = "DOUBLE PRECISION"
# MIGRATIONS[n] takes the schema from version n to n + 1; append, never edit a shipped entry.
# Version numbers mean the same schema as in sqlite.py.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE rule_states (
            target TEXT NOT NULL, rule TEXT NOT NULL, series_key TEXT NOT NULL,
            state TEXT NOT NULL, PRIMARY KEY (target, rule, series_key))""",
        f"""CREATE TABLE holds (
            target TEXT PRIMARY KEY, since {_TIME} NOT NULL, decision_id TEXT, version TEXT,
            reason TEXT NOT NULL)""",
        f"""CREATE TABLE versions (
            target TEXT NOT NULL, version TEXT NOT NULL, first_seen {_TIME} NOT NULL,
            last_seen {_TIME} NOT NULL, seq BIGINT NOT NULL, bad BOOLEAN NOT NULL DEFAULT FALSE,
            bad_reason TEXT NOT NULL DEFAULT '', PRIMARY KEY (target, version))""",
        # seq: insertion order, the tie-break SQLite gets from rowid.
        f"""CREATE TABLE decisions (
            id TEXT PRIMARY KEY, seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
            target TEXT NOT NULL, rule TEXT NOT NULL, action TEXT NOT NULL,
            created_at {_TIME} NOT NULL, context JSONB NOT NULL,
            status TEXT NOT NULL CHECK (status IN ({_sql_list(DECISION_STATUSES)})),
            finished_at {_TIME})""",
        "CREATE INDEX decisions_by_status ON decisions (status, created_at)",
        "CREATE INDEX decisions_by_target ON decisions (target, created_at)",
        f"""CREATE TABLE steps (
            decision_id TEXT NOT NULL REFERENCES decisions (id), step_index INTEGER NOT NULL,
            actuator TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ({_sql_list(STEP_STATUSES)})),
            started_at {_TIME} NOT NULL, finished_at {_TIME}, message TEXT NOT NULL,
            attempts INTEGER NOT NULL, PRIMARY KEY (decision_id, step_index))""",
        f"""CREATE TABLE history (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at {_TIME} NOT NULL,
            target TEXT NOT NULL, rule TEXT, series JSONB NOT NULL, kind TEXT NOT NULL,
            message TEXT NOT NULL, data JSONB NOT NULL)""",
        "CREATE INDEX history_by_target ON history (target, id)",
        "CREATE INDEX history_by_kind ON history (kind, id)",
        # The audit trail is append-only even for hand-written SQL, TRUNCATE included.
        """CREATE FUNCTION history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'history is append-only'; END $$""",
        """CREATE TRIGGER history_no_change BEFORE UPDATE OR DELETE ON history
            FOR EACH ROW EXECUTE FUNCTION history_append_only()""",
        """CREATE TRIGGER history_no_truncate BEFORE TRUNCATE ON history
            FOR EACH STATEMENT EXECUTE FUNCTION history_append_only()""",
    ),
    (
        "ALTER TABLE decisions ADD COLUMN claimed_by TEXT",
        f"ALTER TABLE decisions ADD COLUMN claimed_at {_TIME}",
        # backend_pid: the server process of the replica's lock session, to join pg_locks.
        f"""CREATE TABLE replicas (
            replica_id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,
            started_at {_TIME} NOT NULL, last_seen {_TIME} NOT NULL, backend_pid INTEGER)""",
        # Lock keys are hashes; this maps them back to target names for `target_owners`.
        "CREATE TABLE target_locks (lock_key BIGINT PRIMARY KEY, target TEXT NOT NULL UNIQUE)",
    ),
    (
        # Releases: what was deployed together, for whole-stack rollbacks.
        """CREATE TABLE releases (
            id BIGSERIAL PRIMARY KEY, target TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,
            components TEXT NOT NULL, note TEXT NOT NULL, origin TEXT NOT NULL, state TEXT NOT NULL)""",
        "CREATE INDEX releases_by_target ON releases (target, id)",
    ),
    (
        # The rollback lifecycle of each target (watchdog.rollback.incident), and alerts
        # queued until delivered, so that neither is lost in a restart.
        f"""CREATE TABLE incidents (
            target TEXT PRIMARY KEY, state TEXT NOT NULL, updated_at {_TIME} NOT NULL)""",
        f"""CREATE TABLE alert_queue (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, alerter TEXT NOT NULL, alert TEXT NOT NULL,
            queued_at {_TIME} NOT NULL, claimed_by TEXT, claimed_at {_TIME})""",
    ),
    (
        # Failed alert deliveries are kept and retried (watchdog.runtime.notify): attempts so
        # far, when the next is due, the last error; dedup_key keeps one incident's events in order.
        "ALTER TABLE alert_queue ADD COLUMN dedup_key TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE alert_queue ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
        f"ALTER TABLE alert_queue ADD COLUMN next_at {_TIME}",
        "ALTER TABLE alert_queue ADD COLUMN last_error TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX alert_queue_by_key ON alert_queue (alerter, dedup_key, id)",
    ),
    (
        # Retention (`history_retention`, SQLStateStore.prune): history stays append-only for
        # every other writer; a row DELETE passes only inside a prune transaction, which holds a
        # meta row no other transaction sees (TRUNCATE and UPDATE are refused as before).
        """CREATE OR REPLACE FUNCTION history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM meta WHERE key = 'history_pruning') THEN
                    RETURN OLD;
                END IF;
                RAISE EXCEPTION 'history is append-only';
            END $$""",
        "CREATE INDEX history_by_target_kind ON history (target, kind, id)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

# Advisory-lock keys of the store's own critical sections (targets hash to other keys).
_MIGRATION_LOCK = lock_key("\0model-watchdog:migrate")
_HISTORY_LOCK = lock_key("\0model-watchdog:history")
_REGISTER_LOCK = lock_key("\0model-watchdog:replicas")

# A granted session-level advisory lock with a bigint key, in this database; queries compare
# the two 32-bit halves of the key (pg_locks shows them as classid and objid).
_ADVISORY_IN_THIS_DB = (
    "l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)

# Dead-peer detection: idle 5 s, then 3 probes 2 s apart -> ~11 s; tcp_user_timeout bounds
# the same for unacknowledged writes. Set on both ends: libpq (the replica notices) and the
# server (it ends the session and frees its locks).
_KEEPALIVE = {"keepalives": "1", "keepalives_idle": "5", "keepalives_interval": "2",
              "keepalives_count": "3", "tcp_user_timeout": "11000"}
_SERVER_KEEPALIVE = {"tcp_keepalives_idle": "5", "tcp_keepalives_interval": "2",
                     "tcp_keepalives_count": "3", "tcp_user_timeout": "11000"}
#: the documented bound on how long a partitioned replica's locks outlive it, in seconds
TAKEOVER_BOUND = 5 + 2 * 3


def _split_key(key: int) -> tuple[int, int]:
    """(classid, objid) of a bigint advisory-lock key as pg_locks shows it."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def _parse(dsn: str) -> tuple[str, dict[str, str]]:
    """(a URL safe to show, libpq parameters) of a postgresql:// URL or key=value DSN."""
    if dsn.startswith("postgresql+"):  # SQLAlchemy style: postgresql+psycopg://
        dsn = "postgresql://" + dsn.split("://", 1)[1]
    shown = redact_url(dsn) if "://" in dsn else "a key=value connection string"
    try:
        params = {key: str(value) for key, value in conninfo_to_dict(dsn).items()}
    except psycopg.Error as exc:
        # libpq quotes the part it could not parse: keep that only where no password hides.
        detail = str(exc).strip() if "://" in dsn else "cannot parse it"
        password = _url_password(dsn)
        if password:
            detail = detail.replace(password, "***")
        raise StateError(
            f"invalid PostgreSQL URL {shown}: {redact(detail)}; expected "
            "postgresql://user:password@host:port/database?param=value"
        ) from None
    if "://" not in dsn:
        host, db = params.get("host", "localhost"), params.get("dbname", "")
        shown = f"postgresql://{params.get('user', '')}@{host}:{params.get('port', 5432)}/{db}"
    return shown, params


@functools.lru_cache(maxsize=256)
def _placeholders(sql: str) -> str:
    """The shared SQL in psycopg's style: `%s` for each `?` (the SQL has no other `?`; a
    literal `%` is doubled). The values stay bound, never spliced."""
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresStateStore(SQLStateStore):
    """A StateStore in a PostgreSQL database that several replicas may share.

    `statement_timeout` (seconds) cancels a statement that runs or waits for a lock longer;
    `connect_timeout` bounds opening a connection. Raises StateError.
    """

    MIGRATIONS = MIGRATIONS
    _FOR_UPDATE = " FOR UPDATE"
    _SKIP_LOCKED = " SKIP LOCKED"
    _JSON = "CAST(? AS jsonb)"
    _ROW_ORDER = "seq"  # insertion order, which SQLite has as rowid

    def __init__(self, dsn: str, *, statement_timeout: float = 10.0, connect_timeout: float = 5.0):
        super().__init__()
        self.where, self._params = _parse(dsn)
        self._statement_timeout = statement_timeout
        self._connect_timeout = connect_timeout
        self._closed = False
        self._conn: psycopg.Connection[Any] | None = self._connect("model-watchdog")
        self._open()

    @property
    def _name(self) -> str:
        return f"state database {self.where}"

    # --- connections ----------------------------------------------------------------------

    def _connect(self, application_name: str, **settings: str) -> psycopg.Connection[Any]:
        """A new autocommit connection with keepalives, statement_timeout and `settings`.

        The caller's URL wins over our defaults for libpq parameters. Server settings this
        server does not know (older releases) are skipped.
        """
        defaults = {**_KEEPALIVE, "application_name": application_name,
                    "connect_timeout": str(max(2, math.ceil(self._connect_timeout)))}
        params = {**defaults, **self._params}
        settings = {"statement_timeout": str(int(self._statement_timeout * 1000)), **settings}
        try:
            conn = psycopg.connect(autocommit=True, **params)
        except psycopg.Error as exc:
            raise StateError(
                f"cannot connect to the state database {self.where}: {self._clean(exc)}; "
                "check that the server runs and accepts connections from this host, and the "
                "user, password and database name in the URL"
            ) from None
        try:
            conn.execute(
                "SELECT set_config(s.name, s.value, false) FROM unnest(%s::text[], %s::text[]) "
                "AS s(name, value) WHERE s.name IN (SELECT name FROM pg_settings)",
                (list(settings), list(settings.values())),
            )
        except psycopg.Error as exc:
            conn.close()
            raise self._translate(exc) from None
        return conn

    def _clean(self, exc: BaseException) -> str:
        """An error text without the password, even where a driver might echo it."""
        text = str(exc).strip()
        password = self._params.get("password")
        if password:
            text = text.replace(password, "***")
        return redact(text)

    def _translate(self, exc: psycopg.Error) -> StateError:
        """Turn a psycopg error into a StateError that says what happened and what to do."""
        detail, where = self._clean(exc), self.where
        if isinstance(exc, (pg_errors.QueryCanceled, pg_errors.LockNotAvailable)):
            return StateError(
                f"state database {where}: a statement was cancelled after statement_timeout "
                f"({self._statement_timeout:g}s): {detail}. Is a session holding locks on the "
                "watchdog tables (see pg_stat_activity), or is the server overloaded?"
            )
        if isinstance(exc, (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)):
            return StateError(
                f"state database {where}: the transaction collided with another session and "
                f"was rolled back ({detail}); nothing of it was written. Retry it"
            )
        if isinstance(exc, pg_errors.InFailedSqlTransaction):
            return StateError(
                f"state database {where}: the transaction was rolled back after an earlier "
                "error; nothing of it was written"
            )
        if isinstance(exc, pg_errors.RaiseException) and "append-only" in detail:
            return StateError(f"state database {where}: history is append-only ({detail})")
        if isinstance(exc, pg_errors.InsufficientPrivilege):
            return StateError(
                f"state database {where}: permission denied ({detail}); grant the daemon's "
                "role CREATE on the schema and ownership of the watchdog tables"
            )
        if isinstance(exc, pg_errors.ReadOnlySqlTransaction):
            return StateError(
                f"state database {where} is read-only ({detail}); is it a standby? Point the "
                "state URL at the primary"
            )
        if isinstance(exc, pg_errors.DiskFull):
            return StateError(
                f"state database {where}: the server's disk is full ({detail}); the "
                "transaction was rolled back. Free some space and retry"
            )
        if isinstance(exc, psycopg.OperationalError):
            return StateError(
                f"lost the connection to the state database {where}: {detail}. It is reopened "
                "on the next transaction"
            )
        return StateError(f"state database {where}: {detail}")

    # --- plumbing -------------------------------------------------------------------------

    def _live(self) -> psycopg.Connection[Any]:
        if self._closed:
            raise StateError(f"state store {self.where} is closed")
        conn = self._conn
        if self._depth:
            status = None if conn is None else conn.info.transaction_status
            if conn is None or conn.broken or status == TransactionStatus.IDLE:
                raise StateError(
                    f"lost the connection to the state database {self.where} during a "
                    "transaction; nothing of it was written"
                )
            if status == TransactionStatus.INERROR:
                raise StateError(
                    f"state database {self.where}: the transaction was rolled back after an "
                    "earlier error; nothing of it was written"
                )
        elif conn is None or conn.broken or conn.closed:
            conn = self._reconnect("the connection was lost earlier")
        return conn

    def _reconnect(self, why: str) -> psycopg.Connection[Any]:
        log.warning("state database %s: %s; reconnecting", self.where, why)
        old, self._conn = self._conn, None
        if old is not None:
            old.close()
        self._conn = self._connect("model-watchdog")
        log.warning("state database %s: reconnected", self.where)
        return self._conn

    def _run(self, sql: str, params: Sequence[Any], fetch: Callable[[psycopg.Cursor[Any]], R]) -> R:
        """Execute one statement. Outside a transaction (reads and BEGIN, never COMMIT) a
        connection found lost is reopened and the statement retried once."""
        query = _placeholders(sql)
        with self._lock:
            conn = self._live()
            try:
                return fetch(conn.execute(query, params))
            except psycopg.OperationalError as exc:
                if self._depth or not conn.broken:
                    raise self._translate(exc) from None
                conn = self._reconnect(f"the connection was lost ({self._clean(exc)})")
            except psycopg.Error as exc:
                raise self._translate(exc) from None
            try:
                return fetch(conn.execute(query, params))
            except psycopg.Error as exc:
                raise self._translate(exc) from None

    def _many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if not rows:
            return
        with self._lock:
            conn = self._live()
            try:
                with conn.cursor() as cursor:
                    cursor.executemany(_placeholders(sql), rows)
            except psycopg.Error as exc:
                raise self._translate(exc) from None

    def _insert(self, sql: str, params: Sequence[Any]) -> int:
        row = self._run(f"{sql} RETURNING id", params, lambda cursor: cursor.fetchone())
        assert row is not None  # RETURNING yields the inserted row
        return int(row[0])

    # --- schema and transactions ----------------------------------------------------------

    def _not_ours(self, detail: str) -> StateError:
        return StateError(
            f"state database {self.where} is not a model-watchdog state database: {detail}. "
            "Point state at an empty database (or a schema of its own, via "
            "options=-csearch_path=...)"
        )

    def _tables(self) -> set[str]:
        return {row[0] for row in self._all(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema()")}

    def _lock_migration(self) -> None:
        # Replicas starting together queue here; the migration re-reads the version after.
        self._exec("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))

    def _lock_history(self) -> None:
        # Held to commit: ids are assigned in commit order (see the module docstring).
        self._exec("SELECT pg_advisory_xact_lock(?)", (_HISTORY_LOCK,))

    def _commit(self) -> None:
        conn = self._conn
        if conn is None or conn.broken:  # the server rolled the transaction back
            raise StateError(
                f"lost the connection to the state database {self.where} during a "
                "transaction; nothing of it was written"
            )
        if conn.info.transaction_status == TransactionStatus.INERROR:
            # COMMIT would quietly roll back: a caller swallowed an error in this transaction.
            self._undo("")
            raise StateError(
                f"state database {self.where}: the transaction was rolled back after an "
                "earlier error; nothing of it was written"
            )
        try:
            conn.execute("COMMIT")
        except psycopg.OperationalError as exc:
            if conn.broken:
                raise StateError(
                    f"lost the connection to the state database {self.where} while "
                    f"committing ({self._clean(exc)}): the transaction may or may not have "
                    "been written"
                ) from None
            self._undo("")
            raise self._translate(exc) from None
        except psycopg.Error as exc:
            self._undo("")  # PostgreSQL ends a failed COMMIT itself; make sure of it
            raise self._translate(exc) from None

    def _in_transaction(self) -> bool:
        conn = self._conn
        return not (conn is None or conn.broken
                    or conn.info.transaction_status == TransactionStatus.IDLE)

    def _rollback(self, *statements: str) -> None:
        try:
            for statement in statements:
                self._conn.execute(statement)  # type: ignore[union-attr]
        except psycopg.Error:
            pass

    # --- replicas and target locks --------------------------------------------------------

    def _held_by_other(self, target: str, replica_id: str) -> bool:
        """Whether a session other than `replica_id`'s lock session holds `target`."""
        row = self._one(
            f"SELECT EXISTS (SELECT 1 FROM pg_locks l WHERE {_ADVISORY_IN_THIS_DB} "
            "AND l.classid::bigint = ? AND l.objid::bigint = ? AND l.pid IS DISTINCT FROM "
            "(SELECT backend_pid FROM replicas WHERE replica_id = ?))",
            (*_split_key(lock_key(target)), replica_id),
        )
        return bool(row and row[0])

    def open_target_locks(self, replica: Replica) -> TargetLocks:
        if self._closed:
            raise StateError(f"state store {self.where} is closed")
        return PostgresTargetLocks(self, replica)

    def target_owners(self) -> dict[str, str]:
        rows = self._all(
            "SELECT t.target, r.replica_id FROM pg_locks l "
            "JOIN replicas r ON r.backend_pid = l.pid "
            "JOIN target_locks t ON l.classid::bigint = ((t.lock_key >> 32) & 4294967295) "
            "  AND l.objid::bigint = (t.lock_key & 4294967295) "
            f"WHERE {_ADVISORY_IN_THIS_DB} ORDER BY t.target"
        )
        return {target: replica_id for target, replica_id in rows}

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()


class PostgresTargetLocks(TargetLocks):
    """Session-level advisory locks on a dedicated connection of one replica.

    The server frees them when the session ends: at once when the replica's process dies
    (its socket closes), within ~TAKEOVER_BOUND seconds when the network is cut (keepalives),
    never while the session lives — hence `idle_session_timeout` is switched off for it.
    The connection must be a session of its own: direct, or PgBouncer `pool_mode=session`;
    `try_lock` checks that and raises StateError otherwise.
    """

    def __init__(self, store: PostgresStateStore, replica: Replica):
        self._store = store
        self._replica = replica
        self._mutex = threading.Lock()
        self._held: dict[str, int] = {}
        self._known_keys: set[int] = set()
        self._conn: psycopg.Connection[Any] | None = store._connect(
            f"model-watchdog lock {replica.replica_id}"[:63],
            idle_session_timeout="0", **_SERVER_KEEPALIVE,
        )
        try:
            self.backend_pid = self._register()
        except BaseException:
            self._drop()
            raise

    def _execute(self, sql: str, params: Sequence[Any] | None = None) -> psycopg.Cursor[Any]:
        conn = self._conn
        if conn is None:
            raise StateError(f"the lock session of replica {self._replica.replica_id} ended")
        try:
            return conn.execute(sql, params)
        except psycopg.Error as exc:
            if conn.broken:
                self._drop()
            raise self._store._translate(exc) from None

    def _query(self, sql: str, params: Sequence[Any] | None = None) -> tuple[Any, ...]:
        row = self._execute(sql, params).fetchone()
        assert row is not None  # only used for queries that always return one row
        return tuple(row)

    def _register(self) -> int:
        """Record the replica with its backend pid; returns that pid."""
        replica, conn = self._replica, self._conn
        assert conn is not None
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_REGISTER_LOCK,))
                pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
                other = conn.execute(
                    "SELECT r.backend_pid FROM replicas r JOIN pg_stat_activity a "
                    "ON a.pid = r.backend_pid WHERE r.replica_id = %s "
                    "AND r.backend_pid <> pg_backend_pid()", (replica.replica_id,),
                ).fetchone()
                # A backend pid is reused by later sessions: unlink stale rows from ours.
                conn.execute("UPDATE replicas SET backend_pid = NULL WHERE backend_pid = %s",
                             (pid,))
                conn.execute(
                    f"INSERT INTO replicas ({REPLICA_COLUMNS}, backend_pid) "
                    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (replica_id) DO UPDATE SET "
                    "host = excluded.host, pid = excluded.pid, started_at = excluded.started_at, "
                    "last_seen = excluded.last_seen, backend_pid = excluded.backend_pid",
                    (replica.replica_id, replica.host, replica.pid, replica.started_at,
                     replica.last_seen, pid),
                )
        except psycopg.Error as exc:
            raise self._store._translate(exc) from None
        if other is not None:
            log.warning(
                "replica id %r is also in use by a live session (server pid %s); unless that is "
                "an earlier run of this replica still being timed out, give each replica its "
                "own id", replica.replica_id, other[0])
        return int(pid)

    def try_lock(self, target: str) -> bool:
        key = lock_key(target)
        with self._mutex:
            if target in self._held:
                return True
            if key not in self._known_keys:
                self._remember(key, target)
            got, pid = self._query("SELECT pg_try_advisory_lock(%s), pg_backend_pid()", (key,))
            if not got:
                return False
            self._held[target] = key
            self._check_own_session(target, key, pid)
            return True

    def _remember(self, key: int, target: str) -> None:
        self._execute("INSERT INTO target_locks (lock_key, target) VALUES (%s, %s) "
                      "ON CONFLICT DO NOTHING", (key, target))
        (known,) = self._query("SELECT target FROM target_locks WHERE lock_key = %s", (key,))
        if known != target:
            raise StateError(
                f"targets {known!r} and {target!r} have the same lock key {key}; rename one"
            )
        self._known_keys.add(key)

    def _check_own_session(self, target: str, key: int, pid: int) -> None:
        """Advisory session locks are only worth anything on a session of our own."""
        classid, objid = _split_key(key)
        now_pid, held = self._query(
            "SELECT pg_backend_pid(), EXISTS (SELECT 1 FROM pg_locks l "
            f"WHERE l.pid = pg_backend_pid() AND {_ADVISORY_IN_THIS_DB} "
            "AND l.classid::bigint = %s AND l.objid::bigint = %s)",
            (classid, objid),
        )
        if self.backend_pid == pid == now_pid and held:
            return
        try:  # best effort: through a pooler this may reach yet another server session
            self._execute("SELECT pg_advisory_unlock(%s)", (key,))
        except StateError:
            pass
        self._drop()
        raise StateError(
            f"the lock connection to {self._store.where} is not a session of its own: the "
            f"server process changed between transactions (pids {self.backend_pid}, {pid}, "
            f"{now_pid}) or did not keep the lock of {target!r}. Target ownership uses "
            "session-level advisory locks: connect directly to PostgreSQL, or through "
            "PgBouncer with pool_mode=session; transaction pooling would let two replicas "
            "own the same target"
        )

    def unlock(self, target: str) -> None:
        with self._mutex:
            key = self._held.pop(target, None)
            if key is not None and self._conn is not None:
                self._execute("SELECT pg_advisory_unlock(%s)", (key,))

    def alive(self) -> bool:
        with self._mutex:
            if self._conn is None or self._conn.closed:
                return False
            try:
                self._conn.execute("SELECT 1")
            except psycopg.Error as exc:
                log.warning("lock session of replica %s ended: %s", self._replica.replica_id,
                            self._store._clean(exc))
                self._drop()
                return False
            return True

    def heartbeat(self, now: float) -> None:
        with self._mutex:
            self._execute(
                "UPDATE replicas SET last_seen = %s, backend_pid = %s WHERE replica_id = %s",
                (now, self.backend_pid, self._replica.replica_id))

    def _drop(self) -> None:
        """Close the connection: the server then frees every lock of the session."""
        conn, self._conn = self._conn, None
        self._held.clear()
        if conn is not None:
            conn.close()

    def close(self) -> None:
        with self._mutex:
            if self._conn is not None and not self._conn.broken and self._held:
                try:  # synchronous, so another replica can take over the moment we return
                    self._conn.execute("SELECT pg_advisory_unlock_all()")
                except psycopg.Error:
                    pass  # closing the connection below frees them too
            self._drop()

