"""The SQLite state store (the default): one file, WAL journal, full fsync on commit.

The domain SQL and the transaction and migration skeleton are in sql.py; this module
supplies the SQLite dialect: connection, DDL, error translation and locks.

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

Memory: the connection's page cache is capped at CACHE_KIB (`PRAGMA cache_size`), whatever
the library's build default. The cache holds the pages read or written, so it grows with the
file until the cap: in the demo soak ≈ 0.3 MB/h from 0.45 MB (bench/README.md, "Soak"), a
bounded warm-up, not a leak. The file itself stops growing once `history_retention` prunes
(SQLStateStore.prune): freed pages are reused.

Faults become `StateError`s that name the file and what to do; nothing is ever reset.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from watchdog.errors import StateError
from watchdog.state.base import DECISION_STATUSES, STEP_STATUSES, Replica, TargetLocks
from watchdog.state.locks import ProcessLockTable
from watchdog.state.sql import REPLICA_COLUMNS, R, SQLStateStore
from watchdog.state.sql import sql_list as _sql_list

CACHE_KIB = 2048  # the page cache's cap per connection (SQLite's usual build default is 2,000 KiB)

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
    (
        # Failed alert deliveries are kept and retried (watchdog.runtime.notify): attempts so
        # far, when the next is due, the last error; dedup_key keeps one incident's events in order.
        "ALTER TABLE alert_queue ADD COLUMN dedup_key TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE alert_queue ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE alert_queue ADD COLUMN next_at REAL",
        "ALTER TABLE alert_queue ADD COLUMN last_error TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX alert_queue_by_key ON alert_queue (alerter, dedup_key, id)",
    ),
    (
        # Retention (`history_retention`, SQLStateStore.prune): history stays append-only for
        # every other writer; a DELETE passes only inside a prune transaction, which holds a
        # meta row no other transaction ever sees. The index finds each kind's newest event.
        "DROP TRIGGER history_no_delete",
        """CREATE TRIGGER history_no_delete BEFORE DELETE ON history
            WHEN NOT EXISTS (SELECT 1 FROM meta WHERE key = 'history_pruning')
            BEGIN SELECT RAISE(ABORT, 'history is append-only'); END""",
        "CREATE INDEX history_by_target_kind ON history (target, kind, id)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

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


class SQLiteStateStore(SQLStateStore):
    """A StateStore in one SQLite file (`":memory:"` for throw-away stores in tests).

    `busy_timeout` is how many seconds to wait for another process's lock before
    raising StateError.
    """

    MIGRATIONS = MIGRATIONS
    # The write lock up front: a busy database fails at BEGIN after `busy_timeout`
    # instead of half-way through a transaction.
    _BEGIN = "BEGIN IMMEDIATE"

    def __init__(self, path: str, *, busy_timeout: float = 5.0):
        super().__init__()
        self.path = path if path == ":memory:" else os.path.abspath(path)
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._target_locks = ProcessLockTable()
        self._daemon_lock: int | None = None  # fd of `<file>.lock` while this process is the daemon
        self._identity: dict[str, tuple[int, int]] = {}  # path -> (device, inode) when opened
        if self.path != ":memory:":
            _check_location(self.path)
        with self._errors():
            self._conn = self._connect()
        self._open()
        if self.path != ":memory:":
            self._identity[self.path] = _file_identity(self.path) or (0, 0)

    @property
    def _name(self) -> str:
        return f"state file {self.path}"

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

    # --- connection -----------------------------------------------------------------------

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
            conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")  # KiB when negative
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

    def _run(self, sql: str, params: Sequence[Any], fetch: Callable[[sqlite3.Cursor], R]) -> R:
        with self._lock, self._errors():
            return fetch(self._live().execute(sql, params))

    def _many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self._lock, self._errors():
            self._live().executemany(sql, rows)

    def _insert(self, sql: str, params: Sequence[Any]) -> int:
        return self._run(sql, params, lambda cursor: int(cursor.lastrowid or 0))

    def _commit(self) -> None:
        try:
            self._exec("COMMIT")
        except StateError:
            self._undo("")  # e.g. disk full at COMMIT: leave no transaction open
            raise

    def _in_transaction(self) -> bool:
        return self._conn is not None and self._conn.in_transaction

    def _rollback(self, *statements: str) -> None:
        try:
            for statement in statements:
                self._db.execute(statement)
        except sqlite3.Error:
            pass

    def _tables(self) -> set[str]:
        return {row[0] for row in self._all("SELECT name FROM sqlite_master WHERE type='table'")}

    def _not_ours(self, detail: str) -> StateError:
        return _not_ours(self.path, detail)

    # --- target locks: this process only --------------------------------------------------

    def _held_by_other(self, target: str, replica_id: str) -> bool:
        return self._target_locks.holder(target) not in (None, replica_id)

    def open_target_locks(self, replica: Replica) -> TargetLocks:
        with self.transaction():
            self._exec(
                f"INSERT OR REPLACE INTO replicas ({REPLICA_COLUMNS}, backend_pid) "
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
