"""Run `model-watchdog ARGS…` in this process with a probe thread (bench/soak.py --probe).

    python bench/soak_probe.py OUT.jsonl INTERVAL [--trace] [--collect-at SECONDS] -- -c watchdog.yaml run

Every INTERVAL seconds the probe appends one JSON line to OUT.jsonl with what the process's
memory is made of, from inside: glibc's `mallinfo2` and each arena of `malloc_info` (system
and in-use bytes), SQLite's `sqlite3_memory_used` (the libsqlite3 `_sqlite3` loaded), CPython's
allocated blocks and object count, the threads alive (and how many were ever started), and,
with --trace, the top tracemalloc growth since the first line; the collector's counts and
which types of tracked objects grew since the first line; `--collect-at S`: one `gc.collect()`
at S seconds (what it found is in that line: cyclic garbage the thresholds left). Bench-only: the daemon itself
has no probe. The probe's own thread is one more long-lived thread; its snapshots allocate
only while it writes a line.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import os
import re
import sys
import threading
import time
import tracemalloc
from typing import Any


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _libc() -> Any:
    lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    lib.mallinfo2.restype = _Mallinfo2
    lib.fopen.restype = ctypes.c_void_p
    lib.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    lib.fclose.argtypes = [ctypes.c_void_p]
    lib.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    return lib


def _sqlite() -> Any:
    import _sqlite3  # noqa: F401  (loads libsqlite3 into the process; dlopen by soname finds that copy)
    lib = ctypes.CDLL("libsqlite3.so.0")
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    lib.sqlite3_memory_highwater.restype = ctypes.c_int64
    lib.sqlite3_memory_highwater.argtypes = [ctypes.c_int]
    return lib


def malloc_arenas(libc: Any, path: str) -> list[dict[str, int]]:
    """Each heap of `malloc_info`: its number, system bytes (current) and free bytes (total)."""
    handle = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, handle)
    libc.fclose(handle)
    with open(path) as f:
        text = f.read()
    heaps = []
    for m in re.finditer(r'<heap nr="(\d+)">(.*?)</heap>', text, re.S):
        body = m.group(2)
        total = re.search(r'<total type="fast" count="\d+" size="(\d+)"/>\s*<total type="rest" count="\d+" size="(\d+)"/>', body)
        current = re.search(r'<system type="current" size="(\d+)"/>', body)
        heaps.append({"nr": int(m.group(1)), "system": int(current.group(1)) if current else 0,
                      "free": (int(total.group(1)) + int(total.group(2))) if total else 0})
    return heaps


def probe(out: str, interval: float, trace: bool, collect_at: float | None) -> None:
    libc, sqlite = _libc(), _sqlite()
    scratch = out + ".malloc_info.xml"
    first: tracemalloc.Snapshot | None = None
    started = threading.Thread.__init__
    counter = {"threads_started": 0}

    def counting_init(self: threading.Thread, *a: Any, **k: Any) -> None:
        counter["threads_started"] += 1
        started(self, *a, **k)

    threading.Thread.__init__ = counting_init  # type: ignore[method-assign]
    t0 = time.monotonic()
    census0: dict[str, int] | None = None
    collected_at = None
    while True:
        time.sleep(interval)
        info = libc.mallinfo2()
        line: dict[str, Any] = {
            "t": round(time.monotonic() - t0, 1),
            "mallinfo": {"arena": info.arena, "in_use": info.uordblks, "free": info.fordblks, "mmap": info.hblkhd,
                         "mmap_count": info.hblks, "keepcost": info.keepcost},
            "arenas": malloc_arenas(libc, scratch),
            "sqlite_used": sqlite.sqlite3_memory_used(), "sqlite_high": sqlite.sqlite3_memory_highwater(0),
            "py_blocks": sys.getallocatedblocks(), "py_objects": len(gc.get_objects()) + gc.get_freeze_count(),
            "threads": threading.active_count(), "threads_started": counter["threads_started"],
            "thread_names": sorted({re.sub(r"\d+", "N", t.name) for t in threading.enumerate()}),
        }
        line["gc_count"], line["gc_stats"] = gc.get_count(), gc.get_stats()
        census: dict[str, int] = {}
        for obj in gc.get_objects():
            name = type(obj).__qualname__
            census[name] = census.get(name, 0) + 1
        if census0 is None:
            census0 = census
        else:
            diff = sorted(((n - census0.get(k, 0), k) for k, n in census.items()), reverse=True)[:15]
            line["census_growth"] = [[k, d] for d, k in diff if d]
        if collect_at is not None and collected_at is None and line["t"] >= collect_at:
            collected_at = line["t"]
            line["gc_collect"] = gc.collect()  # what the tuned thresholds left uncollected (cycles)
        if trace:
            snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
            line["traced"] = tracemalloc.get_traced_memory()[0]
            if first is None:
                first = snap
            else:
                line["growth"] = [[str(s.traceback), s.size_diff, s.count_diff]
                                  for s in snap.compare_to(first, "lineno")[:12]]
        with open(out, "a") as f:
            f.write(json.dumps(line) + "\n")


def main() -> int:
    out, interval = sys.argv[1], float(sys.argv[2])
    rest = sys.argv[3:]
    own = rest[: rest.index("--")]
    trace = "--trace" in own
    collect_at = float(own[own.index("--collect-at") + 1]) if "--collect-at" in own else None
    if trace:
        tracemalloc.start(8)
    argv = rest[rest.index("--") + 1:]
    threading.Thread(target=probe, args=(out, interval, trace, collect_at), name="soak-probe", daemon=True).start()
    from watchdog.cli import main as cli_main
    sys.argv = ["model-watchdog", *argv]
    return cli_main(argv)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
