"""Benchmark: flip → rollback webhook, model-watchdog against Prometheus + Alertmanager, paired.

    .venv/bin/python bench/latency.py [--trials 20] [--settle 10]

The standard scenario (issue 13): a simulated model server (watchdog.demo, 1 % errors while
healthy) turns to 30 % errors at a known instant (`--error-percent`; the demo's own degraded
profile is 20 %, whose floor is higher, see below); the rule is
`sum(rate(errors[5s])) / sum(rate(all[5s])) > 0.05 for 2s`.
Watching the SAME flips (paired trials):

- model-watchdog (`model-watchdog run`, embedded `scrape`, 1 s interval, webhook actuator);
- model-watchdog on the `prometheus` source (a second daemon, the same rule, querying the
  Prometheus below instead of scraping; unless --no-prometheus-source), and a third one the
  same but with `align_ticks: {source: model}` (its ticks just after Prometheus' scrapes);
- Prometheus (1 s scrape and evaluation, the same rule as an alerting rule) + Alertmanager
  (`group_wait: 0s`, `group_interval: 1s`, webhook receiver) — the Debian packages
  `prometheus` and `prometheus-alertmanager`, started here on 127.0.0.1: their tightest
  settings.

Both webhooks land on one local receiver, which timestamps them. Each trial: deploy a new
healthy version, let both settle (plus a random fraction of a second, so flips fall at
every phase of the 1 s ticks), flip to degraded, wait for both webhooks, heal. Prints
median/p95/max per system and the per-trial ratio (theirs / ours), writes
bench/results/latency-<timestamp>.json. Goal (issue 13): ours median ≤ 3.2 s, p95 ≤ 3.6 s.

It also prints the floor of the scenario: the latency a system would have that evaluates the
rule on every 1 s scrape the moment it is taken and acts at once, computed from the model
server's own 0.1 s traffic steps and the 5 samples `rate(…[5s])` reads, over every phase of the
flip against the scrapes (`floor()`), plus --overhead (our tick start → webhook).

With --trace, our daemons log at debug level and each trial of ours is taken apart: flip →
the tick that first saw the breach (the rule's pending tick) → the tick that fired (its
scheduled time, from the decision in the state file) → that tick's real start (its debug log
line) → our scrape of the model server (timestamped by the model server) → the rollback
executor's start (debug log line) → the webhook's arrival; medians/p95s of each step.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sqlite3
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
from prometheus_client.parser import text_string_to_metric_families

from watchdog.demo import model_server as simulated
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


def start_stack(directory: Path, model_port: int, receiver: int,  # type: ignore[type-arg]
                defaults: bool = False) -> tuple[list[subprocess.Popen], int]:
    """Prometheus + Alertmanager at their tightest settings, or (DEFAULTS) at their defaults:
    1 min scrape and evaluation, `group_wait: 30s`, `group_interval: 5m`, resend delay 1 min; the
    rule's window then [2m], the shortest that holds two 1 min samples (the docs advise 4×)."""
    directory.mkdir(parents=True, exist_ok=True)
    prom_bin = shutil.which("prometheus") or "/usr/bin/prometheus"
    am_bin = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
    am_port, prom_port = free_port(), free_port()
    tight = "" if defaults else "\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h"
    (directory / "am.yml").write_text(f"""\
route:
  receiver: hook{tight}
receivers:
  - name: hook
    webhook_configs: [{{url: "http://127.0.0.1:{receiver}/{'am-defaults' if defaults else 'am'}", send_resolved: false}}]
""")
    expr = EXPR.replace("[5s]", "[2m]") if defaults else EXPR
    (directory / "rules.yml").write_text(f"""\
groups:
  - name: model{'' if defaults else chr(10) + '    interval: 1s'}
    rules:
      - alert: ErrorRatio
        expr: '{expr} > 0.05'
        for: 2s
""")
    (directory / "prometheus.yml").write_text(f"""\
global: {{{'' if defaults else 'scrape_interval: 1s, evaluation_interval: 1s'}}}
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
                             *([] if defaults else ["--rules.alert.resend-delay=1s"])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(am_port)
    wait_port(prom_port)
    return [am, prom], prom_port


# Our daemons: key in the results → (name in the table, directory and webhook path, source, align_ticks).
OURS = {
    "ours": ("model-watchdog (scrape)", "ours", "scrape", False),
    "ours_prometheus_source": ("model-watchdog (prometheus)", "ours-prometheus", "prometheus", False),
    "ours_prometheus_aligned": ("  … with align_ticks", "ours-prometheus-aligned", "prometheus", True),
}


def start_ours(directory: Path, key: str, model_url: str, receiver: int, prometheus: str,  # type: ignore[type-arg]
               level: str = "warning") -> subprocess.Popen:
    """Our daemon KEY (see OURS) in its own directory: on `scrape`, or on the `prometheus`
    source querying PROMETHEUS, its ticks on the second or aligned to Prometheus' scrapes."""
    _, name, kind, align = OURS[key]
    directory = directory / name
    directory.mkdir()
    source = f'{{type: prometheus, url: "{prometheus}", timeout: 1s}}' if kind == "prometheus" \
        else f'{{type: scrape, url: "{model_url}/metrics"}}'
    config = demo_config(source, f"http://127.0.0.1:{receiver}/{name}", free_port())
    (directory / "watchdog.yaml").write_text(config + ("align_ticks: {source: model}\n" if align else ""))
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
    return start_daemon(directory, open(directory / "daemon.log", "w"), level=level)


class ScrapeLog:
    """When the model server answered each `/metrics` GET, by client (ours or Prometheus):
    wraps the simulated server's route (in this process) for --trace."""

    def __init__(self) -> None:
        self.ours: list[float] = []
        self.prometheus: list[float] = []
        route = simulated._ROUTES[("GET", "/metrics")]

        def timed(handler, model):  # type: ignore[no-untyped-def]
            at = time.time()
            agent = handler.headers.get("User-Agent") or ""
            (self.ours if agent.startswith("model-watchdog") else self.prometheus).append(at)
            route(handler, model)

        simulated._ROUTES[("GET", "/metrics")] = timed

    @staticmethod
    def first(times: list[float], after: float) -> float | None:
        return next((t for t in times if t >= after), None)


LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) DEBUG (\S+): (.*)$")


def daemon_events(directory: Path) -> tuple[dict[float, float], dict[str, float]]:
    """From a daemon's debug log: {scheduled tick: when it started}, {decision id: when the
    executor started it} (wall-clock times of the log records)."""
    ticks: dict[float, float] = {}
    executions: dict[str, float] = {}
    for line in (directory / "daemon.log").read_text(errors="replace").splitlines():
        m = LOG_LINE.match(line)
        if not m:
            continue
        at = time.mktime(time.strptime(m.group(1)[:19], "%Y-%m-%d %H:%M:%S")) + int(m.group(1)[20:]) / 1000
        tick = re.match(r"tick ([\d.]+): starting", m.group(3))
        if tick:
            ticks[round(float(tick.group(1)), 3)] = at
        run = re.match(r"rollback (\w+) of \S+: carrying out", m.group(3))
        if run:
            executions.setdefault(run.group(1), at)
    return ticks, executions


def decisions(directory: Path) -> list[dict[str, float | str | None]]:
    with sqlite3.connect(f"file:{directory / 'state.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT id, created_at, context FROM decisions ORDER BY created_at").fetchall()
    return [{"id": i, "created_at": c, **{k: json.loads(ctx).get(k) for k in ("pending_at", "fired_at", "breach_started_at")}}
            for i, c, ctx in rows]


def trace(directory: Path, flips: list[float], webhook: list[float | None], scrapes: list[float] | None) -> list[dict]:  # type: ignore[type-arg]
    """Each trial of one of our daemons taken apart (see the module docstring)."""
    ticks, executions = daemon_events(directory)
    made = decisions(directory)
    out = []
    for flip, hook in zip(flips, webhook):
        d = next((d for d in made if d["created_at"] >= flip - 1), None)  # type: ignore[operator]
        if d is None or hook is None:
            out.append({})
            continue
        decided, pending = float(d["created_at"]), float(d["pending_at"] or d["created_at"])  # type: ignore[arg-type]
        began = ticks.get(round(decided, 3))
        executed = executions.get(str(d["id"]))
        step = {"flip_to_pending_tick": pending - flip, "pending_to_decision_tick": decided - pending,
                "fired_to_decision_tick": decided - float(d["fired_at"] or decided),  # type: ignore[arg-type]
                "tick_start_late": None if began is None else began - decided}
        scraped = ScrapeLog.first(scrapes, began) if scrapes is not None and began is not None else None
        if scraped is not None:
            step["tick_start_to_scrape"] = scraped - began  # type: ignore[operator]
        step["tick_start_to_executor"] = None if began is None or executed is None else executed - began
        step["executor_to_webhook"] = None if executed is None else hook - executed
        step["decision_tick_to_webhook"] = hook - decided
        out.append(step)
    return out


def aligned_offset(directory: Path) -> str:
    """What align_ticks chose last, from the daemon's log (its INFO or WARNING lines)."""
    found = re.findall(r"align_ticks: (.*)", (directory / "daemon.log").read_text(errors="replace"))
    return found[-1] if found else "(no align_ticks line in the daemon's log)"


def trace_summary(rows: list[dict]) -> dict[str, dict[str, float]]:  # type: ignore[type-arg]
    keys = [k for row in rows for k in row]
    return {k: summary([row[k] for row in rows if row.get(k) is not None]) for k in dict.fromkeys(keys)}


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"median": float("nan"), "p95": float("nan"), "max": float("nan")}
    return {"median": statistics.median(values), "p95": percentile(values, 0.95), "max": max(values)}


def floor(error_percent: float, overhead: float, phases: int = 400) -> dict[str, float]:
    """Flip → webhook of an ideal evaluator of EXPR > 0.05 for 2s on 1 s scrapes.

    The model server adds its traffic in 0.1 s steps; the flip makes the next step degraded. A
    scrape at time s gives `rate(…[5s])` the 5 samples in (s − 5, s] (Prometheus' and our
    left-open window), spanning 4 s; both counters are sampled at the same instants and far from
    zero, so the extrapolation cancels and the ratio is Δerrors / Δall over those 4 s. The first
    scrape whose ratio is above 0.05 starts `for`; the rule fires on the scrape 2 s later.
    """
    model = SimulatedModelServer(rps=200, degraded_error_percent=error_percent)
    healthy_steps, steps = 100, 200  # the flip comes after step 100 (10 s of healthy traffic)
    totals = [(0, 0)]  # (errors, all) after each step
    for step in range(1, steps + 1):
        if step == healthy_steps + 1:
            model.set_mode("degraded")
        model.tick()
        ok, errors = (float(v) for v in simulated_counts(model))
        totals.append((int(errors), int(ok + errors)))
    latencies = []
    for n in range(phases):
        flip_in_step = (n % 20 + 0.5) / 20 * 0.1  # where in the 0.1 s step the flip falls
        first_scrape = (n // 20 + 0.5) / (phases // 20)  # flip → the next scrape, in [0, 1)
        flip = healthy_steps * 0.1 + flip_in_step
        scrape = flip + first_scrape
        while True:
            now, before = totals[int(scrape / 0.1 + 1e-9)], totals[int((scrape - 4) / 0.1 + 1e-9)]
            if (now[0] - before[0]) / (now[1] - before[1]) > 0.05:
                break
            scrape += 1.0
        latencies.append(scrape + 2.0 - flip + overhead)
    return summary(latencies)


def simulated_counts(model: SimulatedModelServer) -> tuple[float, float]:
    """(ok, errors) from the model server's own /metrics body."""
    counts = {s.labels["status"]: s.value for family in text_string_to_metric_families(model.metrics_text().decode())
              if family.name == "requests" for s in family.samples if s.name == "requests_total"}
    return counts["ok"], counts["error"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds healthy before each flip")
    parser.add_argument("--give-up", type=float, default=20.0, help="seconds to wait for a webhook")
    parser.add_argument("--no-prometheus-source", action="store_true", help="leave out model-watchdog on the prometheus source")
    parser.add_argument("--trace", action="store_true", help="take each of our trials apart into its steps (debug logs)")
    parser.add_argument("--defaults-trials", type=int, default=0,
                        help="then this many trials against Prometheus + Alertmanager at their defaults "
                             "(a fresh stack each, ≈ 5 min per trial)")
    parser.add_argument("--error-percent", type=float, default=30.0,
                        help="errors after the flip (issue 13's standard scenario: 30; the demo's profile: 20)")
    parser.add_argument("--overhead", type=float, default=0.02,
                        help="tick start → webhook added to the floor (measured with --trace: ≈ 0.02 s)")
    args = parser.parse_args()
    receiver = Receiver()
    scrapes = ScrapeLog() if args.trace else None
    level = "debug" if args.trace else "warning"
    flips: list[float] = []
    traced: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    trials: list[dict[str, float | None]] = []
    defaults_trials: list[dict[str, float | None]] = []
    ours = ["ours"] if args.no_prometheus_source else list(OURS)
    with tempfile.TemporaryDirectory() as tmp, SimulatedModelServer(
            version="v2", previous_versions=("v1",), degraded_error_percent=args.error_percent) as model:
        directory = Path(tmp)
        procs, prom_port = start_stack(directory, model.port, receiver.port)
        # (align_ticks reads when Prometheus scraped the model; until its first scrape the daemon
        # ticks on the second and tries again every 5 s)
        procs += [start_ours(directory, key, model.url, receiver.port, f"http://127.0.0.1:{prom_port}",
                             "info" if OURS[key][3] and level == "warning" else level)  # the align_ticks line
                  for key in ours]
        paths = {**{key: "/" + OURS[key][1] for key in ours}, "prometheus_alertmanager": "/am"}
        try:
            time.sleep(args.settle)
            for n in range(args.trials):
                requests.post(model.url + "/deploy", json={"version": f"v{n + 3}"}, timeout=5).raise_for_status()
                # a random phase against the 1 s ticks and scrapes, as a real regression has
                time.sleep(args.settle + random.uniform(0.0, 1.0))
                flip = time.time()
                flips.append(flip)
                requests.post(model.url + "/control", json={"mode": "degraded"}, timeout=5).raise_for_status()
                end = time.monotonic() + args.give_up
                while time.monotonic() < end and any(receiver.first(p, flip) is None for p in paths.values()):
                    time.sleep(0.02)
                hits = {key: receiver.first(p, flip) for key, p in paths.items()}
                trial = {key: None if at is None else at - flip for key, at in hits.items()}
                trials.append(trial)
                print(f"trial {n + 1:>2}: " + ", ".join(f"{k} {v if v is not None else float('nan'):.2f} s"
                                                          for k, v in trial.items()), flush=True)
            for n in range(args.defaults_trials):
                # A fresh default stack per trial: an alert group Alertmanager still remembers would
                # send on its 5 min group_interval instead of after group_wait.
                stack, _ = start_stack(directory / f"defaults-{n}", model.port, receiver.port, defaults=True)
                procs += stack
                requests.post(model.url + "/deploy", json={"version": f"v{args.trials + n + 3}"},
                              timeout=5).raise_for_status()
                # two 1 min scrapes of healthy traffic, then a random phase against the minute
                time.sleep(150 + random.uniform(0.0, 60.0))
                flip = time.time()
                requests.post(model.url + "/control", json={"mode": "degraded"}, timeout=5).raise_for_status()
                end = time.monotonic() + 900
                while time.monotonic() < end and any(receiver.first(p, flip) is None for p in ("/ours", "/am-defaults")):
                    time.sleep(0.1)
                trial = {key: None if at is None else at - flip
                         for key, at in (("ours", receiver.first("/ours", flip)),
                                         ("prometheus_alertmanager_defaults", receiver.first("/am-defaults", flip)))}
                defaults_trials.append(trial)
                print(f"defaults trial {n + 1}: " + ", ".join(
                    f"{k} {v if v is not None else float('nan'):.2f} s" for k, v in trial.items()), flush=True)
                for proc in stack:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=15)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        for key in ours if args.trace else []:
            hooks = [None if t.get(key) is None else flips[i] + t[key] for i, t in enumerate(trials)]  # type: ignore[operator]
            traced[key] = trace(directory / OURS[key][1], flips, hooks,
                                scrapes.ours if scrapes is not None and key == "ours" else None)
        offsets = {key: aligned_offset(directory / OURS[key][1]) for key in ours if OURS[key][3]}
    result: dict = {"benchmark": "latency", "machine": machine(),  # type: ignore[type-arg]
                    "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "trials": len(trials),
                    "error_percent": args.error_percent,
                    "floor": floor(args.error_percent, args.overhead), "floor_overhead": args.overhead,
                    "align_ticks_offsets": offsets}
    for key in [*ours, "prometheus_alertmanager"]:
        values = [t[key] for t in trials if t.get(key) is not None]
        result[key], result[f"missed_{key}"] = summary(values), len(trials) - len(values)  # type: ignore[arg-type]
        if key != "prometheus_alertmanager":
            suffix = "" if key == "ours" else key[len("ours"):]
            result[f"ratio_theirs_over_ours{suffix}"] = summary(
                [t["prometheus_alertmanager"] / t[key] for t in trials  # type: ignore[operator]
                 if t.get(key) and t.get("prometheus_alertmanager")])
    result["per_trial"] = trials
    if defaults_trials:
        result["defaults"] = {"per_trial": defaults_trials, "prometheus_alertmanager_defaults": summary(
            [t["prometheus_alertmanager_defaults"] for t in defaults_trials if t["prometheus_alertmanager_defaults"]]),
            "ratio_theirs_over_ours": summary([t["prometheus_alertmanager_defaults"] / t["ours"]  # type: ignore[operator]
                                               for t in defaults_trials if t["ours"] and t["prometheus_alertmanager_defaults"]])}
    if args.trace:
        result["trace"] = {name: {"steps": trace_summary(rows), "per_trial": rows} for name, rows in traced.items()}
    print(f"\n{'system':<42}{'median':>8}{'p95':>8}{'max':>8}{'missed':>8}")
    names = {**{key: OURS[key][0] for key in ours}, "prometheus_alertmanager": "Prometheus + Alertmanager"}
    for key, name in names.items():
        st = result[key]
        print(f"{name:<42}{st['median']:>8.2f}{st['p95']:>8.2f}{st['max']:>8.2f}{result['missed_' + key]:>8}")
    st = result["floor"]
    print(f"{'floor of the scenario (' + format(args.error_percent, 'g') + ' % errors)':<42}"
          f"{st['median']:>8.2f}{st['p95']:>8.2f}{st['max']:>8.2f}")
    for key in ours:
        suffix = "" if key == "ours" else key[len("ours"):]
        r = result[f"ratio_theirs_over_ours{suffix}"]
        print(f"{'ratio theirs/ours ' + OURS[key][0].strip():<42}{r['median']:>8.2f}{r['p95']:>8.2f}{r['max']:>8.2f}")
    if defaults_trials:
        st, r = result["defaults"]["prometheus_alertmanager_defaults"], result["defaults"]["ratio_theirs_over_ours"]
        print(f"{'Prometheus + Alertmanager at defaults':<42}{st['median']:>8.2f}{st['p95']:>8.2f}{st['max']:>8.2f}")
        print(f"{'ratio defaults/ours (scrape)':<42}{r['median']:>8.2f}{r['p95']:>8.2f}{r['max']:>8.2f}")
    if offsets:
        print(f"align_ticks offsets (s after the second): {offsets}")
    for name, data in result.get("trace", {}).items():
        print(f"\n{name}: steps of a trial{'median':>18}{'p95':>8}{'max':>8}")
        for step, st in data["steps"].items():
            print(f"  {step:<34}{st['median']:>8.3f}{st['p95']:>8.3f}{st['max']:>8.3f}")
    path = write_result("latency", result)
    print(f"goal: ours median ≤ 3.2 s, p95 ≤ 3.6 s\nmachine: {result['machine']}\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
