"""The StateStore interface: everything model-watchdog must remember across restarts.

The store keeps rule states (opaque JSON text owned by the rule engine), holds, the versions
seen per target, the action journal (decisions and their steps) and an append-only history.
It knows nothing about rule evaluation and never reads the clock: every time is a float of
epoch seconds handed in by the caller.

Contract for implementations:

* `transaction()` makes everything inside it commit atomically or not at all. Nested calls
  join the outer transaction: their writes commit only when the outermost block does. An
  exception leaving a nested block undoes that block's writes, even if the outer block
  catches it. A method called outside any transaction commits on its own before returning.
* Once a method has returned outside a transaction, its writes survive a crash.
* History rows are never updated; only `prune` (retention) deletes them, and what it
  keeps is listed there.
* Dict fields are stored as JSON; float NaN and ±Infinity become `null` (JSON has no NaN).
* Raises `StateError` when the store is unusable (corrupt, locked, full, missing, newer
  schema) or a record conflicts (duplicate decision id, unknown decision or step), and
  `ValueError` for a status that is not one of the documented values.
* Safe to call from several threads: the scheduler thread writes, HTTP/CLI threads read.

Replicas (see docs/replicas.md): `open_target_locks` gives a replica exclusive, session-bound
locks on targets (wrapped by `watchdog.state.leases.TargetOwnership`), `target_owners` and
`replicas` show who holds what, and `claim_decision` hands an unfinished decision to exactly
one replica. A store that cannot be shared between processes (SQLite) keeps the locks inside
its own process: there, one daemon owns everything.

`StateStore` is every part at once. Code that needs a few parts asks for their protocols
(`RuleStates`, `Holds`, `Versions`, `Journal`, `History`, `Releases`, `Replicas`,
`Incidents`, `AlertQueue`, `Meta`), so a test can hand it a small fake and a reader sees
what it touches. Both SQL stores implement them in `watchdog.state.sql`.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from watchdog.state.decisions import DecisionContext

#: (target, rule, series_key) — the key of one rule state.
RuleStateKey = tuple[str, str, str]

DECISION_STATUSES = ("pending", "running", "succeeded", "failed", "skipped")
#: decisions still to be carried out (or resumed after a crash)
UNFINISHED_STATUSES = ("pending", "running")
STEP_STATUSES = ("started", "succeeded", "failed", "skipped")
#: the statuses `finish_step` accepts
STEP_END_STATUSES = ("succeeded", "failed", "skipped")


@dataclass(frozen=True)
class Hold:
    """Automatic actions on `target` are suspended until the hold is deleted."""

    target: str
    since: float
    decision_id: str | None
    version: str | None
    reason: str


@dataclass(frozen=True)
class VersionRecord:
    target: str
    version: str
    first_seen: float
    last_seen: float
    bad: bool
    bad_reason: str


RELEASE_STATES = ("unknown", "healthy", "bad")


@dataclass(frozen=True)
class Release:
    """What was deployed together: component → version, recorded when it was deployed."""

    id: int | None
    target: str
    created_at: float
    components: dict[str, str]
    note: str = ""
    origin: str = "cli"  # cli | api | discovered
    state: str = "unknown"  # one of RELEASE_STATES


@dataclass(frozen=True)
class Decision:
    """One decision to act; `status` is one of DECISION_STATUSES."""

    id: str
    target: str
    rule: str
    action: str
    created_at: float
    context: DecisionContext  # JSON only in the store: to_json() / from_json()
    status: str
    finished_at: float | None = None
    #: the replica executing it (see `StateStore.claim_decision`) and since when
    claimed_by: str | None = None
    claimed_at: float | None = None


@dataclass(frozen=True)
class Step:
    """One actuator step of a decision; `attempts` counts `start_step` calls."""

    decision_id: str
    index: int
    actuator: str
    status: str
    started_at: float
    finished_at: float | None
    message: str
    attempts: int


@dataclass(frozen=True)
class HistoryEvent:
    """One audit-history entry; `id` is None until appended.

    `kind` is e.g. state, decision, step, alert, hold, resume, version, no_data, error.
    """

    id: int | None
    at: float
    target: str
    rule: str | None
    series: dict[str, str]
    kind: str
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QueuedAlert:
    """One alert delivery waiting in the store (it survives a restart until delivered)."""

    id: int
    alerter: str
    alert: str  # JSON of watchdog.alerters.base.Alert
    queued_at: float
    attempts: int = 0  # failed deliveries so far (retry_alert)


@dataclass(frozen=True)
class Replica:
    """One daemon process sharing the store; `last_seen` is its latest heartbeat."""

    replica_id: str
    host: str
    pid: int
    started_at: float
    last_seen: float


class TargetLocks(abc.ABC):
    """One replica's exclusive locks on targets, bound to one session with the store.

    A lock is held until `unlock`, `close`, or the end of the session — including the death
    of the process, which is what lets another replica take a dead replica's targets. Once
    `alive()` has returned False every lock is gone for good; open a new session. Calls are
    serialised by the caller (`TargetOwnership`); raises StateError.
    """

    @abc.abstractmethod
    def try_lock(self, target: str) -> bool:
        """Take the lock of `target` without waiting; True if this session holds it now."""

    @abc.abstractmethod
    def unlock(self, target: str) -> None:
        """Give up the lock of `target`; a lock not held is ignored."""

    @abc.abstractmethod
    def alive(self) -> bool:
        """Cheaply check that the session, and so every lock of it, still exists."""

    @abc.abstractmethod
    def heartbeat(self, now: float) -> None:
        """Record that the replica is alive at `now` (its `Replica.last_seen`)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release every lock and end the session; closing twice is harmless."""


# --- the store's parts: each consumer asks for the protocols it uses ---------------------


class Transactional(Protocol):
    """Every part joins the store's transactions (see the module docstring)."""

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """Commit everything inside atomically; nested calls join the outer one."""


class RuleStates(Transactional, Protocol):
    """The rule engine's per-series states, opaque JSON text."""

    @abc.abstractmethod
    def load_rule_states(self) -> dict[RuleStateKey, str]:
        """All rule states: (target, rule, series_key) -> JSON text."""

    @abc.abstractmethod
    def save_rule_states(
        self, upserts: dict[RuleStateKey, str], deletes: Iterable[RuleStateKey]
    ) -> None:
        """Insert or replace `upserts` and remove `deletes` (missing keys are ignored)."""


class Holds(Transactional, Protocol):
    """Targets whose automatic actions are suspended."""

    @abc.abstractmethod
    def holds(self) -> dict[str, Hold]:
        """Current holds by target."""

    @abc.abstractmethod
    def put_hold(self, hold: Hold) -> None:
        """Create or replace the hold of `hold.target`."""

    @abc.abstractmethod
    def delete_hold(self, target: str) -> Hold | None:
        """Remove and return the hold of `target`; None if there was none."""


class Versions(Transactional, Protocol):
    """The versions seen per target, and which of them are bad."""

    @abc.abstractmethod
    def observe_version(self, target: str, version: str, now: float) -> bool:
        """Record that `target` runs `version` at `now`.

        Returns True on a first sighting or when `version` differs from the version
        observed last, False when it is the same version as last time.
        """

    @abc.abstractmethod
    def mark_bad(self, target: str, version: str, reason: str) -> None:
        """Flag a seen version as bad; StateError if it was never observed."""

    @abc.abstractmethod
    def versions(self, target: str) -> list[VersionRecord]:
        """Versions seen for `target`, newest `last_seen` first."""

    def versions_of(self, targets: Iterable[str]) -> dict[str, list[VersionRecord]]:
        """`versions(t)` for each of `targets` (a store may read them all at once)."""
        return {target: self.versions(target) for target in targets}

    @abc.abstractmethod
    def current_version(self, target: str) -> str | None:
        """The version observed last for `target`, or None."""

    def current_versions(self, targets: Iterable[str]) -> dict[str, str | None]:
        """`current_version(t)` for each of `targets` (a store may read them all at once)."""
        return {target: self.current_version(target) for target in targets}


class Journal(Transactional, Protocol):
    """The action journal: decisions and their steps."""

    @abc.abstractmethod
    def create_decision(self, decision: Decision) -> None:
        """Record a new decision; StateError if `decision.id` already exists."""

    @abc.abstractmethod
    def get_decision(self, decision_id: str) -> Decision | None:
        """The decision with this id, or None."""

    @abc.abstractmethod
    def set_decision_status(
        self, decision_id: str, status: str, finished_at: float | None = None
    ) -> None:
        """Change a decision's status; StateError if the decision does not exist."""

    @abc.abstractmethod
    def unfinished_decisions(self) -> list[Decision]:
        """Decisions pending or running, oldest first — what to resume after a crash."""

    @abc.abstractmethod
    def claim_decision(self, decision_id: str, replica_id: str, now: float) -> bool:
        """Atomically record `replica_id` as the replica executing an unfinished decision.

        True — and `claimed_by`/`claimed_at` are set — if the decision is pending or running
        and no other replica holds the lock of its target (see `open_target_locks`): the
        target's owner claims, and when the owner dies or loses the target, the replica
        that takes the target over claims the decision again and resumes it. False if the
        decision is finished or another replica holds the target. StateError if the
        decision does not exist. Claims protect only where replicas lock their targets.
        """

    @abc.abstractmethod
    def decisions(self, target: str | None = None, limit: int = 50) -> list[Decision]:
        """Most recent decisions (of `target` if given), newest first."""

    @abc.abstractmethod
    def start_step(self, decision_id: str, index: int, actuator: str, now: float) -> Step:
        """Mark step `index` started at `now`; a restart of an existing step adds an attempt.

        StateError if the decision does not exist.
        """

    @abc.abstractmethod
    def finish_step(
        self, decision_id: str, index: int, status: str, now: float, message: str
    ) -> None:
        """Record the end of a started step; StateError if it was never started."""

    @abc.abstractmethod
    def steps(self, decision_id: str) -> list[Step]:
        """Steps of a decision in index order."""


class History(Transactional, Protocol):
    """The append-only audit history."""

    @abc.abstractmethod
    def append(self, event: HistoryEvent) -> int:
        """Append `event` (its `id` is ignored) and return the new, increasing id."""

    @abc.abstractmethod
    def history(
        self,
        target: str | None = None,
        limit: int = 50,
        kinds: Iterable[str] | None = None,
        since_id: int | None = None,
    ) -> list[HistoryEvent]:
        """Events newest first, optionally only of `target`, of `kinds`, or after `since_id`."""

    @abc.abstractmethod
    def prune(self, cutoff: float) -> dict[str, int]:
        """Retention (`history_retention`): delete the history older than `cutoff` and the
        decisions, releases and versions it no longer needs; the rows deleted per table. What
        is kept however old: SQLStateStore.prune."""


class Releases(Transactional, Protocol):
    """What was deployed together, for whole-stack rollbacks."""

    @abc.abstractmethod
    def record_release(self, release: Release) -> Release:
        """Append a release (its `id` is assigned); returns it as stored."""

    @abc.abstractmethod
    def releases(self, target: str, limit: int = 50) -> list[Release]:
        """The target's releases, newest first (the first one is the current release)."""

    def current_releases(self, targets: Iterable[str]) -> dict[str, Release]:
        """The current (newest) release of each of `targets` that has one: `releases(t, 1)[0]`
        for each (a store may read them all at once)."""
        out: dict[str, Release] = {}
        for target in targets:
            newest = self.releases(target, limit=1)
            if newest:
                out[target] = newest[0]
        return out

    @abc.abstractmethod
    def set_release_state(self, release_id: int, state: str) -> None:
        """Mark a release healthy or bad; raises StateError for an unknown id."""


class Replicas(Protocol):
    """Daemons sharing the store and the targets each of them locks (docs/replicas.md)."""

    @abc.abstractmethod
    def open_target_locks(self, replica: Replica) -> TargetLocks:
        """Register `replica` and open a lock session for it (see `TargetLocks`).

        StateError if another live replica already uses `replica.replica_id`.
        """

    @abc.abstractmethod
    def target_owners(self) -> dict[str, str]:
        """target -> replica_id of every target lock currently held."""

    @abc.abstractmethod
    def replicas(self) -> list[Replica]:
        """Every replica that ever registered, most recently seen first."""


class Incidents(Transactional, Protocol):
    """Each target's rollback incident, JSON text owned by watchdog.rollback."""

    @abc.abstractmethod
    def incidents(self) -> dict[str, str]:
        """Every target's rollback incident: target -> JSON text."""

    @abc.abstractmethod
    def incident(self, target: str, *, for_update: bool = False) -> str | None:
        """The incident of `target` as JSON text, or None. With `for_update`, inside a
        transaction, concurrent writers of the same incident wait until it commits."""

    @abc.abstractmethod
    def save_incident(self, target: str, state: str, now: float) -> None:
        """Create or replace the incident of `target`."""


class AlertQueue(Transactional, Protocol):
    """Alert deliveries waiting in the store until delivered (they survive a restart)."""

    @abc.abstractmethod
    def enqueue_alert(self, alerter: str, alert: str, now: float, dedup_key: str = "") -> None:
        """Queue one delivery (alerter name, alert JSON) until `delete_alert` confirms it.
        Deliveries of one (alerter, `dedup_key`) are claimed in the order queued; a delivery
        of that key waiting for a retry with the same status is replaced by this one."""

    @abc.abstractmethod
    def claim_alerts(self, claimant: str, now: float, limit: int = 20,
                     stale_after: float = 60.0, retry_within: float | None = None) -> list[QueuedAlert]:
        """Oldest first, up to `limit` queued deliveries nobody else is delivering (unclaimed,
        or claimed more than `stale_after` seconds ago: its claimant died), due (a retry's
        `next_at` reached, or more than `retry_within` seconds ahead: planned before the clock
        stepped back) and first of their (alerter, dedup_key) still queued, now claimed
        by `claimant`. Two claimants never get the same delivery at once."""

    @abc.abstractmethod
    def retry_alert(self, alert_id: int, next_at: float, error: str) -> None:
        """A claimed delivery failed: count the attempt, keep it unclaimed until `next_at`."""

    def renew_alert_claims(self, claimant: str, alert_ids: list[int], now: float) -> None:
        """`claimant` is still delivering these (claimed by it): their claims are as of `now`,
        so another claimant does not take them for a dead one's. (A store whose queue no other
        process reads may do nothing.)"""

    @abc.abstractmethod
    def delete_alert(self, alert_id: int) -> None:
        """Forget a delivery that was made (or given up); an unknown id is ignored."""


class Meta(Transactional, Protocol):
    """Small named values (schema_version, pauses, step processes)."""

    @abc.abstractmethod
    def get_meta(self, key: str) -> str | None:
        """A small named value (e.g. schema_version), or None."""

    @abc.abstractmethod
    def set_meta(self, key: str, value: str) -> None:
        """Create or replace a named value."""


class StateStore(RuleStates, Holds, Versions, Journal, History, Releases, Replicas, Incidents,
                 AlertQueue, Meta, abc.ABC):
    """Durable state of the daemon, every part at once; see the module docstring for the
    contract. Code that needs only some parts asks for those protocols instead."""

    # --- lifecycle ----------------------------------------------------------------------

    def lock_for_daemon(self) -> None:
        """Make this process the only daemon on the store; StateError if another one runs.

        A store shared by replicas (PostgreSQL) allows many daemons and does nothing here;
        a store kept in one file (SQLite) takes an exclusive lock, held until `close()`.
        """

    def lost(self) -> str:
        """Why the store this object opened is no longer there (deleted, replaced), or "".

        Cheap enough to call every tick. A store that is lost must not be acted on: its
        writes would go nowhere (an unlinked file) and its reads describe a past.
        """
        return ""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the store; further calls raise StateError. Closing twice is harmless."""

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
