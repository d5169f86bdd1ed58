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
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import cpu_seconds, free_port, get, machine, start_daemon, write_result  # noqa: E402
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code", metavar="DIR", help="the baseline: the watchdog package in DIR (PYTHONPATH)")
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, str(HERE / "fleetserver.py"), "--count", str(args.targets),
                               "--port", str(port)], stdout=subprocess.PIPE, text=True)
    trees = {"this tree": None, **({"baseline": args.code} if args.code else {})}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        for _ in range(args.runs):  # alternately, so both see the same machine
            for name, code in trees.items():
                runs[name].append(one(code, args.targets, port))
    finally:
        server.kill()
        server.wait()
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


if __name__ == "__main__":
    raise SystemExit(main())
