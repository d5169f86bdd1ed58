"""Benchmark: the engine's CPU per tick on the fleet configuration, in-process, no network.

    .venv/bin/python bench/engine.py [--targets 1000] [--rules 10] [--ticks 6] [--split-by] [--first]
                                     [--baseline /tmp/base-engine] [--runs 2] [--profile out.prof]

The configuration is bench/fleet.py's (`write_config`: 1,000 targets × 10 rules templated
with `{{instance}}`, or with --split-by one query per rule split by `instance`). A real
`Daemon` is built on it with a fake clock; its scrape source does not scrape: before each
tick (outside the measurement) the store is filled as the 1,000 fleetserver pages would fill
it (each page parsed by `sources.exposition` and relabelled as the source does). Then
`Daemon.run_once()` runs and its CPU time (`time.process_time`, all threads) is measured:
that is the engine — the PromQL of every rule, judging, the state machine, SQLite, metrics.

With `--baseline DIR` the same measurement runs on the code in DIR (`git archive` of a
baseline unpacked there) in a child process, before and after this tree's run, and the ratio
is printed. Each measurement runs in its own fresh process. Prints a table and writes
bench/results/engine-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # bench/ is not a package
from common import GcTimer, machine, write_result  # noqa: E402
from fleet import write_config  # noqa: E402
from fleetserver import addresses, page  # noqa: E402

PORT = 18080


def measure(args: argparse.Namespace) -> dict:  # type: ignore[type-arg]
    """In this process, on whatever `watchdog` is importable (this tree, or PYTHONPATH's)."""
    import logging

    from watchdog.clock import FakeClock
    from watchdog.config.loader import load
    from watchdog.daemon import Daemon
    from watchdog.sources import exposition

    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_config(directory, args.targets, args.rules, args.interval, PORT, 9, args.split_by, None)
        cwd = os.getcwd()
        os.chdir(directory)  # `state: state.db` is relative
        try:
            loaded = load(directory / "watchdog.yaml")
            clock = FakeClock()
            daemon = Daemon(loaded, clock=clock)
        finally:
            os.chdir(cwd)
        source = daemon.sources["fleet"]
        models = {f"{a}:{PORT}": f"m{i:04d}" for i, a in enumerate(addresses(args.targets))}

        def no_scrape(now: float, deadline: float = 0.0) -> None:
            return None

        source.begin_tick_within = no_scrape  # type: ignore[method-assign]
        source.begin_tick = no_scrape  # type: ignore[method-assign]

        def feed(t: float) -> None:
            for target in source.targets:
                body = page(t - 1_700_000_000.0 + 10_000, models[target.instance])
                if hasattr(source, "_labelled_page"):  # before the scrape loop (main 0fd9327 and earlier)
                    labelled = source._labelled_page(exposition.samples(body, 0), target)
                else:  # the target's own page reader: parses and relabels as a real scrape does
                    labelled = target.reader.samples(body, 0)
                source.store.append_scrape(t, [*labelled, source._up(target, 1.0)], target=target.instance)
            source.store.prune(source._retention, t)
            if source._first_success is None:
                source._first_success = t
            source._last_success = t

        try:  # what Daemon.start() does before the first tick (runtime/gctune.py; absent on older trees)
            from watchdog.runtime import gctune
        except ImportError:
            gctune = None
        if gctune is not None and not args.no_gc_settle:
            gctune.settle()
        gc_time = GcTimer()
        gc_per_tick = []
        interval = args.interval
        for _ in range(args.warm):  # fill the windows (rate over 1m) before the first tick
            feed(clock.now())
            clock.advance(interval)
        profiler = None
        if args.profile:
            import cProfile
            profiler = cProfile.Profile()
        cpu, wall, verdicts = [], [], 0
        first = 0 if args.first else 1  # the first measured tick
        for n in range(1 if args.first else args.ticks + 1):
            feed(clock.now())
            if n == first and profiler is not None:
                profiler.enable()
            g0, c0, w0 = gc_time.total, time.process_time(), time.perf_counter()
            report = daemon.run_once()
            c1, w1 = time.process_time(), time.perf_counter()
            assert report is not None, daemon.last_error
            if n >= first:  # the first tick adopts the targets and writes every new state: not a steady tick
                cpu.append(c1 - c0)
                gc_per_tick.append(gc_time.total - g0)
                wall.append(w1 - w0)
                verdicts = len(report.verdicts)
            clock.advance(interval)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        outcomes: dict[str, int] = {}
        for _, _, verdict, _ in report.verdicts:
            outcomes[verdict.outcome.value] = outcomes.get(verdict.outcome.value, 0) + 1
        daemon.close()
        gc_time.stop()
    rules = args.targets * args.rules
    import resource
    return {"rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rules": rules, "verdicts": verdicts, "outcomes": outcomes, "ticks": args.ticks,
            "cpu_per_tick_s": statistics.median(cpu), "cpu_min_s": min(cpu), "wall_per_tick_s": statistics.median(wall),
            "us_per_rule": 1e6 * statistics.median(cpu) / rules, "gc_per_tick_s": statistics.median(gc_per_tick)}


def child(args: argparse.Namespace, code: str | None) -> dict:  # type: ignore[type-arg]
    argv = [sys.executable, str(Path(__file__)), "--child", "--targets", str(args.targets), "--rules", str(args.rules),
            "--ticks", str(args.ticks), "--interval", str(args.interval), "--warm", str(args.warm)]
    if args.first:
        argv.append("--first")
    if args.split_by:
        argv.append("--split-by")
    if args.no_gc_settle:
        argv.append("--no-gc-settle")
    env = {**os.environ, "PYTHONPATH": code} if code else dict(os.environ)
    out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True, cwd="/" if code else None)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--rules", type=int, default=10)
    parser.add_argument("--ticks", type=int, default=6)
    parser.add_argument("--interval", type=float, default=15.0)
    parser.add_argument("--warm", type=int, default=6, help="scrapes stored before the first tick")
    parser.add_argument("--split-by", action="store_true")
    parser.add_argument("--first", action="store_true",
                        help="measure the first tick instead (a fresh store: every rule state is new), once per run")
    parser.add_argument("--no-gc-settle", action="store_true",
                        help="keep CPython's collector defaults (no runtime.gctune.settle() before the ticks)")
    parser.add_argument("--runs", type=int, default=2, help="runs of each tree, interleaved")
    parser.add_argument("--baseline", help="a baseline tree (git archive unpacked) measured in the same run")
    parser.add_argument("--profile", help="cProfile the measured ticks (this process) into this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child or args.profile:
        result = measure(args)
        if args.child:
            print(json.dumps(result))
            return
        runs = {"this tree": [result]}
    else:
        runs = {"this tree": []}
        if args.baseline:
            runs["baseline"] = []
        for _ in range(args.runs):  # interleaved: baseline, ours, baseline, ours
            if args.baseline:
                runs["baseline"].append(child(args, args.baseline))
            runs["this tree"].append(child(args, None))
    summary = {name: min(results, key=lambda r: r["cpu_per_tick_s"]) for name, results in runs.items()}
    print(f"{args.targets} targets × {args.rules} rules{' (split_by)' if args.split_by else ''}, "
          f"{args.ticks} ticks each, CPU per tick (median over ticks, best of runs)")
    print(f"{'tree':<12} {'CPU/tick':>10} {'µs/rule':>9} {'wall/tick':>10} {'GC/tick':>9} {'peak RSS':>9}  outcomes")
    for name, r in summary.items():
        print(f"{name:<12} {r['cpu_per_tick_s']:>9.3f}s {r['us_per_rule']:>9.1f} {r['wall_per_tick_s']:>9.3f}s "
              f"{r.get('gc_per_tick_s', 0.0):>8.3f}s {r['rss_peak_mb']:>6.0f} MB  {r['outcomes']}")
    if "baseline" in summary:
        ratio = summary["baseline"]["cpu_per_tick_s"] / summary["this tree"]["cpu_per_tick_s"]
        print(f"ratio baseline / this tree: {ratio:.2f}×")
    write_result("engine", {"benchmark": "engine CPU per tick on the fleet config (bench/engine.py)",
                            "machine": machine(), "split_by": args.split_by, "runs": runs, "summary": summary})


if __name__ == "__main__":
    main()
