"""The SQLite state store (the default): one file, WAL journal, full fsync on commit.

Threads: one connection (`check_same_thread=False`) guarded by an RLock that a transaction
holds from BEGIN to COMMIT. A reader on another thread therefore waits for the scheduler's
transaction to finish and can neither see nor join half of it; SQLite admits one writer at
a time anyway and our reads are small, so connections per thread would add little
concurrency but leave connections of threads we do not own to close.

Every write runs inside `transaction()`, which begins with `BEGIN IMMEDIATE`: the write lock
is taken up front, so a busy database fails at BEGIN after `busy_timeout` instead of
half-way through. Nested transactions are savepoints.

SQLite means one daemon: target locks (`open_target_locks`) live in this process only, so
this process owns every target, and a decision claimed by a replica of an earlier run can
be claimed again (see `claim_decision`). Share state between replicas with PostgreSQL.
`lock_for_daemon()` enforces this: the daemon holds an exclusive `flock` on `<file>.lock`
(released by the kernel when the process dies, even by SIGKILL), and a second daemon on the
same file is refused. CLI commands open the store without that lock.

`lost()` notices the file being deleted or replaced under a running daemon by comparing the
device and inode of the path with those of the file opened (and of the lock file).

Faults become `StateError`s that name the file and what to do; nothing is ever reset.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from watchdog.errors import StateError
from watchdog.state.decisions import DecisionContext
from watchdog.state.base import (
    DECISION_STATUSES,
    STEP_END_STATUSES,
    STEP_STATUSES,
    UNFINISHED_STATUSES,
    Decision,
    HistoryEvent,
    Hold,
    IncidentSQL,
    ReleaseLedgerSQL,
    Replica,
    RuleStateKey,
    StateStore,
    Step,
    TargetLocks,
    VersionRecord,
    check_status,
    dump_json,
    load_json,
)
from watchdog.state.leases import ProcessLockTable


def _sql_list(values: Sequence[str]) -> str:
    return ", ".join(f"'{value}'" for value in values)


# MIGRATIONS[n] takes the schema from version n to n + 1; append, never edit a shipped entry.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE rule_states (
            target TEXT NOT NULL, rule TEXT NOT NULL, series_key TEXT NOT NULL,
            state TEXT NOT NULL, PRIMARY KEY (target, rule, series_key))""",
        """CREATE TABLE holds (
            target TEXT PRIMARY KEY, since REAL NOT NULL, decision_id TEXT, version TEXT,
            reason TEXT NOT NULL)""",
        # seq orders observations per target: "current" is the version observed last even
        # if the caller's clock stepped back.
        """CREATE TABLE versions (
            target TEXT NOT NULL, version TEXT NOT NULL, first_seen REAL NOT NULL,
            last_seen REAL NOT NULL, seq INTEGER NOT NULL, bad INTEGER NOT NULL DEFAULT 0,
            bad_reason TEXT NOT NULL DEFAULT '', PRIMARY KEY (target, version))""",
        f"""CREATE TABLE decisions (
            id TEXT PRIMARY KEY, target TEXT NOT NULL, rule TEXT NOT NULL,
            action TEXT NOT NULL, created_at REAL NOT NULL, context TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ({_sql_list(DECISION_STATUSES)})),
            finished_at REAL)""",
        "CREATE INDEX decisions_by_status ON decisions (status, created_at)",
        "CREATE INDEX decisions_by_target ON decisions (target, created_at)",
        f"""CREATE TABLE steps (
            decision_id TEXT NOT NULL REFERENCES decisions (id), step_index INTEGER NOT NULL,
            actuator TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ({_sql_list(STEP_STATUSES)})),
            started_at REAL NOT NULL, finished_at REAL, message TEXT NOT NULL,
            attempts INTEGER NOT NULL, PRIMARY KEY (decision_id, step_index))""",
        # AUTOINCREMENT: ids are never reused, so `since_id` polling can never skip a row.
        """CREATE TABLE history (
            id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, target TEXT NOT NULL,
            rule TEXT, series TEXT NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL,
            data TEXT NOT NULL)""",
        "CREATE INDEX history_by_target ON history (target, id)",
        "CREATE INDEX history_by_kind ON history (kind, id)",
        # The audit trail is append-only even for hand-written SQL; pruning would need a
        # deliberate migration that drops these triggers.
        """CREATE TRIGGER history_no_update BEFORE UPDATE ON history
            BEGIN SELECT RAISE(ABORT, 'history is append-only'); END""",
        """CREATE TRIGGER history_no_delete BEFORE DELETE ON history
            BEGIN SELECT RAISE(ABORT, 'history is append-only'); END""",
    ),
    (
        # Replicas: which one executes a decision, and who has run against this store.
        "ALTER TABLE decisions ADD COLUMN claimed_by TEXT",
        "ALTER TABLE decisions ADD COLUMN claimed_at REAL",
        """CREATE TABLE replicas (
            replica_id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,
            started_at REAL NOT NULL, last_seen REAL NOT NULL, backend_pid INTEGER)""",
    ),
    (
        # Releases: what was deployed together, for whole-stack rollbacks.
        """CREATE TABLE releases (
            id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL, created_at REAL NOT NULL,
            components TEXT NOT NULL, note TEXT NOT NULL, origin TEXT NOT NULL, state TEXT NOT NULL)""",
        "CREATE INDEX releases_by_target ON releases (target, id)",
    ),
    (
        # The rollback lifecycle of each target (watchdog.rollback.incident), and alerts
        # queued until delivered, so that neither is lost in a restart.
        """CREATE TABLE incidents (
            target TEXT PRIMARY KEY, state TEXT NOT NULL, updated_at REAL NOT NULL)""",
        """CREATE TABLE alert_queue (
            id INTEGER PRIMARY KEY AUTOINCREMENT, alerter TEXT NOT NULL, alert TEXT NOT NULL,
            queued_at REAL NOT NULL, claimed_by TEXT, claimed_at REAL)""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

_DECISION = (
    "id, target, rule, action, created_at, context, status, finished_at, claimed_by, claimed_at"
)
_STEP = "decision_id, step_index, actuator, status, started_at, finished_at, message, attempts"
_HISTORY = "id, at, target, rule, series, kind, message, data"
_VERSION = "target, version, first_seen, last_seen, bad, bad_reason"
_HOLD = "target, since, decision_id, version, reason"
_REPLICA = "replica_id, host, pid, started_at, last_seen"


def _not_ours(path: str, detail: str) -> StateError:
    return StateError(
        f"state file {path} is not a model-watchdog state database (or is corrupt): {detail}. "
        "Move it aside to start fresh; the audit history in it would be lost"
    )


def _translate(exc: sqlite3.Error, path: str, busy_timeout: float) -> StateError:
    """Turn a sqlite3 error into a StateError that says what happened and what to do."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None  # strip extended-code bits
    if primary in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        return _not_ours(path, str(exc))
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StateError(
            f"state file {path} is locked by another process (waited {busy_timeout:g}s): "
            f"{exc}. Is another model-watchdog or a sqlite3 shell using it? Stop it, or "
            "give each daemon its own state file"
        )
    if primary == sqlite3.SQLITE_FULL:
        return StateError(
            f"state file {path}: the disk is full ({exc}); the transaction was rolled back "
            "and the database is unchanged. Free some space and retry"
        )
    if primary == sqlite3.SQLITE_READONLY:
        return StateError(
            f"state file {path} is read-only ({exc}); make the file and its directory "
            "writable by the daemon's user"
        )
    if primary == sqlite3.SQLITE_CANTOPEN:
        return StateError(
            f"cannot open state file {path} ({exc}); check that its directory exists and "
            "is writable by the daemon's user"
        )
    return StateError(f"state file {path}: {exc}")


def _check_location(path: str) -> None:
    """Fail early, and clearly, where sqlite would only say 'unable to open database file'."""
    parent = os.path.dirname(path)
    if os.path.isdir(path):
        raise StateError(f"state file {path} is a directory; point state at a file inside it")
    if not os.path.isdir(parent):
        raise StateError(
            f"cannot open state file {path}: directory {parent} does not exist; "
            "create it (writable by the daemon's user) or point state elsewhere"
        )
    # WAL creates <file>-wal and <file>-shm next to the database, so the directory itself
    # must be writable, not just the file. (root passes os.access regardless.)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StateError(
            f"cannot open state file {path}: directory {parent} is not writable by this "
            "user (SQLite needs to create -wal and -shm files there)"
        )
    if os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
        raise StateError(f"state file {path} is not readable and writable by this user")


class SQLiteStateStore(IncidentSQL, ReleaseLedgerSQL, StateStore):
    """A StateStore in one SQLite file (`":memory:"` for throw-away stores in tests).

    `busy_timeout` is how many seconds to wait for another process's lock before
    raising StateError.
    """

    _P = "?"

    def __init__(self, path: str, *, busy_timeout: float = 5.0):
        self.path = path if path == ":memory:" else os.path.abspath(path)
        self._busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._depth = 0  # transaction nesting; only touched while holding _lock
        self._conn: sqlite3.Connection | None = None
        self._target_locks = ProcessLockTable()
        self._daemon_lock: int | None = None  # fd of `<file>.lock` while this process is the daemon
        self._identity: dict[str, tuple[int, int]] = {}  # path -> (device, inode) when opened
        if self.path != ":memory:":
            _check_location(self.path)
        with self._errors():
            self._conn = self._connect()
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise
        if self.path != ":memory:":
            self._identity[self.path] = _file_identity(self.path) or (0, 0)

    @property
    def lock_path(self) -> str:
        return self.path + ".lock"

    def lock_for_daemon(self) -> None:
        if self.path == ":memory:" or self._daemon_lock is not None:
            return
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateError(f"cannot create the lock file {self.lock_path}: {exc.strerror}; the state "
                             "directory must be writable by the daemon's user") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_small(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StateError(f"cannot lock {self.lock_path}: {exc.strerror}") from None
            raise StateError(
                f"state file {self.path} is in use by another model-watchdog daemon"
                f"{f' ({holder})' if holder else ''}: a SQLite state file serves exactly one daemon, "
                "two would both guard the targets and act twice. To run replicas, share the state "
                "in PostgreSQL (state: postgresql://…, see docs/replicas.md); otherwise stop the "
                "other daemon or give this one its own state file") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}\n".encode())
        self._daemon_lock = fd
        self._identity[self.lock_path] = _file_identity(self.lock_path) or (0, 0)

    def lost(self) -> str:
        for path, opened in self._identity.items():
            now = _file_identity(path)
            what = "lock file" if path == self.lock_path else "state file"
            if now is None:
                return (f"{what} {path} was deleted while the daemon ran; nothing written since is "
                        "kept. Restart the daemon (restore the file from a backup first)")
            if now != opened:
                return (f"{what} {path} was replaced by another file while the daemon ran; "
                        "restart the daemon to use the new file")
        return ""

    # --- plumbing -----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit BEGINs; transaction() issues them explicitly.
        # `timeout` installs SQLite's busy handler (the busy_timeout pragma).
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            # FULL: a commit that returned is on disk, the journal's promise after a crash.
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            conn.close()
            raise
        if mode != "wal" and self.path != ":memory:":
            conn.close()
            raise StateError(
                f"state file {self.path}: SQLite refused WAL journal mode (got {mode!r}); "
                "put the state file on a local filesystem"
            )
        return conn

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise _translate(exc, self.path, self._busy_timeout) from exc

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StateError(f"state store {self.path} is closed")
        return self._conn

    def _live(self) -> sqlite3.Connection:
        conn = self._db
        # SQLite rolls a transaction back by itself after some errors (disk full, I/O). A
        # caller that caught the error inside an outer block must not go on writing in
        # autocommit mode, one statement at a time: the whole block has to fail.
        if self._depth and not conn.in_transaction:
            raise StateError(
                f"state file {self.path}: the transaction was rolled back after an earlier "
                "error; nothing of it was written"
            )
        return conn

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._lock, self._errors():
            return self._live().execute(sql, params)

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock, self._errors():
            return self._live().execute(sql, params).fetchall()

    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with self._lock, self._errors():
            row: tuple[Any, ...] | None = self._live().execute(sql, params).fetchone()
            return row

    def _many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self._lock, self._errors():
            self._live().executemany(sql, rows)

    # --- schema -------------------------------------------------------------------------

    def _schema_version(self) -> int:
        tables = {row[0] for row in self._all("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            return 0
        if "meta" not in tables:
            raise _not_ours(self.path, f"it holds other tables ({', '.join(sorted(tables))})")
        row = self._one("SELECT value FROM meta WHERE key = 'schema_version'")
        if row is None or not str(row[0]).isdigit():
            raise _not_ours(self.path, "it has no schema_version")
        version = int(row[0])
        if version > SCHEMA_VERSION:
            raise StateError(
                f"state file {self.path} has schema version {version}, but this model-watchdog "
                f"knows versions up to {SCHEMA_VERSION}: it was written by a newer release. "
                "Upgrade model-watchdog (downgrading the file is not supported)"
            )
        return version

    def _migrate(self) -> None:
        if self._schema_version() == SCHEMA_VERSION:
            return  # the common case needs no write lock, so a CLI can open a busy store
        with self.transaction():
            # Re-read under the write lock: another process may have migrated meanwhile.
            for number in range(self._schema_version(), SCHEMA_VERSION):
                for statement in MIGRATIONS[number]:
                    self._exec(statement)
            self.set_meta("schema_version", str(SCHEMA_VERSION))

    # --- transactions -------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            savepoint = f"sp{self._depth}"
            self._exec("BEGIN IMMEDIATE" if self._depth == 0 else f"SAVEPOINT {savepoint}")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                self._undo(savepoint)
                raise
            self._depth -= 1
            if self._depth:
                self._exec(f"RELEASE {savepoint}")
            else:
                self._commit()

    def _commit(self) -> None:
        try:
            self._exec("COMMIT")
        except StateError:
            self._undo("")  # e.g. disk full at COMMIT: leave no transaction open
            raise

    def _undo(self, savepoint: str) -> None:
        """Roll back the innermost transaction level; never masks the error in flight."""
        conn = self._conn
        # SQLite rolls back the whole transaction by itself after some errors (SQLITE_FULL,
        # I/O errors); then there is nothing left to undo.
        if conn is None or not conn.in_transaction:
            return
        try:
            if self._depth == 0:
                conn.execute("ROLLBACK")
            else:
                conn.execute(f"ROLLBACK TO {savepoint}")
                conn.execute(f"RELEASE {savepoint}")
        except sqlite3.Error:
            pass  # the outer level rolls back everything; the original error matters

    # --- rule states --------------------------------------------------------------------

    def load_rule_states(self) -> dict[RuleStateKey, str]:
        rows = self._all("SELECT target, rule, series_key, state FROM rule_states")
        return {(target, rule, key): state for target, rule, key, state in rows}

    def save_rule_states(
        self, upserts: dict[RuleStateKey, str], deletes: Iterable[RuleStateKey]
    ) -> None:
        with self.transaction():
            self._many(
                "INSERT INTO rule_states (target, rule, series_key, state) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (target, rule, series_key) DO UPDATE SET state = excluded.state",
                [(*key, state) for key, state in upserts.items()],
            )
            self._many(
                "DELETE FROM rule_states WHERE target = ? AND rule = ? AND series_key = ?",
                [tuple(key) for key in deletes],
            )

    # --- holds --------------------------------------------------------------------------

    def holds(self) -> dict[str, Hold]:
        return {row[0]: Hold(*row) for row in self._all(f"SELECT {_HOLD} FROM holds")}

    def put_hold(self, hold: Hold) -> None:
        with self.transaction():
            self._exec(
                f"INSERT OR REPLACE INTO holds ({_HOLD}) VALUES (?, ?, ?, ?, ?)",
                (hold.target, hold.since, hold.decision_id, hold.version, hold.reason),
            )

    def delete_hold(self, target: str) -> Hold | None:
        with self.transaction():
            row = self._one(f"SELECT {_HOLD} FROM holds WHERE target = ?", (target,))
            self._exec("DELETE FROM holds WHERE target = ?", (target,))
        return None if row is None else Hold(*row)

    # --- versions -----------------------------------------------------------------------

    def observe_version(self, target: str, version: str, now: float) -> bool:
        with self.transaction():
            previous = self.current_version(target)
            self._exec(
                "INSERT INTO versions (target, version, first_seen, last_seen, seq) "
                "VALUES (?1, ?2, ?3, ?3, "
                "  (SELECT COALESCE(MAX(seq), 0) + 1 FROM versions WHERE target = ?1)) "
                "ON CONFLICT (target, version) DO UPDATE "
                "SET last_seen = excluded.last_seen, seq = excluded.seq",
                (target, version, now),
            )
        return previous != version

    def mark_bad(self, target: str, version: str, reason: str) -> None:
        with self.transaction():
            cursor = self._exec(
                "UPDATE versions SET bad = 1, bad_reason = ? WHERE target = ? AND version = ?",
                (reason, target, version),
            )
            if cursor.rowcount == 0:
                raise StateError(
                    f"version {version!r} of target {target!r} was never observed; "
                    "cannot mark it bad"
                )

    def versions(self, target: str) -> list[VersionRecord]:
        rows = self._all(
            f"SELECT {_VERSION} FROM versions WHERE target = ? "
            "ORDER BY last_seen DESC, seq DESC",
            (target,),
        )
        return [VersionRecord(*row[:4], bool(row[4]), row[5]) for row in rows]

    def current_version(self, target: str) -> str | None:
        row = self._one(
            "SELECT version FROM versions WHERE target = ? ORDER BY seq DESC LIMIT 1", (target,)
        )
        return None if row is None else str(row[0])

    # --- decisions ----------------------------------------------------------------------

    def _require_decision(self, decision_id: str) -> None:
        if self._one("SELECT 1 FROM decisions WHERE id = ?", (decision_id,)) is None:
            raise StateError(f"decision {decision_id!r} does not exist")

    def create_decision(self, decision: Decision) -> None:
        check_status(decision.status, DECISION_STATUSES, "decision")
        context = dump_json(decision.context.to_json(), f"the context of decision {decision.id!r}")
        with self.transaction():
            # Checked under the write lock, so no other writer can slip in between.
            if self._one("SELECT 1 FROM decisions WHERE id = ?", (decision.id,)) is not None:
                raise StateError(f"decision {decision.id!r} already exists")
            self._exec(
                f"INSERT INTO decisions ({_DECISION}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (decision.id, decision.target, decision.rule, decision.action,
                 decision.created_at, context, decision.status, decision.finished_at,
                 decision.claimed_by, decision.claimed_at),
            )

    def get_decision(self, decision_id: str) -> Decision | None:
        row = self._one(f"SELECT {_DECISION} FROM decisions WHERE id = ?", (decision_id,))
        return None if row is None else _decision(row)

    def set_decision_status(
        self, decision_id: str, status: str, finished_at: float | None = None
    ) -> None:
        check_status(status, DECISION_STATUSES, "decision")
        with self.transaction():
            cursor = self._exec(
                "UPDATE decisions SET status = ?, finished_at = ? WHERE id = ?",
                (status, finished_at, decision_id),
            )
            if cursor.rowcount == 0:
                raise StateError(f"decision {decision_id!r} does not exist")

    def claim_decision(self, decision_id: str, replica_id: str, now: float) -> bool:
        with self.transaction():
            row = self._one(
                "SELECT target, status FROM decisions WHERE id = ?", (decision_id,)
            )
            if row is None:
                raise StateError(f"decision {decision_id!r} does not exist")
            target, status = row
            if status not in UNFINISHED_STATUSES:
                return False
            if self._target_locks.holder(target) not in (None, replica_id):
                return False
            self._exec(
                "UPDATE decisions SET claimed_by = ?, claimed_at = ? WHERE id = ?",
                (replica_id, now, decision_id),
            )
            return True

    def unfinished_decisions(self) -> list[Decision]:
        rows = self._all(
            f"SELECT {_DECISION} FROM decisions "
            f"WHERE status IN ({_sql_list(UNFINISHED_STATUSES)}) ORDER BY created_at, rowid"
        )
        return [_decision(row) for row in rows]

    def decisions(self, target: str | None = None, limit: int = 50) -> list[Decision]:
        where, params = ("WHERE target = ?", [target]) if target is not None else ("", [])
        rows = self._all(
            f"SELECT {_DECISION} FROM decisions {where} "
            "ORDER BY created_at DESC, rowid DESC LIMIT ?",
            (*params, limit),
        )
        return [_decision(row) for row in rows]

    # --- steps --------------------------------------------------------------------------

    def start_step(self, decision_id: str, index: int, actuator: str, now: float) -> Step:
        with self.transaction():
            self._require_decision(decision_id)
            self._exec(
                f"INSERT INTO steps ({_STEP}) VALUES (?, ?, ?, 'started', ?, NULL, '', 1) "
                "ON CONFLICT (decision_id, step_index) DO UPDATE SET "
                "actuator = excluded.actuator, status = 'started', "
                "started_at = excluded.started_at, finished_at = NULL, message = '', "
                "attempts = steps.attempts + 1",
                (decision_id, index, actuator, now),
            )
            row = self._one(
                f"SELECT {_STEP} FROM steps WHERE decision_id = ? AND step_index = ?",
                (decision_id, index),
            )
        assert row is not None  # just written in the same transaction
        return Step(*row)

    def finish_step(
        self, decision_id: str, index: int, status: str, now: float, message: str
    ) -> None:
        check_status(status, STEP_END_STATUSES, "step end")
        with self.transaction():
            cursor = self._exec(
                "UPDATE steps SET status = ?, finished_at = ?, message = ? "
                "WHERE decision_id = ? AND step_index = ?",
                (status, now, message, decision_id, index),
            )
            if cursor.rowcount == 0:
                raise StateError(f"step {index} of decision {decision_id!r} was never started")

    def steps(self, decision_id: str) -> list[Step]:
        rows = self._all(
            f"SELECT {_STEP} FROM steps WHERE decision_id = ? ORDER BY step_index",
            (decision_id,),
        )
        return [Step(*row) for row in rows]

    # --- history ------------------------------------------------------------------------

    def append(self, event: HistoryEvent) -> int:
        series = dump_json(event.series, f"the series of a {event.kind!r} history event")
        data = dump_json(event.data, f"the data of a {event.kind!r} history event")
        with self.transaction():
            cursor = self._exec(
                "INSERT INTO history (at, target, rule, series, kind, message, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (event.at, event.target, event.rule, series, event.kind, event.message, data),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def history(
        self,
        target: str | None = None,
        limit: int = 50,
        kinds: Iterable[str] | None = None,
        since_id: int | None = None,
    ) -> list[HistoryEvent]:
        clauses: list[str] = []
        params: list[Any] = []
        if target is not None:
            clauses.append("target = ?")
            params.append(target)
        if kinds is not None:
            wanted = list(kinds)
            clauses.append(f"kind IN ({', '.join('?' * len(wanted))})")
            params.extend(wanted)
        if since_id is not None:
            clauses.append("id > ?")
            params.append(since_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._all(
            f"SELECT {_HISTORY} FROM history {where} ORDER BY id DESC LIMIT ?", (*params, limit)
        )
        return [_event(row) for row in rows]

    # --- replicas and target locks ------------------------------------------------------

    def open_target_locks(self, replica: Replica) -> TargetLocks:
        with self.transaction():
            self._exec(
                f"INSERT OR REPLACE INTO replicas ({_REPLICA}, backend_pid) "
                "VALUES (?, ?, ?, ?, ?, NULL)",
                (replica.replica_id, replica.host, replica.pid, replica.started_at,
                 replica.last_seen),
            )
        return self._target_locks.session(
            replica.replica_id, lambda now: self._heartbeat(replica.replica_id, now)
        )

    def _heartbeat(self, replica_id: str, now: float) -> None:
        with self.transaction():
            self._exec("UPDATE replicas SET last_seen = ? WHERE replica_id = ?", (now, replica_id))

    def target_owners(self) -> dict[str, str]:
        return self._target_locks.holders()

    def replicas(self) -> list[Replica]:
        rows = self._all(f"SELECT {_REPLICA} FROM replicas ORDER BY last_seen DESC, replica_id")
        return [Replica(*row) for row in rows]

    # --- meta and lifecycle -------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self._exec(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def close(self) -> None:
        self._target_locks.close_all()
        with self._lock:
            conn, self._conn = self._conn, None
            try:
                if conn is not None:
                    with self._errors():
                        conn.close()
            finally:
                fd, self._daemon_lock = self._daemon_lock, None
                if fd is not None:
                    os.close(fd)  # releases the flock; the file stays for the next daemon


def _file_identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the file at `path`, None when there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError:
        return (-1, -1)  # unreadable now: not the file we opened, as far as we can tell
    return (st.st_dev, st.st_ino)


def _read_small(fd: int) -> str:
    try:
        return os.pread(fd, 64, 0).decode("ascii", errors="replace").strip()
    except OSError:
        return ""


def _decision(row: tuple[Any, ...]) -> Decision:
    id_, target, rule, action, created_at, context, status, finished_at, by, at = row
    return Decision(
        id_, target, rule, action, created_at, DecisionContext.from_json(load_json(context)), status, finished_at, by, at
    )


def _event(row: tuple[Any, ...]) -> HistoryEvent:
    id_, at, target, rule, series, kind, message, data = row
    return HistoryEvent(id_, at, target, rule, load_json(series), kind, message, load_json(data))
