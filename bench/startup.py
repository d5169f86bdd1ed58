"""Benchmark: start-up of the daemon on the fleet (bench/fleet.py's 1,000 × 10 templated
config), split in two, this tree and a baseline tree alternately in the same run.

    .venv/bin/python bench/startup.py --code /tmp/main [--targets 1000] [--runs 3]

For each run, the real `model-watchdog run` process, polled every 20 ms:

- serving: spawn → the API answers (`/healthz`): imports, load + validate, `Daemon()`, the
  HTTP server bound — the part before the first evaluation;
- ready: spawn → `/readyz` 200, i.e. after the first completed evaluation (what `/readyz`
  has always meant: docs/kubernetes.md, README), so it includes a whole first tick;

each as wall time and as the daemon's CPU seconds at that moment (from /proc: on a shared
machine the CPU time moves much less than the wall time). Medians over `--runs`; prints a
table and writes bench/results/startup-<timestamp>.json. Goal (issue 13): ready ≤ 2 s.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import compile_package, cpu_seconds, free_port, GcTimer, get, machine, start_daemon, write_result  # noqa: E402
from fleet import write_config  # noqa: E402


def one(code: str | None, targets: int, port: int) -> dict[str, float]:
    listen = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_config(directory, targets, 10, 15.0, port, listen, False, None)
        base = f"http://127.0.0.1:{listen}"
        with open(directory / "daemon.log", "w") as log:
            started = time.monotonic()
            daemon = start_daemon(directory, log, env={**os.environ, "PYTHONPATH": code} if code else None)
            out: dict[str, float] = {}
            try:
                while time.monotonic() - started < 120 and daemon.poll() is None:
                    cpu = cpu_seconds(daemon.pid)
                    if "serving_s" not in out and get(base + "/healthz")[0]:
                        out.update(serving_s=time.monotonic() - started, serving_cpu_s=cpu)
                    if "serving_s" in out and get(base + "/readyz")[0] == 200:
                        out.update(ready_s=time.monotonic() - started, ready_cpu_s=cpu_seconds(daemon.pid))
                        return out
                    time.sleep(0.02)
                raise SystemExit(f"daemon not ready: {(directory / 'daemon.log').read_text()[-2000:]}")
            finally:
                daemon.kill()
                daemon.wait()


def phases(targets: int, port: int, profile: str | None) -> dict[str, float]:
    """In this process (a fresh child): each start-up phase's CPU and wall seconds."""
    import cProfile
    import threading
    profiler = cProfile.Profile() if profile else None
    threads: list[cProfile.Profile] = []
    if profiler:  # every thread the daemon starts (the tick runs on the scheduler's) gets its own

        def per_thread(*_: object) -> None:
            sys.setprofile(None)
            threads.append(cProfile.Profile())
            threads[-1].enable()

        threading.setprofile(per_thread)
    out: dict[str, float] = {}
    mark = [time.process_time(), time.monotonic()]

    def lap(name: str) -> None:
        cpu, wall = time.process_time(), time.monotonic()
        out[f"{name}_cpu_s"], out[f"{name}_s"] = cpu - mark[0], wall - mark[1]
        out[f"{name}_gc_s"] = gc_time.total - sum(v for k, v in out.items() if k.endswith("_gc_s"))
        mark[:] = [cpu, wall]

    gc_time = GcTimer()
    if profiler:
        profiler.enable()
    import watchdog.cli  # noqa: F401 — what `model-watchdog` imports first
    from watchdog.config.loader import load
    from watchdog.daemon import Daemon
    lap("imports")
    if hasattr(watchdog.cli, "gc"):  # as its `run` does (a baseline tree may not)
        from watchdog.runtime import gctune
        gc.set_threshold(*gctune.THRESHOLD)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_config(directory, targets, 10, 15.0, port, free_port(), False, None)
        os.chdir(directory)
        loaded = load(directory / "watchdog.yaml")
        lap("load")
        daemon = Daemon(loaded)
        lap("daemon")
        daemon.start()  # as `serve()`: the API, the scheduler, whose first tick runs at once
        while not daemon.ready()[0]:
            time.sleep(0.005)
        lap("first_tick")
        if profiler:
            import pstats
            threading.setprofile(None)
            profiler.disable()
            stats = pstats.Stats(profiler)
            for other in threads:
                other.create_stats()  # a snapshot of what that thread ran so far
                stats.add(other)
            stats.dump_stats(profile)
        daemon.shutdown()
    return out


def run_phases(code: str | None, targets: int, port: int, profile: str | None) -> dict[str, float]:
    env = {**os.environ, **({"PYTHONPATH": code} if code else {})}
    compile_package({"PYTHONPATH": code} if code else None)
    argv = [sys.executable, __file__, "--child", "--targets", str(targets), "--port", str(port)]
    done = subprocess.run(argv + (["--profile", profile] if profile and not code else []), env=env, check=True,
                          stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code", metavar="DIR", help="the baseline: the watchdog package in DIR (PYTHONPATH)")
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--phases", action="store_true", help="in-process CPU per start-up phase")
    parser.add_argument("--profile", metavar="OUT", help="with --phases: cProfile this tree's start-up into OUT")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(phases(args.targets, args.port, args.profile)))
        return 0
    port = free_port()
    server = subprocess.Popen([sys.executable, str(HERE / "fleetserver.py"), "--count", str(args.targets),
                               "--port", str(port)], stdout=subprocess.PIPE, text=True)
    trees = {"this tree": None, **({"baseline": args.code} if args.code else {})}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        for _ in range(args.runs):  # alternately, so both see the same machine
            for name, code in trees.items():
                runs[name].append(run_phases(code, args.targets, port, args.profile) if args.phases
                                  else one(code, args.targets, port))
    finally:
        server.kill()
        server.wait()
    if args.phases:
        return report_phases(args, trees, runs)
    keys = ("serving_s", "serving_cpu_s", "ready_s", "ready_cpu_s")
    result = {"targets": args.targets, "rules": args.targets * 10, "runs": args.runs, "machine": machine(),
              **{name: {k: statistics.median(r[k] for r in rs) for k in keys} for name, rs in runs.items()},
              "all": runs}
    print(f"start-up, {args.targets} targets × 10 templated rules, median of {args.runs} (wall / daemon CPU):")
    print("| tree | serving (API up) | ready (first tick done) |\n|---|---|---|")
    for name in trees:
        m = result[name]
        print(f"| {name} | {m['serving_s']:.2f} s / {m['serving_cpu_s']:.2f} s CPU "
              f"| {m['ready_s']:.2f} s / {m['ready_cpu_s']:.2f} s CPU |")
    print(f"written to {write_result('startup', result)}")
    return 0


def report_phases(args: argparse.Namespace, trees: dict[str, str | None], runs: dict[str, list[dict[str, float]]]) -> int:
    names = ("imports", "load", "daemon", "first_tick")
    result = {"targets": args.targets, "runs": args.runs, "machine": machine(), "all": runs,
              **{tree: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for tree, rs in runs.items()}}
    print(f"start-up in-process, {args.targets} targets × 10 templated rules, median of {args.runs} "
          "(CPU / wall seconds):")
    print("| tree | " + " | ".join(names) + " | total |\n|---" * 1 + "|---" * (len(names) + 1) + "|")
    for tree in trees:
        m = result[tree]
        cells = [f"{m[n + '_cpu_s']:.3f} / {m[n + '_s']:.3f}" for n in names]
        total = f"{sum(m[n + '_cpu_s'] for n in names):.3f} / {sum(m[n + '_s'] for n in names):.3f}"
        print(f"| {tree} | " + " | ".join(cells) + f" | {total} |")
        print("|   of which the cyclic GC | " + " | ".join(f"{m[n + '_gc_s']:.3f}" for n in names) + " | |")
    print(f"written to {write_result('startup-phases', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
