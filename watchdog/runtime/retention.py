"""Retention: the daemon prunes what the state store no longer needs (`history_retention`).

At most once per EVERY (an hour): the tick path asks `claim()` (a float comparison, so ticks
in between cost nothing) and hands the prune to the daemon's background worker, off the tick. The store deletes in batches of short
transactions (SQLStateStore.prune), so a tick or a CLI waits at most one batch. Each prune
is logged with its counts and cut-off and counted on /metrics
(`model_watchdog_history_pruned_rows_total{table}`); it writes no audit row of its own.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from watchdog.clock import rfc3339
from watchdog.errors import StateError

log = logging.getLogger("watchdog.retention")

EVERY = 3600.0  # seconds between prunes


class Retention:
    """Prunes `store` of rows older than `retention()` seconds (0: never), once per EVERY."""

    def __init__(self, store: Any, retention: Callable[[], float], counter: Any, *, every: float = EVERY):
        self.store, self.retention, self.counter, self.every = store, retention, counter, every
        self.next_at: float | None = None  # the first tick prunes (a restarted daemon catches up)

    def due(self, now: float) -> bool:
        return self.retention() > 0 and (self.next_at is None or now >= self.next_at)

    def claim(self, now: float) -> float | None:
        """The cut-off of the prune due at `now` (the next is due EVERY later), or None."""
        if not self.due(now):
            return None
        self.next_at = now + self.every
        return now - self.retention()

    def prune(self, cutoff: float) -> dict[str, int] | None:
        """The rows deleted per table, None when it failed."""
        try:
            counts = self.store.prune(cutoff)
        except StateError as exc:  # retried at the next hour; not worth failing a tick over
            log.warning("cannot prune the state store (cut-off %s): %s", rfc3339(cutoff), exc)
            return None
        for table, rows in counts.items():
            if rows:
                self.counter.labels(table=table).inc(rows)
        log.info("pruned the state store of rows older than %s: %s", rfc3339(cutoff),
                 ", ".join(f"{rows} {table}" for table, rows in counts.items()))
        return counts
