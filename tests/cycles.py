"""What a piece of code leaves to the cyclic garbage collector.

The daemon runs the collector rarely (runtime/gctune.py: a young collection every 50,000 net
allocations), so objects that only it can free — reference cycles — pile up between its runs:
a few per tick were the soak's RSS growth (bench/README.md, "Soak"). Steady-state paths (a
tick, a scrape, a retried call) must leave none.
"""

from __future__ import annotations

import collections
import gc
import logging
from typing import Callable


def cyclic_garbage(run: Callable[[], object]) -> dict[str, int]:
    """Run `run()` with the collector off; the types (and counts) of the unreachable objects
    that only a collection frees afterwards. Empty: reference counting freed everything."""
    # Log records go to pytest's capture only: a test before that ran the CLI in process left
    # the root logger writing to that test's (closed) stream, and the error such a handler
    # raises and reports is a cycle of the logging module's, not of the code under test.
    root = logging.getLogger()
    kept = root.handlers[:]
    root.handlers[:] = [h for h in kept if type(h).__module__.startswith("_pytest")]
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        run()
        gc.collect()
        return dict(collections.Counter(type(o).__name__ for o in gc.garbage))
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
        root.handlers[:] = kept
