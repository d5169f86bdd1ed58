"""Target ownership across replicas: each target is acted on by exactly one live replica.

    ownership = TargetOwnership(store, replica_id="mw-1")
    ownership.acquire(["fraud", "churn"])     # -> the targets this replica owns now
    if ownership.still_owned("fraud"): ...    # right before acting: is the session alive?
    ownership.release_all()                   # on shutdown, so others take over at once

A target's lock lives in a session with the store (`StateStore.open_target_locks`). With
PostgreSQL that is a session-level advisory lock on a dedicated connection: when the replica
dies, the server ends the session and the lock is free for the next replica's `acquire` —
at once when the socket closes (process death), within ~11 s on a network partition (TCP
keepalives). The SQLite store keeps its locks inside its process: one daemon owns all.

A lock cannot rule out two replicas acting at once (a partitioned owner learns it lost the
lock only at its next check), so actuators also compare-and-set before writing; see
docs/replicas.md. An unfinished decision moves between replicas with
`StateStore.claim_decision`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterable

from watchdog.clock import Clock, SystemClock
from watchdog.errors import StateError
from watchdog.state import open_store
from watchdog.state.base import Replica, StateStore, TargetLocks

log = logging.getLogger("watchdog.state.leases")


class TargetOwnership:
    """Which targets this replica owns; thread-safe.

    `store_or_dsn` is an open store (not closed here) or a URL/path for `open_store` (closed
    by `close()`). Ownership only grows in `acquire` and is lost all at once, never
    partially: when the lock session ends, every target goes, is logged, and the next
    `acquire` opens a new session.
    """

    def __init__(self, store_or_dsn: StateStore | str, replica_id: str, *, clock: Clock | None = None):
        if not replica_id:
            raise ValueError("replica_id must not be empty")
        if isinstance(store_or_dsn, str):
            self._store, self._owns_store = open_store(store_or_dsn), True
        else:
            self._store, self._owns_store = store_or_dsn, False
        self.replica_id = replica_id
        self._clock = clock or SystemClock()
        self._started_at = self._clock.now()
        self._mutex = threading.RLock()
        self._locks: TargetLocks | None = None
        self._owned: set[str] = set()
        #: why ownership was last lost, for status pages; "" if never
        self.last_loss = ""

    def acquire(self, targets: Iterable[str], limit: int | None = None) -> set[str]:
        """Try to own each of `targets` without waiting, up to `limit` in all; returns every
        target owned now.

        Also records the replica's heartbeat. Raises StateError when the store is
        unreachable (ownership is then lost) or the connection is transaction-pooled.
        """
        with self._mutex:
            locks = self._session()
            try:
                locks.heartbeat(self._clock.now())
                for target in targets:
                    if limit is not None and len(self._owned) >= limit:
                        break
                    if target not in self._owned and locks.try_lock(target):
                        self._owned.add(target)
            except StateError as exc:
                if not locks.alive():
                    self._lose(str(exc))
                raise
            return set(self._owned)

    def owned(self) -> set[str]:
        """The targets owned as of the last `acquire` or check (no round trip)."""
        with self._mutex:
            return set(self._owned)

    def still_owned(self, target: str) -> bool:
        """Whether `target` is still ours: one cheap round trip to the lock session.

        When the session is gone, all ownership is dropped (and logged) at once.
        """
        with self._mutex:
            if target not in self._owned or self._locks is None:
                return False
            if not self._locks.alive():
                self._lose("the lock session with the state store ended")
                return False
            return True

    def release(self, target: str) -> None:
        """Give up one target (to balance targets across replicas)."""
        with self._mutex:
            if target in self._owned and self._locks is not None:
                self._locks.unlock(target)
                self._owned.discard(target)

    def owners(self) -> dict[str, str]:
        """target -> replica_id for every target any replica owns now."""
        return self._store.target_owners()

    def release_all(self) -> None:
        """Give up every target at once so other replicas can take them over."""
        with self._mutex:
            locks, self._locks = self._locks, None
            self._owned.clear()
            if locks is not None:
                locks.close()

    def close(self) -> None:
        """`release_all`, then close the store if this object opened it."""
        try:
            self.release_all()
        finally:
            if self._owns_store:
                self._store.close()

    def __enter__(self) -> TargetOwnership:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- internals ------------------------------------------------------------------------

    def _session(self) -> TargetLocks:
        if self._locks is not None and not self._locks.alive():
            self._lose("the lock session with the state store ended")
        if self._locks is None:
            replica = Replica(self.replica_id, socket.gethostname(), os.getpid(),
                              self._started_at, self._clock.now())
            self._locks = self._store.open_target_locks(replica)
            if self.last_loss:
                log.warning("replica %s: opened a new lock session after losing ownership",
                            self.replica_id)
        return self._locks

    def _lose(self, reason: str) -> None:
        lost, self._owned = sorted(self._owned), set()
        locks, self._locks = self._locks, None
        self.last_loss = reason
        if lost:
            log.error("replica %s lost ownership of %s: %s; other replicas may take them over",
                      self.replica_id, ", ".join(lost), reason)
        if locks is not None:
            try:
                locks.close()
            except StateError:
                pass  # the session is gone already; that was the point
