"""Benchmark: flip → rollback webhook, model-watchdog against Prometheus + Alertmanager, paired.

    .venv/bin/python bench/latency.py [--trials 20] [--settle 10]

The standard scenario: a simulated model server (watchdog.demo) turns degraded (20 % errors)
at a known instant; the rule is `sum(rate(errors[5s])) / sum(rate(all[5s])) > 0.05 for 2s`.
Watching the SAME flips (paired trials):

- model-watchdog (`model-watchdog run`, embedded `scrape`, 1 s interval, webhook actuator);
- model-watchdog on the `prometheus` source (a second daemon, the same rule, querying the
  Prometheus below instead of scraping; unless --no-prometheus-source);
- Prometheus (1 s scrape and evaluation, the same rule as an alerting rule) + Alertmanager
  (`group_wait: 0s`, `group_interval: 1s`, webhook receiver) — the Debian packages
  `prometheus` and `prometheus-alertmanager`, started here on 127.0.0.1: their tightest
  settings.

Both webhooks land on one local receiver, which timestamps them. Each trial: deploy a new
healthy version, let both settle (plus a random fraction of a second, so flips fall at
every phase of the 1 s ticks), flip to degraded, wait for both webhooks, heal. Prints
median/p95/max per system and the per-trial ratio (theirs / ours), writes
bench/results/latency-<timestamp>.json. Goal (issue 13): ours median ≤ 3.2 s, p95 ≤ 3.6 s.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from watchdog.demo.model_server import SimulatedModelServer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import demo_config, free_port, machine, percentile, start_daemon, wait_port, write_result  # noqa: E402

EXPR = 'sum(rate(requests_total{status="error"}[5s])) / sum(rate(requests_total[5s]))'


class Receiver:
    """Timestamps every POST by path (/ours, /am)."""

    def __init__(self) -> None:
        self.hits: list[tuple[str, float]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                at = time.time()
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.hits.append((self.path, at))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def first(self, path: str, after: float) -> float | None:
        return next((t for p, t in list(self.hits) if p == path and t >= after), None)


def start_stack(directory: Path, model_port: int, receiver: int) -> tuple[list[subprocess.Popen], int]:  # type: ignore[type-arg]
    prom_bin = shutil.which("prometheus") or "/usr/bin/prometheus"
    am_bin = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
    am_port, prom_port = free_port(), free_port()
    (directory / "am.yml").write_text(f"""\
route:
  receiver: hook
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs: [{{url: "http://127.0.0.1:{receiver}/am", send_resolved: false}}]
""")
    (directory / "rules.yml").write_text(f"""\
groups:
  - name: model
    interval: 1s
    rules:
      - alert: ErrorRatio
        expr: '{EXPR} > 0.05'
        for: 2s
""")
    (directory / "prometheus.yml").write_text(f"""\
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: [{directory / 'rules.yml'}]
alerting:
  alertmanagers: [{{static_configs: [{{targets: ["127.0.0.1:{am_port}"]}}]}}]
scrape_configs:
  - job_name: model
    static_configs: [{{targets: ["127.0.0.1:{model_port}"]}}]
""")
    am = subprocess.Popen([am_bin, f"--config.file={directory / 'am.yml'}", f"--storage.path={directory / 'am'}",
                           f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    prom = subprocess.Popen([prom_bin, f"--config.file={directory / 'prometheus.yml'}",
                             f"--storage.tsdb.path={directory / 'prom'}", f"--web.listen-address=127.0.0.1:{prom_port}",
                             "--rules.alert.resend-delay=1s"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(am_port)
    wait_port(prom_port)
    return [am, prom], prom_port


def start_ours(directory: Path, model_url: str, receiver: int, prometheus: str = "") -> subprocess.Popen:  # type: ignore[type-arg]
    """Our daemon on `scrape` (or, given a Prometheus URL, on the `prometheus` source), in its own directory."""
    directory = directory / ("ours-prometheus" if prometheus else "ours")
    directory.mkdir()
    source = f'{{type: prometheus, url: "{prometheus}", timeout: 1s}}' if prometheus else f'{{type: scrape, url: "{model_url}/metrics"}}'
    path = "/ours-prometheus" if prometheus else "/ours"
    (directory / "watchdog.yaml").write_text(demo_config(source, f"http://127.0.0.1:{receiver}{path}", free_port()))
    (directory / "rules.yaml").write_text(f"""\
target: demo
rules:
  - name: error-ratio
    source: model
    query: '{EXPR}'
    above: 0.05
    for: 2s
    action: rollback
""")
    return start_daemon(directory, open(directory / "daemon.log", "w"))


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"median": float("nan"), "p95": float("nan"), "max": float("nan")}
    return {"median": statistics.median(values), "p95": percentile(values, 0.95), "max": max(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds healthy before each flip")
    parser.add_argument("--give-up", type=float, default=20.0, help="seconds to wait for a webhook")
    parser.add_argument("--no-prometheus-source", action="store_true", help="leave out model-watchdog on the prometheus source")
    args = parser.parse_args()
    receiver = Receiver()
    trials: list[dict[str, float | None]] = []
    with tempfile.TemporaryDirectory() as tmp, SimulatedModelServer(version="v2", previous_versions=("v1",)) as model:
        directory = Path(tmp)
        procs, prom_port = start_stack(directory, model.port, receiver.port)
        procs.append(start_ours(directory, model.url, receiver.port))
        paths = {"ours": "/ours", "prometheus_alertmanager": "/am"}
        if not args.no_prometheus_source:
            procs.append(start_ours(directory, model.url, receiver.port, f"http://127.0.0.1:{prom_port}"))
            paths["ours_prometheus_source"] = "/ours-prometheus"
        try:
            time.sleep(args.settle)
            for n in range(args.trials):
                requests.post(model.url + "/deploy", json={"version": f"v{n + 3}"}, timeout=5).raise_for_status()
                # a random phase against the 1 s ticks and scrapes, as a real regression has
                time.sleep(args.settle + random.uniform(0.0, 1.0))
                flip = time.time()
                requests.post(model.url + "/control", json={"mode": "degraded"}, timeout=5).raise_for_status()
                end = time.monotonic() + args.give_up
                while time.monotonic() < end and any(receiver.first(p, flip) is None for p in paths.values()):
                    time.sleep(0.02)
                hits = {key: receiver.first(p, flip) for key, p in paths.items()}
                trial = {key: None if at is None else at - flip for key, at in hits.items()}
                trials.append(trial)
                print(f"trial {n + 1:>2}: " + ", ".join(f"{k} {v if v is not None else float('nan'):.2f} s"
                                                          for k, v in trial.items()), flush=True)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
    via_prom = [t["ours_prometheus_source"] for t in trials if t.get("ours_prometheus_source") is not None]
    ours_s = [t["ours"] for t in trials if t["ours"] is not None]
    theirs_s = [t["prometheus_alertmanager"] for t in trials if t["prometheus_alertmanager"] is not None]
    ratios = [t["prometheus_alertmanager"] / t["ours"] for t in trials  # type: ignore[operator]
              if t["ours"] and t["prometheus_alertmanager"]]
    result = {"benchmark": "latency", "machine": machine(), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "trials": len(trials), "missed_ours": len(trials) - len(ours_s),
              "missed_prometheus_alertmanager": len(trials) - len(theirs_s), "ours": summary(ours_s),
              "prometheus_alertmanager": summary(theirs_s), "ratio_theirs_over_ours": summary(ratios),
              "ours_prometheus_source": summary(via_prom), "missed_ours_prometheus_source": len(trials) - len(via_prom),
              "ratio_theirs_over_ours_prometheus_source": summary(
                  [t["prometheus_alertmanager"] / t["ours_prometheus_source"] for t in trials  # type: ignore[operator]
                   if t.get("ours_prometheus_source") and t["prometheus_alertmanager"]]),
              "per_trial": trials}
    print(f"\n{'system':<28}{'median':>8}{'p95':>8}{'max':>8}{'missed':>8}")
    for name, key, missed in (("model-watchdog (scrape)", "ours", "missed_ours"),
                              ("model-watchdog (prometheus)", "ours_prometheus_source", "missed_ours_prometheus_source"),
                              ("Prometheus + Alertmanager", "prometheus_alertmanager", "missed_prometheus_alertmanager")):
        s = result[key]
        print(f"{name:<28}{s['median']:>8.2f}{s['p95']:>8.2f}{s['max']:>8.2f}{result[missed]:>8}")
    r = result["ratio_theirs_over_ours"]
    print(f"{'per-trial ratio theirs/ours':<28}{r['median']:>8.2f}{r['p95']:>8.2f}{r['max']:>8.2f}")
    path = write_result("latency", result)
    print(f"goal: ours median ≤ 3.2 s, p95 ≤ 3.6 s\nmachine: {result['machine']}\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
