"""Python's cyclic garbage collector, tuned for the daemon's large, long-lived heap.

A fleet daemon holds a few hundred thousand long-lived container objects (the configuration,
10,000 rules and their states, the series store, the metric families), and each tick allocates
and frees a few hundred thousand short-lived ones (samples, verdicts, query results). With
CPython's default thresholds (700, 10, 10) a collection of generation 0 runs every 700 net
allocations, and every tenth of those the older generations are traversed as well: on the
1,000 × 10 fleet that was about a quarter of the engine's CPU per tick (bench/engine.py).
Almost nothing the daemon frees is cyclic: reference counting frees it, and the collector
only has to find the rare cycle.

`settle()`, called when the daemon starts serving and after each successful reload:
- collects once (what start-up or the old configuration left in cycles is freed now; at start
  the young generations only: see `settle`),
- `gc.freeze()`s the survivors — they move to the permanent generation and are never
  traversed again (they are still freed by reference counting when dropped);
- raises the generation-0 threshold (THRESHOLD): a young collection every 50,000 net
  allocations, the older generations accordingly less often.

Memory stays bounded: cyclic garbage is still collected, only later (a young collection every
50,000 allocations instead of 700; a full one still whenever the long-lived heap grew by a
quarter, CPython's own rule). Frozen objects that become cyclic garbage are not collected until
the next `settle()`, which `gc.unfreeze()`s first: a reload drops the old configuration, its
engine and plugins, and the reload's `settle()` frees them. Between reloads the frozen set is
what start-up built and the daemon keeps. bench/README.md ("Garbage collector") has the figures.

Only the long-running daemon (`Daemon.start`) calls this: tests, `check`, `backtest` and other
one-shot commands keep CPython's defaults.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger("watchdog.gc")

THRESHOLD = (50_000, 20, 100)


def settle(threshold: tuple[int, int, int] = THRESHOLD, *, full: bool = True) -> None:
    """Collect, freeze what survived, and set the collector's thresholds (see the module).

    `full=False` (the daemon's start) collects the young generations only: what start-up holds
    unreachable in the old generation is only what died after its promotion, and on the fleet a
    full traversal there found nothing (98,700 tracked objects, 0 unreachable after the young
    collection) for 0.03 s of the first tick's CPU, before ready. What it would have found stays
    frozen until the next settle (a reload's, full), as a cycle dropped after a settle does."""
    gc.unfreeze()  # what the last settle() froze is collectable again (a reload dropped some of it)
    found = gc.collect() if full else gc.collect(1)
    gc.freeze()
    gc.set_threshold(*threshold)
    log.debug("gc settled: %d unreachable objects collected, %d frozen, thresholds %s",
              found, gc.get_freeze_count(), threshold)
