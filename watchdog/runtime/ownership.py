"""Which targets this replica guards: ownership through the state store, balanced.

Each tick the daemon asks `Owner.refresh(targets, now)`. A replica takes at most its fair
share (targets ÷ live replicas, rounded up); one that holds more than its share gives one up
per tick — never one with a rollback in progress — so a newly started replica receives work
within a few ticks. A dead replica's targets are free as soon as the store ends its session
(see docs/replicas.md for the bounds).
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket

from watchdog.errors import StateError
from watchdog.state.base import StateStore
from watchdog.state.leases import TargetOwnership

log = logging.getLogger("watchdog.ownership")


def new_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


class Owner:
    def __init__(self, store: StateStore, replica_id: str | None = None, live_window: float = 30.0):
        self.store = store
        self.replica_id = replica_id or new_replica_id()
        self.ownership = TargetOwnership(store, self.replica_id)
        self.live_window = live_window
        self.owned: set[str] = set()

    def refresh(self, targets: list[str], now: float) -> tuple[set[str], set[str]]:
        """Returns (owned now, newly acquired).

        On a store failure nothing is owned (another replica may take over) and StateError
        is raised: the tick fails visibly (last error, failure counter) instead of quietly
        guarding nothing — e.g. a full disk would otherwise look like a healthy daemon."""
        before = set(self.owned)
        try:
            live = [r for r in self.store.replicas() if now - r.last_seen < self.live_window]
            share = math.ceil(len(targets) / max(1, len(live) or 1))
            owned = self.ownership.owned()
            if len(owned) > share:
                self._give_up_one(owned)
            self.owned = self.ownership.acquire(sorted(targets), limit=share)
        except StateError as exc:
            self.owned = set()
            for target in sorted(before):
                log.warning("replica %s no longer guards %s", self.replica_id, target)
            raise StateError(f"replica {self.replica_id} cannot refresh target ownership: {exc}") from exc
        gained = self.owned - before
        for target in sorted(gained):
            log.info("replica %s now guards %s", self.replica_id, target)
        for target in sorted(before - self.owned):
            log.warning("replica %s no longer guards %s", self.replica_id, target)
        return set(self.owned), gained

    def _give_up_one(self, owned: set[str]) -> None:
        busy = {d.target for d in self.store.unfinished_decisions()}
        candidates = sorted(owned - busy)
        if candidates:
            self.ownership.release(candidates[-1])

    def still_owned(self, target: str) -> bool:
        return self.ownership.still_owned(target)

    def close(self) -> None:
        self.ownership.close()
