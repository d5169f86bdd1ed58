"""Target locks the stores hand out: the PostgreSQL advisory-lock key of a target, and the
in-process lock table of the single-process stores (SQLite). Target ownership over these
locks is watchdog.state.leases.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable

from watchdog.state.base import TargetLocks


def lock_key(name: str) -> int:
    """The stable signed 64-bit lock key of a target: the first 8 bytes of its sha256."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big", signed=True)


class ProcessLockTable:
    """Target locks that exist only in this process: the single-process stores' (SQLite).

    A lock ends with `unlock`, the session's `close`, or the process. Two sessions in one
    process exclude each other like two replicas would.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._holders: dict[str, ProcessTargetLocks] = {}
        self._closed = False

    def holder(self, target: str) -> str | None:
        """The replica_id holding `target`, or None."""
        with self._mutex:
            session = self._holders.get(target)
            return None if session is None else session.replica_id

    def holders(self) -> dict[str, str]:
        with self._mutex:
            return {target: session.replica_id for target, session in sorted(self._holders.items())}

    def session(self, replica_id: str, heartbeat: Callable[[float], None]) -> ProcessTargetLocks:
        return ProcessTargetLocks(self, replica_id, heartbeat)

    def close_all(self) -> None:
        """End every session, as the end of the process would (the store is closing)."""
        with self._mutex:
            self._closed = True
            self._holders.clear()


class ProcessTargetLocks(TargetLocks):
    def __init__(self, table: ProcessLockTable, replica_id: str, heartbeat: Callable[[float], None]):
        self._table = table
        self.replica_id = replica_id
        self._heartbeat = heartbeat
        self._closed = False

    def try_lock(self, target: str) -> bool:
        with self._table._mutex:
            if self._closed or self._table._closed:
                return False
            holder = self._table._holders.setdefault(target, self)
            return holder is self

    def unlock(self, target: str) -> None:
        with self._table._mutex:
            if self._table._holders.get(target) is self:
                del self._table._holders[target]

    def alive(self) -> bool:
        return not (self._closed or self._table._closed)

    def heartbeat(self, now: float) -> None:
        self._heartbeat(now)

    def close(self) -> None:
        with self._table._mutex:
            self._closed = True
            for target in [t for t, s in self._table._holders.items() if s is self]:
                del self._table._holders[target]
