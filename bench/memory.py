"""Benchmark: where the daemon's memory goes on the fleet (issue 13, RSS goal ≤ 120 MB).

    .venv/bin/python bench/memory.py [--targets 1000] [--rules 10] [--ticks 4] [--no-trace] [--top 25]

Builds the real `Daemon` in this process from bench/fleet.py's `write_config` (1,000 scraped
model servers × 10 templated rules), against the real fleet server (bench/fleetserver.py, its
own process), and runs `--ticks` ticks on a fake clock 15 s apart (each one a real scrape of
every target, so the series store fills as in the daemon), then renders `/metrics` once.

Reports the RSS after each phase (import, load, Daemon(), each tick, /metrics) and, unless
`--no-trace`, tracemalloc's view: the Python heap grouped by file:line and by file, and a
census of live objects by type (sizes from sys.getsizeof over the objects the collector
tracks and what they refer to). The rest of the RSS is not Python objects: the interpreter and
extension modules' code and data, glibc malloc arenas (one per thread that allocates, up to
8 × cores) and their fragmentation, thread stacks. `malloc_info` (glibc) is summarised for that.

Run it without tracing (`--no-trace`) for RSS figures: tracemalloc's own bookkeeping adds
to the RSS. `--code DIR` puts DIR first on sys.path (a baseline tree, as bench/fleet.py).
Writes bench/results/memory-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def malloc_summary() -> dict[str, float]:
    """glibc's own view (malloc_info XML): arenas, bytes handed out by mmap/sbrk, bytes free inside."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if not hasattr(libc, "malloc_info") or not hasattr(libc, "open_memstream"):
        return {}
    buf, size = ctypes.c_char_p(), ctypes.c_size_t()
    libc.open_memstream.restype = ctypes.c_void_p
    stream = libc.open_memstream(ctypes.byref(buf), ctypes.byref(size))
    libc.malloc_info(0, ctypes.c_void_p(stream))
    libc.fclose(ctypes.c_void_p(stream))
    xml = ctypes.string_at(buf, size.value).decode()
    libc.free(buf)
    arenas = len(re.findall(r"<heap nr=", xml))
    total = re.search(r'</heap>\s*<total type="fast"[^>]*/>\s*<total type="rest" count="\d+" size="(\d+)"/>\s*'
                      r'<total type="mmap" count="\d+" size="(\d+)"/>\s*<system type="current" size="(\d+)"/>', xml)
    out = {"arenas": float(arenas)}
    if total:
        out.update(free_in_arenas_mb=int(total.group(1)) / 2**20, mmapped_mb=int(total.group(2)) / 2**20,
                   arena_system_mb=int(total.group(3)) / 2**20)
    return out


def obmalloc_summary() -> dict[str, float]:
    """CPython's small-object allocator (sys._debugmallocstats): 1 MiB arenas held, and how much
    of them live objects fill — an arena goes back to the OS only when all of it is free."""
    with tempfile.TemporaryFile() as f:
        saved = os.dup(2)
        sys.stderr.flush()
        os.dup2(f.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        text = f.read().decode()
    def number(pattern: str) -> float:
        found = re.search(pattern + r"\s*=\s*([\d,]+)", text)
        return int(found.group(1).replace(",", "")) / 2**20 if found else float("nan")
    return {"arenas_mb": number(r"# arenas allocated current") * 2**20,  # 1 MiB each
            "in_objects_mb": number(r"# bytes in allocated blocks"),
            "free_in_pools_mb": number(r"# bytes in available blocks"),
            "unused_pools_mb": number(r"# bytes in \d+ unused pools")}


def thread_stacks() -> dict[str, float]:
    """Resident KiB of the threads' stacks: the anonymous mappings of the stack size
    (8 MiB by default: ulimit -s), read from /proc/self/smaps."""
    size_kb = (threading.stack_size() or 8 * 2**20) // 1024
    count, rss = 0, 0
    current = None
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            start, end = (int(x, 16) for x in line.split()[0].split("-"))
            current = (end - start) // 1024 in (size_kb, size_kb + 4) and len(line.split()) == 5
        elif current and line.startswith("Rss:"):
            count += 1
            rss += int(line.split()[1])
    return {"stacks": float(count), "resident_mb": rss / 1024}


def trim() -> bool:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return hasattr(libc, "malloc_trim") and libc.malloc_trim(ctypes.c_size_t(0)) in (0, 1)


def census(limit: int) -> list[tuple[str, int, float]]:
    """(type, count, MB) of objects reachable one step from what the collector tracks."""
    seen: set[int] = set()
    sizes: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    objs = gc.get_objects()
    for o in objs:
        for x in [o, *gc.get_referents(o)]:
            if id(x) in seen:
                continue
            seen.add(id(x))
            name = type(x).__qualname__
            counts[name] += 1
            try:
                sizes[name] += sys.getsizeof(x)
            except TypeError:
                pass
    del objs
    return [(name, counts[name], size / 2**20) for name, size in sizes.most_common(limit)]


_NOT_DATA = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.CodeType,
             types.MethodType, types.FrameType, threading.Thread)


def owned_bytes(roots: list, seen: set[int]) -> int:  # type: ignore[type-arg]
    """sys.getsizeof of every object reachable from `roots` (gc.get_referents) and not in
    `seen` (which it extends): what these roots hold that an earlier part does not."""
    total, stack = 0, list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _NOT_DATA):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def parts(daemon) -> list[tuple[str, float]]:  # type: ignore[no-untyped-def]
    """(part, MB) of the daemon's long-lived data, each part counting only what the parts
    before it do not hold (so shared objects count once, in the first part that reaches
    them). Attributes a tree does not have are skipped, so a baseline tree (--code) is
    measured the same way."""
    engine = daemon.engine
    sources = list(daemon.sources.values())
    modules = {name: sys.modules.get(f"watchdog.{name}")
               for name in ("engine", "rules.verdict", "promql.grouped", "promql.parser", "sources.exposition")}

    def attrs(obj, *names):  # type: ignore[no-untyped-def]
        return [getattr(obj, n) for n in names if obj is not None and hasattr(obj, n)]

    table = [
        ("config + rules", [daemon.loaded]),
        ("parsed queries (+ grouping analysis)", [x for s in sources for x in attrs(s, "_parsed")]
         + attrs(modules["promql.parser"], "_SKELETONS", "_ORIGINS")
         + attrs(modules["promql.grouped"], "_by_tree", "_interned", "_by_skeleton")),
        ("series store: label pairs", [x for s in sources for st in attrs(s, "store") for x in attrs(st, "_pairs")]),
        ("series store: series (labels, points)", [x for s in sources for st in attrs(s, "store")
                                                   for x in attrs(st, "_series")]),
        ("series store: postings, last scrape", [x for s in sources for x in attrs(s, "store")]),
        ("scrape targets: page readers' kept series", [r._series for s in sources for t in getattr(s, "targets", ())
                                                        for r in attrs(t, "reader") if hasattr(r, "_series")]),
        ("scrape targets: page readers' comments", [r._comments for s in sources for t in getattr(s, "targets", ())
                                                     for r in attrs(t, "reader") if hasattr(r, "_comments")]
         + attrs(modules["sources.exposition"], "_COMMENTS")),  # one dict for all readers since rss2
        ("scrape targets: connections", [x for s in sources for t in getattr(s, "targets", ()) for x in attrs(t, "wire")]),
        ("scrape targets: the rest", [x for s in sources for x in attrs(s, "targets")]),
        ("rule states + their index", attrs(engine, "states")),
        ("states as last written (quiet series)", attrs(engine, "_persisted", "_unsaved")),
        ("targets' rendered queries", attrs(engine, "_contexts", "_queries", "_thresholds")),
        ("runner's cached results", attrs(engine.runner, "_cache")),
        ("last tick's report", attrs(daemon, "last_report")),
        ("per-rule metric dicts", attrs(daemon.metrics.rules, "phases", "values", "thresholds", "outcomes")),
        ("label/key caches", [getattr(f, "cache", f) for f in attrs(modules["engine"], "_series_key")
                              + attrs(modules["rules.verdict"], "shown_labels", "unnamed")]),  # a dict, or an lru_cache
    ]
    seen: set[int] = set()
    return [(name, owned_bytes(roots, seen) / 2**20) for name, roots in table]


def serve(daemon, listen: int, seconds: float, phase) -> None:  # type: ignore[no-untyped-def]
    """The daemon's threads as `model-watchdog run` has them, for `seconds`; /metrics read every
    5 s by a separate process (as bench/fleet.py does), so only the daemon's side is in here."""
    daemon.start()
    reader = subprocess.Popen([sys.executable, "-c", (
        "import time, urllib.request\n"
        "while True:\n"
        f"    time.sleep(5)\n"
        f"    try: urllib.request.urlopen('http://127.0.0.1:{listen}/metrics', timeout=30).read()\n"
        "    except OSError: pass\n")])
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(min(5.0, max(0.0, end - time.monotonic())))
            phase(f"serving {seconds - max(0.0, end - time.monotonic()):.0f} s")
    finally:
        reader.kill()
        reader.wait()


def stop_serving(daemon) -> None:  # type: ignore[no-untyped-def]
    daemon.stop.set()
    daemon._scheduler.stop()
    with daemon._tick_lock:  # the tick in progress ends
        pass
    daemon._server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--rules", type=int, default=10)
    parser.add_argument("--ticks", type=int, default=4)
    parser.add_argument("--interval", type=float, default=15.0)
    parser.add_argument("--no-trace", action="store_true", help="RSS only (tracemalloc off)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--frames", type=int, default=1, help="tracemalloc frames kept; >1 also prints the top tracebacks")
    parser.add_argument("--serve", type=float, default=0.0, metavar="SECONDS",
                        help="run the daemon as `run` does (scheduler, API server on the real clock, /metrics read "
                             "every 5 s by another process) for SECONDS instead of --ticks ticks on a fake clock")
    parser.add_argument("--untuned", action="store_true",
                        help="leave glibc malloc as it is (no runtime.memory.limit_arenas(), as `run` calls first)")
    parser.add_argument("--no-trim", action="store_true",
                        help="no malloc_trim(0) after each tick (runtime.memory.trim made a no-op)")
    parser.add_argument("--code", metavar="DIR", help="import watchdog from DIR (a baseline tree)")
    args = parser.parse_args()
    if args.code:
        sys.path.insert(0, args.code)
    sys.path.insert(0, str(HERE))
    phases: list[tuple[str, float, float]] = []

    def phase(name: str) -> None:
        traced, peak = (x / 2**20 for x in tracemalloc.get_traced_memory()) if tracing else (0.0, 0.0)
        phases.append((name, rss_mb(), traced, peak))
        highest = f" (highest since the last line {peak:7.1f} MB)" if tracing else ""
        print(f"{name:<22} RSS {phases[-1][1]:7.1f} MB   traced {traced:7.1f} MB{highest}", flush=True)
        if tracing:
            tracemalloc.reset_peak()

    import tracemalloc
    tracing = not args.no_trace
    memory = None
    if not args.untuned:
        try:
            from watchdog.runtime import memory  # type: ignore[no-redef]  # (not in a baseline tree)
        except ImportError:
            pass
    if memory is not None:
        print(memory.limit_arenas())
    if tracing:
        tracemalloc.start(args.frames)
    phase("start")
    from common import free_port, write_result
    from fleet import write_config
    from watchdog.clock import FakeClock
    from watchdog.config.loader import load
    from watchdog.daemon import Daemon
    import watchdog.web.server  # noqa: F401  (imported by `run` before the first tick)
    phase("imports")
    port = free_port()
    server = subprocess.Popen([sys.executable, str(HERE / "fleetserver.py"), "--count", str(args.targets),
                               "--port", str(port)], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    result: dict = {"benchmark": "memory", "targets": args.targets, "rules": args.rules, "code": args.code or "this tree"}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            listen = free_port()
            write_config(directory, args.targets, args.rules, args.interval, port, listen, False, None)
            os.chdir(directory)
            loaded = load(str(directory / "watchdog.yaml"))
            phase("load")
            clock = None if args.serve else FakeClock(time.time())
            daemon = Daemon(loaded, clock=clock)
            phase("Daemon()")
            if args.no_trim:
                try:
                    from watchdog.runtime import memory as product
                    product.trim = lambda *_: False  # type: ignore[assignment]
                except ImportError:
                    pass
            if args.serve:
                serve(daemon, listen, args.serve, phase)
                if trim():  # what glibc would give back when asked (before the census allocates)
                    phase("after malloc_trim(0)")
            for i in range(0 if args.serve else args.ticks):
                t0 = time.process_time()
                daemon.run_once()
                phase(f"tick {i + 1} ({time.process_time() - t0:.1f} s CPU)")
                clock.advance(args.interval)
            if not args.serve:
                from prometheus_client.exposition import generate_latest
                page = generate_latest(daemon.metrics.registry)
                result["metrics_page_bytes"] = len(page)
                del page
                phase("after /metrics")
            store = next(iter(daemon.sources.values())).store
            result["series"] = len(store)
            print(f"series in the store: {len(store)}")
            if tracing:
                snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
                print(f"\ntracemalloc's own memory: {tracemalloc.get_tracemalloc_memory() / 2**20:.1f} MB")
                for key in ("filename", "lineno"):
                    stats = snap.statistics(key)
                    total = sum(s.size for s in stats) / 2**20
                    print(f"\n== Python heap by {key}: {total:.1f} MB in all ==")
                    rows = []
                    for s in stats[:args.top]:
                        frame = s.traceback[0]
                        where = frame.filename.replace(str(HERE.parent) + "/", "")
                        where = re.sub(r".*/site-packages/", "", where)
                        label = where if key == "filename" else f"{where}:{frame.lineno}"
                        rows.append((label, s.size / 2**20, s.count))
                        print(f"{s.size / 2**20:8.2f} MB {s.count:9d}  {label}")
                    result[f"by_{key}"] = rows
                if args.frames > 1:
                    print(f"\n== Python heap by traceback ({args.frames} frames) ==")
                    for s in snap.statistics("traceback")[:args.top]:
                        print(f"{s.size / 2**20:8.2f} MB {s.count:9d}")
                        for frame in s.traceback.format(most_recent_first=True)[::2]:
                            print("             " + re.sub(r".*/(site-packages|python3.11)/", "", frame.strip()))
                del snap, stats
                tracemalloc.stop()
            gc.collect()
            result["parts"] = parts(daemon)
            print("\n== the daemon's data by part (each counts what the parts above it do not hold) ==")
            for name, mb in result["parts"]:
                print(f"{mb:8.2f} MB  {name}")
            print(f"{sum(mb for _, mb in result['parts']):8.2f} MB  in all")
            rows = census(args.top)
            print("\n== live objects by type (sys.getsizeof, one step from gc-tracked objects) ==")
            for name, count, mb in rows:
                print(f"{mb:8.2f} MB {count:9d}  {name}")
            result["by_type"] = rows
            result["malloc"] = malloc_summary()
            result["obmalloc"] = obmalloc_summary()
            print(f"\nglibc malloc: {result['malloc']}")
            print(f"CPython obmalloc: {result['obmalloc']}")
            result["thread_stacks"] = thread_stacks()
            print(f"threads: {len(os.listdir('/proc/self/task'))}, their stacks: {result['thread_stacks']}")
            result["phases"] = phases
            if args.serve:
                stop_serving(daemon)
            daemon.close()
    finally:
        server.kill()
        server.wait()
    print(f"written: {write_result('memory', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
