"""The StateStore written once in SQL; sqlite.py and postgres.py supply the dialect.

`SQLStateStore` holds every domain method and the skeleton of transactions (BEGIN or a
savepoint, commit or undo, nesting) and migrations (read `meta.schema_version`, refuse a
foreign or newer database, apply the missing `MIGRATIONS` entries in one transaction).

Domain SQL is written with `?` placeholders and runs on both engines: values are always
bound, never spliced (a dialect whose driver wants `%s` rewrites the placeholders, see
postgres.py). What differs lives in the dialect class:

* the connection: `_run(sql, params, fetch)`, `_many`, `_insert` (returns the new id);
* the DDL: `MIGRATIONS`, where entry n takes the schema from version n to n + 1 and
  version numbers mean the same tables in both dialects;
* error translation into StateErrors that say what to do, and `_commit`, `_rollback`,
  `_in_transaction` (a failed COMMIT or a lost connection looks different per driver);
* locking hooks: `_BEGIN` (SQLite takes its write lock up front), `_FOR_UPDATE` and
  `_SKIP_LOCKED` row locks, `_lock_migration` and `_lock_history` (PostgreSQL advisory
  locks), `_held_by_other` (who holds a target), and the target-lock sessions themselves;
* `_JSON`, the placeholder of a JSON column (jsonb in PostgreSQL), and `_ROW_ORDER`, the
  column that orders rows inserted at the same `created_at`.
"""

from __future__ import annotations

import abc
import json
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, TypeVar

from watchdog.errors import StateError
from watchdog.state.decisions import DecisionContext
from watchdog.state.base import (
    DECISION_STATUSES,
    RELEASE_STATES,
    STEP_END_STATUSES,
    UNFINISHED_STATUSES,
    Decision,
    HistoryEvent,
    Hold,
    QueuedAlert,
    Release,
    Replica,
    RuleStateKey,
    StateStore,
    Step,
    VersionRecord,
)

R = TypeVar("R")

#: rows per prune transaction (see `SQLStateStore.prune`)
PRUNE_BATCH = 2000
#: releases and versions of each target kept by `prune` however old (current, previous, one more)
KEEP_NEWEST = 3
#: the meta key that, inside a prune transaction only, lets the history triggers allow DELETE
PRUNING = "history_pruning"

_DECISION = (
    "id, target, rule, action, created_at, context, status, finished_at, claimed_by, claimed_at"
)
_STEP = "decision_id, step_index, actuator, status, started_at, finished_at, message, attempts"
_HISTORY = "id, at, target, rule, series, kind, message, data"
_VERSION = "target, version, first_seen, last_seen, bad, bad_reason"
_HOLD = "target, since, decision_id, version, reason"
REPLICA_COLUMNS = "replica_id, host, pid, started_at, last_seen"


def sql_list(values: Sequence[str]) -> str:
    """A literal list of our own constants, for DDL (CHECK constraints cannot bind)."""
    return ", ".join(f"'{value}'" for value in values)


def check_status(status: str, allowed: tuple[str, ...], what: str) -> None:
    """Raise ValueError for a status outside `allowed`."""
    if status not in allowed:
        raise ValueError(f"unknown {what} status {status!r}; expected one of {', '.join(allowed)}")


def _finite(value: Any) -> Any:
    """`value` with every NaN/±Infinity float replaced by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def dump_json(value: Any, what: str) -> str:
    """Canonical JSON for a dict column; non-finite floats become null (see base.py).

    `allow_nan=False` after the clean-up guarantees the text is strict JSON that
    PostgreSQL's jsonb (and any other reader) accepts. Raises StateError, naming `what`,
    for values JSON cannot represent.
    """
    try:
        return json.dumps(_finite(value), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StateError(f"cannot store {what}: not JSON-serialisable ({exc})") from exc


def load_json(value: Any) -> Any:
    """A JSON column as read: text (SQLite) is parsed, jsonb (psycopg) arrives decoded."""
    if value is None:
        return {}
    return json.loads(value) if isinstance(value, (str, bytes)) else value


class SQLStateStore(StateStore):
    """Every StateStore method in SQL both engines run; subclasses supply the dialect."""

    MIGRATIONS: tuple[tuple[str, ...], ...] = ()
    _BEGIN = "BEGIN"
    _FOR_UPDATE = ""
    _SKIP_LOCKED = ""
    _JSON = "?"
    _ROW_ORDER = "rowid"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._depth = 0  # transaction nesting; only touched while holding _lock

    # --- dialect: connection, errors, locks ------------------------------------------------

    @property
    @abc.abstractmethod
    def _name(self) -> str:
        """What the store is in messages: "state file /path" or "state database url"."""

    @abc.abstractmethod
    def _run(self, sql: str, params: Sequence[Any], fetch: Callable[[Any], R]) -> R:
        """Execute one statement and apply `fetch` to its cursor; raises StateError."""

    @abc.abstractmethod
    def _many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Execute one statement once per row of parameters."""

    @abc.abstractmethod
    def _insert(self, sql: str, params: Sequence[Any]) -> int:
        """Execute an INSERT into a table with an `id` key; returns the new id."""

    @abc.abstractmethod
    def _commit(self) -> None:
        """Commit the outermost transaction; on failure leave none open and raise."""

    @abc.abstractmethod
    def _in_transaction(self) -> bool:
        """Whether the connection still has a transaction to roll back."""

    @abc.abstractmethod
    def _rollback(self, *statements: str) -> None:
        """Run rollback statements, ignoring the driver's errors (the one in flight matters)."""

    @abc.abstractmethod
    def _tables(self) -> set[str]:
        """The names of the tables in the database (or schema) the store uses."""

    @abc.abstractmethod
    def _not_ours(self, detail: str) -> StateError:
        """The error for a database that model-watchdog did not create."""

    @abc.abstractmethod
    def _held_by_other(self, target: str, replica_id: str) -> bool:
        """Whether a replica other than `replica_id` holds the lock of `target`."""

    def _lock_migration(self) -> None:
        """Inside the migration's transaction: wait until no other process migrates."""

    def _lock_history(self) -> None:
        """Inside an append's transaction: make history ids follow commit order."""

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute one statement; returns the number of rows it changed."""
        return self._run(sql, params, lambda cursor: int(cursor.rowcount))

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._run(sql, params, lambda cursor: list(cursor.fetchall()))

    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        return self._run(sql, params, lambda cursor: cursor.fetchone())

    # --- transactions ---------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            savepoint = f"sp{self._depth}"
            self._exec(self._BEGIN if self._depth == 0 else f"SAVEPOINT {savepoint}")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                self._undo(savepoint)
                raise
            self._depth -= 1
            if self._depth:
                self._exec(f"RELEASE SAVEPOINT {savepoint}")
            else:
                self._commit()

    def _undo(self, savepoint: str) -> None:
        """Roll back the innermost transaction level; never masks the error in flight."""
        # The engine may have rolled back the whole transaction by itself already (SQLite
        # after a full disk, PostgreSQL after a lost connection): then nothing is left.
        if not self._in_transaction():
            return
        if self._depth == 0:
            self._rollback("ROLLBACK")
        else:
            self._rollback(f"ROLLBACK TO SAVEPOINT {savepoint}", f"RELEASE SAVEPOINT {savepoint}")

    # --- schema ---------------------------------------------------------------------------

    def _open(self) -> None:
        """Create or migrate the schema of a freshly connected store; closes it on failure."""
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    def _schema_version(self) -> int:
        tables = self._tables()
        if not tables:
            return 0
        if "meta" not in tables:
            raise self._not_ours(f"it holds other tables ({', '.join(sorted(tables))})")
        row = self._one("SELECT value FROM meta WHERE key = 'schema_version'")
        if row is None or not str(row[0]).isdigit():
            raise self._not_ours("it has no schema_version")
        version, known = int(row[0]), len(self.MIGRATIONS)
        if version > known:
            raise StateError(
                f"{self._name} has schema version {version}, but this model-watchdog knows "
                f"versions up to {known}: it was written by a newer release. Upgrade "
                "model-watchdog (downgrading is not supported)"
            )
        return version

    def _migrate(self) -> None:
        if self._schema_version() == len(self.MIGRATIONS):
            return  # the common case needs no write lock, so a CLI can open a busy store
        with self.transaction():
            self._lock_migration()
            # Re-read under the lock: another process may have migrated meanwhile.
            for number in range(self._schema_version(), len(self.MIGRATIONS)):
                for statement in self.MIGRATIONS[number]:
                    self._exec(statement)
            self.set_meta("schema_version", str(len(self.MIGRATIONS)))

    # --- rule states ----------------------------------------------------------------------

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

    # --- holds ----------------------------------------------------------------------------

    def holds(self) -> dict[str, Hold]:
        return {row[0]: Hold(*row) for row in self._all(f"SELECT {_HOLD} FROM holds")}

    def put_hold(self, hold: Hold) -> None:
        with self.transaction():
            self._exec(
                f"INSERT INTO holds ({_HOLD}) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (target) DO UPDATE SET since = excluded.since, "
                "decision_id = excluded.decision_id, version = excluded.version, "
                "reason = excluded.reason",
                (hold.target, hold.since, hold.decision_id, hold.version, hold.reason),
            )

    def delete_hold(self, target: str) -> Hold | None:
        with self.transaction():
            # Locked: of two replicas deleting at once, only one gets the hold back.
            row = self._one(f"SELECT {_HOLD} FROM holds WHERE target = ?{self._FOR_UPDATE}",
                            (target,))
            self._exec("DELETE FROM holds WHERE target = ?", (target,))
        return None if row is None else Hold(*row)

    # --- versions -------------------------------------------------------------------------

    def observe_version(self, target: str, version: str, now: float) -> bool:
        with self.transaction():
            previous = self.current_version(target)
            # seq orders observations per target: "current" is the version observed last
            # even if the caller's clock stepped back.
            self._exec(
                "INSERT INTO versions (target, version, first_seen, last_seen, seq) "
                "VALUES (?, ?, ?, ?, "
                "  (SELECT COALESCE(MAX(seq), 0) + 1 FROM versions WHERE target = ?)) "
                "ON CONFLICT (target, version) DO UPDATE "
                "SET last_seen = excluded.last_seen, seq = excluded.seq",
                (target, version, now, now, target),
            )
        return previous != version

    def mark_bad(self, target: str, version: str, reason: str) -> None:
        with self.transaction():
            changed = self._exec(
                "UPDATE versions SET bad = TRUE, bad_reason = ? WHERE target = ? AND version = ?",
                (reason, target, version),
            )
            if changed == 0:
                raise StateError(
                    f"version {version!r} of target {target!r} was never observed; "
                    "cannot mark it bad"
                )

    def versions(self, target: str) -> list[VersionRecord]:
        rows = self._all(
            f"SELECT {_VERSION} FROM versions WHERE target = ? ORDER BY last_seen DESC, seq DESC",
            (target,),
        )
        return [VersionRecord(*row[:4], bool(row[4]), row[5]) for row in rows]

    def versions_of(self, targets: Iterable[str]) -> dict[str, list[VersionRecord]]:
        """One read for a fleet's versions (the engine asks at every tick), not one per target."""
        wanted = set(targets)
        out: dict[str, list[VersionRecord]] = {target: [] for target in wanted}
        rows = self._all(f"SELECT {_VERSION} FROM versions ORDER BY target, last_seen DESC, seq DESC", ())
        for row in rows:
            if row[0] in wanted:
                out[row[0]].append(VersionRecord(*row[:4], bool(row[4]), row[5]))
        return out

    def current_version(self, target: str) -> str | None:
        row = self._one(
            "SELECT version FROM versions WHERE target = ? ORDER BY seq DESC LIMIT 1", (target,)
        )
        return None if row is None else str(row[0])

    def current_versions(self, targets: Iterable[str]) -> dict[str, str | None]:
        """One read for a fleet (the engine's start and takeover), not one per target."""
        out: dict[str, str | None] = dict.fromkeys(targets)
        last: dict[str, int] = {}
        for target, version, seq in self._all("SELECT target, version, seq FROM versions", ()):
            if target in out and seq > last.get(target, -1):
                out[target], last[target] = str(version), seq
        return out

    # --- decisions ------------------------------------------------------------------------

    def create_decision(self, decision: Decision) -> None:
        check_status(decision.status, DECISION_STATUSES, "decision")
        context = dump_json(decision.context.to_json(), f"the context of decision {decision.id!r}")
        with self.transaction():
            # ON CONFLICT: a concurrent insert by another replica counts as "exists" too.
            added = self._exec(
                f"INSERT INTO decisions ({_DECISION}) "
                f"VALUES (?, ?, ?, ?, ?, {self._JSON}, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (decision.id, decision.target, decision.rule, decision.action,
                 decision.created_at, context, decision.status, decision.finished_at,
                 decision.claimed_by, decision.claimed_at),
            )
            if added == 0:
                raise StateError(f"decision {decision.id!r} already exists")

    def get_decision(self, decision_id: str) -> Decision | None:
        row = self._one(f"SELECT {_DECISION} FROM decisions WHERE id = ?", (decision_id,))
        return None if row is None else _decision(row)

    def set_decision_status(
        self, decision_id: str, status: str, finished_at: float | None = None
    ) -> None:
        check_status(status, DECISION_STATUSES, "decision")
        with self.transaction():
            changed = self._exec(
                "UPDATE decisions SET status = ?, finished_at = ? WHERE id = ?",
                (status, finished_at, decision_id),
            )
            if changed == 0:
                raise StateError(f"decision {decision_id!r} does not exist")

    def claim_decision(self, decision_id: str, replica_id: str, now: float) -> bool:
        with self.transaction():
            # Locked: a second claimant waits here, then sees the first one's claim.
            row = self._one(
                f"SELECT target, status FROM decisions WHERE id = ?{self._FOR_UPDATE}",
                (decision_id,),
            )
            if row is None:
                raise StateError(f"decision {decision_id!r} does not exist")
            target, status = row
            if status not in UNFINISHED_STATUSES or self._held_by_other(target, replica_id):
                return False
            self._exec(
                "UPDATE decisions SET claimed_by = ?, claimed_at = ? WHERE id = ?",
                (replica_id, now, decision_id),
            )
            return True

    def unfinished_decisions(self) -> list[Decision]:
        marks = ", ".join("?" * len(UNFINISHED_STATUSES))
        rows = self._all(
            f"SELECT {_DECISION} FROM decisions WHERE status IN ({marks}) "
            f"ORDER BY created_at, {self._ROW_ORDER}",
            UNFINISHED_STATUSES,
        )
        return [_decision(row) for row in rows]

    def decisions(self, target: str | None = None, limit: int = 50) -> list[Decision]:
        where, params = ("WHERE target = ?", [target]) if target is not None else ("", [])
        rows = self._all(
            f"SELECT {_DECISION} FROM decisions {where} "
            f"ORDER BY created_at DESC, {self._ROW_ORDER} DESC LIMIT ?",
            (*params, limit),
        )
        return [_decision(row) for row in rows]

    # --- steps ----------------------------------------------------------------------------

    def start_step(self, decision_id: str, index: int, actuator: str, now: float) -> Step:
        with self.transaction():
            if self._one("SELECT 1 FROM decisions WHERE id = ?", (decision_id,)) is None:
                raise StateError(f"decision {decision_id!r} does not exist")
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
            changed = self._exec(
                "UPDATE steps SET status = ?, finished_at = ?, message = ? "
                "WHERE decision_id = ? AND step_index = ?",
                (status, now, message, decision_id, index),
            )
            if changed == 0:
                raise StateError(f"step {index} of decision {decision_id!r} was never started")

    def steps(self, decision_id: str) -> list[Step]:
        rows = self._all(
            f"SELECT {_STEP} FROM steps WHERE decision_id = ? ORDER BY step_index", (decision_id,)
        )
        return [Step(*row) for row in rows]

    # --- history --------------------------------------------------------------------------

    def append(self, event: HistoryEvent) -> int:
        series = dump_json(event.series, f"the series of a {event.kind!r} history event")
        data = dump_json(event.data, f"the data of a {event.kind!r} history event")
        with self.transaction():
            self._lock_history()
            return self._insert(
                "INSERT INTO history (at, target, rule, series, kind, message, data) "
                f"VALUES (?, ?, ?, {self._JSON}, ?, ?, {self._JSON})",
                (event.at, event.target, event.rule, series, event.kind, event.message, data),
            )

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
            if not wanted:
                return []
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

    # --- retention ------------------------------------------------------------------------

    def prune(self, cutoff: float, batch: int = PRUNE_BATCH) -> dict[str, int]:
        """Delete what is older than `cutoff` and no longer needed; returns rows deleted per
        table (history, decisions, steps, releases, versions).

        Each batch of at most `batch` rows is its own short transaction, so a tick or a CLI
        waits at most one batch for the lock. Kept however old: everything of a target with an
        open incident, a hold or an unfinished decision; the newest history event of each kind
        per target (the latest drill, version, timeline mark) and the timeline marks of kept
        decisions; decisions a hold or incident names, and the newest decision per target; the
        three newest releases and versions of each target, its two newest healthy releases, and
        versions marked bad. Rule states, holds,
        incidents, the alert queue and meta are never touched. Idempotent: two stores pruning
        one database delete each row once."""
        if batch < 1:
            raise ValueError("batch must be at least 1")
        protected = self._protected_targets()
        decisions = self._prune_decisions(cutoff, batch, protected)  # first: history keeps the rest's marks
        return {"history": self._prune_history(cutoff, batch, protected),
                **decisions,
                "releases": self._prune_releases(cutoff, batch),
                "versions": self._prune_versions(cutoff, batch)}

    def _protected_targets(self) -> set[str]:
        protected = {str(r[0]) for r in self._all("SELECT target FROM holds")}
        marks = ", ".join("?" * len(UNFINISHED_STATUSES))
        protected |= {str(r[0]) for r in self._all(
            f"SELECT DISTINCT target FROM decisions WHERE status IN ({marks})", UNFINISHED_STATUSES)}
        for target, state in self._all("SELECT target, state FROM incidents"):
            try:
                phase = json.loads(state).get("phase", "clear")
            except (ValueError, AttributeError):
                phase = None  # unreadable: keep what the target has
            if phase != "clear":
                protected.add(str(target))
        return protected

    def _prune_history(self, cutoff: float, batch: int, protected: set[str]) -> int:
        deleted, after = 0, 0
        # A kept decision keeps its timeline marks (verified_at, recovered_at: `incidents`).
        kept = {str(r[0]) for r in self._all("SELECT id FROM decisions")}
        while True:
            # By id from where the last batch stopped: ids follow time, so the first row at or
            # after the cut-off ends the walk (a row of a stepped-back clock waits for the next).
            rows = self._all("SELECT id, at, target, kind, data FROM history WHERE id > ? ORDER BY id LIMIT ?",
                             (after, batch))
            old = [r for r in rows if r[1] < cutoff
                   and not (r[3] == "timeline" and str(load_json(r[4]).get("decision_id")) in kept)]
            stop = any(r[1] >= cutoff for r in rows) or len(rows) < batch
            newest = self._newest_events({(r[2], r[3]) for r in old if r[2] not in protected})
            doomed = [int(r[0]) for r in old if r[2] not in protected and newest[(r[2], r[3])] != r[0]]
            if doomed:
                with self.transaction():
                    # The append-only triggers let a DELETE through only while this row exists,
                    # which no other transaction ever sees (it is gone again at the commit).
                    self._exec(f"INSERT INTO meta (key, value) VALUES ('{PRUNING}', '1')")
                    marks = ", ".join("?" * len(doomed))  # one statement: one round trip on PostgreSQL
                    deleted += self._exec(f"DELETE FROM history WHERE id IN ({marks})", doomed)
                    self._exec(f"DELETE FROM meta WHERE key = '{PRUNING}'")
            if stop or not rows:
                return deleted
            after = int(rows[-1][0])

    def _newest_events(self, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
        return {pair: int(self._one("SELECT MAX(id) FROM history WHERE target = ? AND kind = ?", pair)[0])
                for pair in pairs}

    def _prune_decisions(self, cutoff: float, batch: int, protected: set[str]) -> dict[str, int]:
        named = {str(r[0]) for r in self._all("SELECT decision_id FROM holds WHERE decision_id IS NOT NULL")}
        for (state,) in self._all("SELECT state FROM incidents"):
            try:
                named.add(str(json.loads(state).get("decision_id")))
            except (ValueError, AttributeError):
                pass
        newest = {str(r[0]) for r in self._all(
            f"SELECT id FROM decisions d WHERE {self._ROW_ORDER} = (SELECT MAX({self._ROW_ORDER}) "
            "FROM decisions e WHERE e.target = d.target)")}
        marks = ", ".join("?" * len(UNFINISHED_STATUSES))
        rows = self._all(
            f"SELECT id, target FROM decisions WHERE status NOT IN ({marks}) "
            "AND COALESCE(finished_at, created_at) < ?", (*UNFINISHED_STATUSES, cutoff))
        doomed = [str(r[0]) for r in rows if r[1] not in protected and r[0] not in named and r[0] not in newest]
        counts = {"decisions": 0, "steps": 0}
        for start in range(0, len(doomed), batch):
            chunk = [(decision_id,) for decision_id in doomed[start:start + batch]]
            with self.transaction():
                counts["steps"] += sum(self._exec("DELETE FROM steps WHERE decision_id = ?", row) for row in chunk)
                counts["decisions"] += sum(self._exec(
                    f"DELETE FROM decisions WHERE id = ? AND status NOT IN ({marks})", (*row, *UNFINISHED_STATUSES))
                    for row in chunk)
        return counts

    def _prune_releases(self, cutoff: float, batch: int) -> int:
        by_target: dict[str, list[tuple[int, float, str]]] = {}
        for id_, target, created_at, state in self._all(
                "SELECT id, target, created_at, state FROM releases ORDER BY id DESC"):
            by_target.setdefault(str(target), []).append((int(id_), created_at, str(state)))
        doomed: list[tuple[int]] = []
        for rows in by_target.values():
            # The two newest healthy ones: a healthy current release and the one to go back to.
            healthy = [r[0] for r in rows if r[2] == "healthy"][:2]
            doomed += [(r[0],) for r in rows[KEEP_NEWEST:] if r[1] < cutoff and r[0] not in healthy]
        return self._delete_in_batches("DELETE FROM releases WHERE id = ?", doomed, batch)

    def _prune_versions(self, cutoff: float, batch: int) -> int:
        by_target: dict[str, list[tuple[str, float, bool, int]]] = {}
        for target, version, last_seen, bad, seq in self._all(
                "SELECT target, version, last_seen, bad, seq FROM versions ORDER BY last_seen DESC, seq DESC"):
            by_target.setdefault(str(target), []).append((str(version), last_seen, bool(bad), int(seq)))
        doomed: list[tuple[str, str]] = []
        for target, rows in by_target.items():
            newest = {r[0] for r in sorted(rows, key=lambda r: -r[3])[:KEEP_NEWEST]}  # the current one first
            # Rollback's target (text.versions.previous_good: the newest not bad, in this order) and
            # one more, should that one be an invalid version.
            good = [r[0] for r in rows if not r[2] and r[0] not in newest][:2]
            doomed += [(target, r[0]) for r in rows
                       if r[1] < cutoff and not r[2] and r[0] not in newest and r[0] not in good]
        return self._delete_in_batches("DELETE FROM versions WHERE target = ? AND version = ?", doomed, batch)

    def _delete_in_batches(self, sql: str, rows: Sequence[Sequence[Any]], batch: int) -> int:
        deleted = 0
        for start in range(0, len(rows), batch):
            with self.transaction():
                deleted += sum(self._exec(sql, row) for row in rows[start:start + batch])
        return deleted

    # --- replicas -------------------------------------------------------------------------

    def replicas(self) -> list[Replica]:
        rows = self._all(
            f"SELECT {REPLICA_COLUMNS} FROM replicas ORDER BY last_seen DESC, replica_id"
        )
        return [Replica(*row) for row in rows]

    # --- releases -------------------------------------------------------------------------

    def record_release(self, release: Release) -> Release:
        check_status(release.state, RELEASE_STATES, "release")
        components = dump_json(release.components, "a release's components")
        with self.transaction():
            new_id = self._insert(
                "INSERT INTO releases (target, created_at, components, note, origin, state) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (release.target, release.created_at, components, release.note, release.origin,
                 release.state),
            )
        return replace(release, id=new_id)

    def releases(self, target: str, limit: int = 50) -> list[Release]:
        rows = self._all(
            "SELECT id, target, created_at, components, note, origin, state FROM releases "
            "WHERE target = ? ORDER BY id DESC LIMIT ?",
            (target, limit),
        )
        return [Release(int(r[0]), r[1], r[2], load_json(r[3]) or {}, r[4], r[5], r[6])
                for r in rows]

    def current_releases(self, targets: Iterable[str]) -> dict[str, Release]:
        """One read for a fleet's current releases (the engine's bake asks at every tick)."""
        wanted = set(targets)
        rows = self._all(
            "SELECT id, target, created_at, components, note, origin, state FROM releases "
            "WHERE id IN (SELECT MAX(id) FROM releases GROUP BY target)", ())
        return {r[1]: Release(int(r[0]), r[1], r[2], load_json(r[3]) or {}, r[4], r[5], r[6])
                for r in rows if r[1] in wanted}

    def set_release_state(self, release_id: int, state: str) -> None:
        check_status(state, RELEASE_STATES, "release")
        with self.transaction():
            if self._exec("UPDATE releases SET state = ? WHERE id = ?", (state, release_id)) == 0:
                raise StateError(f"release {release_id} does not exist")

    # --- incidents and the alert queue ----------------------------------------------------

    def incidents(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self._all("SELECT target, state FROM incidents")}

    def incident(self, target: str, *, for_update: bool = False) -> str | None:
        lock = self._FOR_UPDATE if for_update else ""
        row = self._one(f"SELECT state FROM incidents WHERE target = ?{lock}", (target,))
        return None if row is None else str(row[0])

    def save_incident(self, target: str, state: str, now: float) -> None:
        with self.transaction():
            self._exec(
                "INSERT INTO incidents (target, state, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (target) DO UPDATE SET state = excluded.state, "
                "updated_at = excluded.updated_at",
                (target, state, now),
            )

    def enqueue_alert(self, alerter: str, alert: str, now: float, dedup_key: str = "") -> None:
        with self.transaction():
            if dedup_key:
                self._supersede_retry(alerter, alert, dedup_key)
            self._exec("INSERT INTO alert_queue (alerter, alert, queued_at, dedup_key) VALUES (?, ?, ?, ?)",
                       (alerter, alert, now, dedup_key))

    def _supersede_retry(self, alerter: str, alert: str, dedup_key: str) -> None:
        """The key's newest delivery, when it waits for a retry with the same status as `alert`,
        is old news: the new one replaces it (firing, resolved, firing stay three)."""
        row = self._one(f"SELECT id, alert, attempts, claimed_at FROM alert_queue WHERE alerter = ? AND dedup_key = ? "
                        f"ORDER BY id DESC LIMIT 1{self._FOR_UPDATE}", (alerter, dedup_key))
        if row is not None and row[2] > 0 and row[3] is None and _status(row[1]) == _status(alert):
            self._exec("DELETE FROM alert_queue WHERE id = ?", (row[0],))

    def claim_alerts(self, claimant: str, now: float, limit: int = 20,
                     stale_after: float = 60.0, retry_within: float | None = None) -> list[QueuedAlert]:
        with self.transaction():
            # Due, not claimed by a live claimant, and the oldest of its (alerter, dedup_key):
            # a resolve never overtakes its firing, even while the firing waits for a retry.
            rows = self._all(
                "SELECT q.id, q.alerter, q.alert, q.queued_at, q.attempts FROM alert_queue q "
                "WHERE (q.claimed_at IS NULL OR q.claimed_at < ?) AND (q.next_at IS NULL OR q.next_at <= ? OR q.next_at > ?) "
                "AND NOT EXISTS (SELECT 1 FROM alert_queue o WHERE o.alerter = q.alerter "
                "AND o.dedup_key = q.dedup_key AND q.dedup_key <> '' AND o.id < q.id) "
                f"ORDER BY q.id LIMIT ?{self._FOR_UPDATE}{self._SKIP_LOCKED}",
                (now - stale_after, now, now + retry_within if retry_within is not None else float("inf"), limit),
            )
            self._many("UPDATE alert_queue SET claimed_by = ?, claimed_at = ? WHERE id = ?",
                       [(claimant, now, row[0]) for row in rows])
        return [QueuedAlert(int(r[0]), r[1], r[2], r[3], int(r[4])) for r in rows]

    def retry_alert(self, alert_id: int, next_at: float, error: str) -> None:
        with self.transaction():
            self._exec("UPDATE alert_queue SET attempts = attempts + 1, next_at = ?, last_error = ?, "
                       "claimed_by = NULL, claimed_at = NULL WHERE id = ?", (next_at, error, alert_id))

    def renew_alert_claims(self, claimant: str, alert_ids: list[int], now: float) -> None:
        if not alert_ids:
            return
        with self.transaction():
            self._many("UPDATE alert_queue SET claimed_at = ? WHERE id = ? AND claimed_by = ?",
                       [(now, alert_id, claimant) for alert_id in alert_ids])

    def delete_alert(self, alert_id: int) -> None:
        with self.transaction():
            self._exec("DELETE FROM alert_queue WHERE id = ?", (alert_id,))

    # --- meta -----------------------------------------------------------------------------

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


def _decision(row: tuple[Any, ...]) -> Decision:
    id_, target, rule, action, created_at, context, status, finished_at, by, at = row
    return Decision(
        id_, target, rule, action, created_at, DecisionContext.from_json(load_json(context)), status, finished_at,
        by, at
    )


def _event(row: tuple[Any, ...]) -> HistoryEvent:
    id_, at, target, rule, series, kind, message, data = row
    return HistoryEvent(id_, at, target, rule, load_json(series), kind, message, load_json(data))


def _status(alert: str) -> object:
    """The `status` of a queued alert's JSON (None when it cannot be read)."""
    try:
        data = json.loads(alert)
    except ValueError:
        return None
    return data.get("status") if isinstance(data, dict) else None
