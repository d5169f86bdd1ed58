"""Benchmark: memory soak of the real daemon on the demo scenario, 1 s interval.

    .venv/bin/python bench/soak.py [--minutes 20] [--sample 5] [--code /tmp/base-tree]

Starts a simulated model server (watchdog.demo) and `model-watchdog run` against it (scrape
source, the demo's rules, 1 s interval), switches the model between healthy and degraded every
minute (so rules fire, roll back and recover, and series come and go), samples the daemon's RSS
every `--sample` seconds, and fits a line: the slope (MB per hour) over the second half of the
run should be ≈ 0. Prints a table and writes bench/results/soak-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from watchdog.demo.model_server import SimulatedModelServer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import demo_config, free_port, machine, rss_mb, start_daemon, write_result  # noqa: E402

RULES = """\
target: demo
rules:
  - name: error-ratio
    source: model
    query: sum(rate(requests_total{status="error"}[5s])) / sum(rate(requests_total[5s]))
    above: 0.05
    for: 2s
    action: rollback
  - name: p99-latency
    source: model
    query: histogram_quantile(0.99, sum by (le) (rate(request_latency_seconds_bucket[5s])))
    above: 0.5
    for: 2s
  - name: accuracy
    source: model
    query: model_accuracy
    below: 0.9
"""


def write_config(directory: Path, model_url: str, listen: int) -> None:
    (directory / "watchdog.yaml").write_text(demo_config(f'{{type: scrape, url: "{model_url}/metrics"}}', f"{model_url}/rollback",
                                                         listen, target_extra="    verify_window: 30s\n"))
    (directory / "rules.yaml").write_text(RULES)


def slope_mb_per_hour(points: list[tuple[float, float]]) -> float:
    n = len(points)
    if n < 2:
        return float("nan")
    mt, mr = sum(t for t, _ in points) / n, sum(r for _, r in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return 3600 * sum((t - mt) * (r - mr) for t, r in points) / var if var else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--sample", type=float, default=5.0)
    parser.add_argument("--code", help="run the daemon on the watchdog package in DIR (PYTHONPATH), for a baseline")
    args = parser.parse_args()
    points: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp, SimulatedModelServer(version="v2", previous_versions=("v1",)) as model:
        directory, listen = Path(tmp), free_port()
        write_config(directory, model.url, listen)
        log = open(directory / "daemon.log", "w")
        daemon = start_daemon(directory, log, env={**os.environ, "PYTHONPATH": args.code} if args.code else None)
        start = time.monotonic()
        end = start + args.minutes * 60
        flips = 0
        try:
            while time.monotonic() < end and daemon.poll() is None:
                elapsed = time.monotonic() - start
                if int(elapsed // 60) > flips:  # every minute: a new release, degraded half the time
                    flips += 1
                    requests.post(model.url + "/deploy", json={"version": f"v{flips + 2}"}, timeout=5)
                    if flips % 2:
                        requests.post(model.url + "/control", json={"mode": "degraded"}, timeout=5)
                rss = rss_mb(daemon.pid)
                if rss > 0 and elapsed >= 10:  # the first seconds are the start-up, not the soak
                    points.append((elapsed, rss))
                time.sleep(args.sample)
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
            log.close()
    half = [p for p in points if p[0] >= points[-1][0] / 2] if points else []
    result = {"benchmark": "soak", "machine": machine(), "code": args.code or "this tree", "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "minutes": args.minutes, "samples": len(points), "rss_start_mb": points[0][1] if points else None,
              "rss_end_mb": points[-1][1] if points else None, "rss_max_mb": max((r for _, r in points), default=None),
              "slope_mb_per_h_all": slope_mb_per_hour(points), "slope_mb_per_h_second_half": slope_mb_per_hour(half),
              "releases": flips, "exit_code": daemon.returncode, "rss_series": points}
    print(f"{'measure':<28}{'value':>12}")
    for key in ("minutes", "samples", "releases", "rss_start_mb", "rss_end_mb", "rss_max_mb", "slope_mb_per_h_all",
                "slope_mb_per_h_second_half", "exit_code"):
        value = result[key]
        print(f"{key:<28}{(f'{value:.2f}' if isinstance(value, float) else str(value)):>12}")
    path = write_result("soak", result)
    print(f"machine: {result['machine']}\nwritten: {path}")
    return 0 if os.environ.get("SOAK_STRICT") is None or result["slope_mb_per_h_second_half"] < 5 else 1


if __name__ == "__main__":
    sys.exit(main())
