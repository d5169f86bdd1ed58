"""The C allocator under the daemon: at most two glibc malloc arenas.

glibc gives each thread that allocates while another holds the main heap an arena of its own,
up to 8 per core, and memory freed in an arena stays in it. The daemon's threads (scrapes,
source lanes, HTTP handlers) each take one, and the big buffers they allocate (pages read,
parsed lists, the `/metrics` text) leave each arena holding its own high-water mark: on the
1,000-target fleet, 16 arenas held 122 MB of which 72 MB was free (bench/memory.py).

`limit_arenas()`, called first thing by `model-watchdog run` (before any thread starts), sets
`mallopt(M_ARENA_MAX, 2)` — what `MALLOC_ARENA_MAX=2` in the environment does — unless the
environment already sets MALLOC_ARENA_MAX (glibc applied that value itself at start: the
operator's choice wins, e.g. MALLOC_ARENA_MAX=8 to undo this). `trim()`, `malloc_trim(0)`,
runs after every tick: the pages a tick and the `/metrics` reads since the last one freed go
back to the OS (10–20 MB lower RSS on that fleet; a few milliseconds, without the GIL).
Outside glibc (musl, macOS) both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("watchdog.memory")

ARENA_MAX = 2
M_ARENA_MAX = -8  # <malloc.h>
ENV = "MALLOC_ARENA_MAX"

_libc: Any = None


def libc() -> Any:
    """The process's C library when it is glibc (it has `mallopt` and `malloc_trim`), else None."""
    global _libc
    if _libc is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        except OSError:
            lib = False
        _libc = lib if lib and hasattr(lib, "mallopt") and hasattr(lib, "malloc_trim") else False
    return _libc or None


def limit_arenas(environ: Mapping[str, str] = os.environ, lib: Any = None) -> str:
    """At most ARENA_MAX malloc arenas from now on; returns (and logs, at debug) what was done."""
    message = _limit_arenas(environ, lib)
    log.debug("%s", message)
    return message


def _limit_arenas(environ: Mapping[str, str], lib: Any) -> str:
    if ENV in environ:
        return f"malloc arenas: {ENV}={environ[ENV]} from the environment"
    lib = lib if lib is not None else libc()
    if lib is None:
        return "malloc arenas: not glibc, left alone"
    if lib.mallopt(ctypes.c_int(M_ARENA_MAX), ctypes.c_int(ARENA_MAX)) != 1:
        return "malloc arenas: mallopt(M_ARENA_MAX) refused, left alone"
    return f"malloc arenas: at most {ARENA_MAX} (set {ENV} to choose another number)"


def trim(lib: Any = None) -> bool:
    """Give the free pages of every malloc arena back to the OS; True if glibc released any."""
    lib = lib if lib is not None else libc()
    return lib is not None and lib.malloc_trim(ctypes.c_size_t(0)) == 1
