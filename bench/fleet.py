"""Benchmark: a fleet of scraped model servers guarded by one daemon.

    .venv/bin/python bench/fleet.py [--targets 1000] [--rules 10] [--interval 15] [--ticks 8] [--quick]
                                    [--split-by] [--source scrape|prometheus]

One `scrape` source scrapes every model server (one HTTP server answering on many 127.0.x.y
addresses, bench/fleetserver.py, so each is a distinct `instance`); the rule file lists every
target under `targets:`, templated with `{{instance}}` (or, with --split-by, one query per rule
split by the `instance` label). With `--source prometheus`, Debian's `prometheus` (started here
on 127.0.0.1) scrapes the same addresses every interval and the daemon's source is that
Prometheus, with the rules as fleet rules (`split_by: instance`: one query per rule per tick).
The daemon is the real `model-watchdog run` process:

- ready: spawn → /readyz answers 200 (load, validate, first tick);
- tick: the per-tick durations from model_watchdog_evaluation_duration_seconds (sum/count
  deltas, polled), mean and p99;
- CPU per second of wall time and RSS (peak) of the daemon process, from /proc;
- stop: SIGTERM sent in the middle of a tick → process exit;
- with data: after the stop, the rules (target × rule) whose last evaluation (in the state
  file) had a value, i.e. every target got its series;
- on Prometheus: the queries it answered per tick (its `prometheus_http_requests_total` for
  /api/v1/query and `prometheus_engine_query_duration_seconds_count`, deltas over the measured
  ticks), and its own CPU/s and RSS.

Prints a table and writes bench/results/fleet-<timestamp>.json. Goals (issue 13): mean tick
≤ 1 s, ready ≤ 2 s, RSS ≤ 120 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # bench/ is not a package: fleetserver sits beside this file
from common import (cpu_seconds, free_port, get, machine, percentile, prometheus_value, rss_mb,  # noqa: E402
                    start_daemon, start_prometheus, write_result)
from fleetserver import addresses  # noqa: E402

RULES = [
    ("error-ratio", 'sum(rate(requests_total{{{sel},status="error"}}[1m])) / sum(rate(requests_total{{{sel}}}[1m]))',
     "above: 0.05", "rollback"),
    ("p99-latency", 'histogram_quantile(0.99, sum by (le) (rate(request_latency_seconds_bucket{{{sel}}}[1m])))',
     "above: 2", "rollback"),
    ("accuracy", "model_accuracy{{{sel}}}", "below: 0.5", "alert"),
    ("up", "up{{{sel}}}", "below: 1", "alert"),
    ("traffic", "sum(rate(requests_total{{{sel}}}[1m]))", "below: 1", "alert"),
    ("mean-latency", "rate(request_latency_seconds_sum{{{sel}}}[1m]) / rate(request_latency_seconds_count{{{sel}}}[1m])",
     "above: 1", "alert"),
    ("p50-latency", 'histogram_quantile(0.5, sum by (le) (rate(request_latency_seconds_bucket{{{sel}}}[1m])))',
     "above: 1", "alert"),
    ("errors", 'sum(rate(requests_total{{{sel},status="error"}}[1m]))', "above: 1000", "alert"),
    ("accuracy-1m", "avg_over_time(model_accuracy{{{sel}}}[1m])", "below: 0.5", "alert"),
    ("p90-latency", 'histogram_quantile(0.9, sum by (le) (rate(request_latency_seconds_bucket{{{sel}}}[1m])))',
     "above: 1.5", "alert"),
]
SPLIT_QUERIES = {  # the same rules, once for the whole fleet: every series keeps its `instance` label
    "error-ratio": 'sum by (instance) (rate(requests_total{status="error"}[1m])) / sum by (instance) (rate(requests_total[1m]))',
    "p99-latency": "histogram_quantile(0.99, sum by (instance, le) (rate(request_latency_seconds_bucket[1m])))",
    "accuracy": "model_accuracy",
    "up": "up",
    "traffic": "sum by (instance) (rate(requests_total[1m]))",
    "mean-latency": "rate(request_latency_seconds_sum[1m]) / rate(request_latency_seconds_count[1m])",
    "p50-latency": "histogram_quantile(0.5, sum by (instance, le) (rate(request_latency_seconds_bucket[1m])))",
    "errors": 'sum by (instance) (rate(requests_total{status="error"}[1m]))',
    "accuracy-1m": "avg_over_time(model_accuracy[1m])",
    "p90-latency": "histogram_quantile(0.9, sum by (instance, le) (rate(request_latency_seconds_bucket[1m])))",
}


def write_config(directory: Path, targets: int, rules: int, interval: float, port: int, listen: int,
                 split_by: bool, concurrency: int | None, prometheus: str = "") -> None:
    """watchdog.yaml and rules.yaml; with PROMETHEUS (its base URL) the source queries it."""
    addrs = addresses(targets)
    names = [f"m{i:04d}" for i in range(targets)]
    urls = ", ".join(f"http://{a}:{port}/metrics" for a in addrs)
    extra = f"\n    concurrency: {concurrency}" if concurrency else ""
    source = ([f"    type: prometheus\n    url: {prometheus}\n    timeout: {max(1.0, interval / 3):g}s"] if prometheus
              else ["    type: scrape", f"    urls: [{urls}]", "    timeout: 2s" + extra])
    lines = [f"interval: {interval}s", "state: state.db", f"listen: 127.0.0.1:{listen}", "rule_files: [rules.yaml]",
             "sources:", "  fleet:", *source,
             "actuators:", "  hook: {type: webhook, url: 'http://127.0.0.1:9/rollback'}",
             "alerters:", "  log: {type: log}", "targets:"]
    for name, addr in zip(names, addrs):
        lines.append(f"  {name}: {{rollback: [hook], alert: [log], variables: {{instance: '{addr}:{port}'}}}}")
    (directory / "watchdog.yaml").write_text("\n".join(lines) + "\n")
    chosen = RULES[:rules]
    out = [f"targets: [{', '.join(names)}]"]
    if split_by:
        out.append("split_by: instance")  # each target's `instance` variable names its series
    out.append("rules:")
    for name, query, threshold, action in chosen:
        q = SPLIT_QUERIES[name] if split_by else query.format(sel='instance="{{instance}}"')
        out += [f"  - name: {name}", "    source: fleet", f"    query: '{q}'", f"    {threshold}",
                f"    action: {action}", "    on_no_data: ignore"]
    (directory / "rules.yaml").write_text("\n".join(out) + "\n")


def duration_totals(text: str) -> tuple[float, float]:
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("model_watchdog_evaluation_duration_seconds_sum"):
            total = float(line.split()[-1])
        elif line.startswith("model_watchdog_evaluation_duration_seconds_count"):
            count = float(line.split()[-1])
    return total, count


def run(args: argparse.Namespace) -> dict:  # type: ignore[type-arg]
    port, listen = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        server = subprocess.Popen([sys.executable, str(HERE / "fleetserver.py"), "--count", str(args.targets),
                                   "--port", str(port)], stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        prom, prom_url = None, ""
        log = open(directory / "daemon.log", "w")
        daemon = spy = None
        try:
            if args.source == "prometheus":
                prom, prom_url = prometheus_for(directory, args, port)
            write_config(directory, args.targets, args.rules, args.interval, port, listen, args.split_by,
                         args.concurrency, prom_url)
            started = time.monotonic()
            env = {**os.environ, "PYTHONPATH": args.code} if args.code else None
            daemon = start_daemon(directory, log, env=env)
            spy = profile(args, daemon.pid)
            result = measure(args, daemon, listen, started, directory, prom, prom_url)
            return {**result, **with_data(directory / "state.db", args.targets * args.rules)}
        finally:
            for proc in (daemon, server, spy, prom):
                if proc is None:
                    continue
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            log.close()


def prometheus_for(directory: Path, args: argparse.Namespace, port: int) -> tuple[subprocess.Popen, str]:  # type: ignore[type-arg]
    """Prometheus scraping every model server each interval; returns once every target has
    the two samples a `rate(…[1m])` needs (so the daemon's first ticks see the whole fleet)."""
    interval = f"{int(args.interval * 1000)}ms"
    targets = ", ".join(f'"{a}:{port}"' for a in addresses(args.targets))
    proc, prom_port = start_prometheus(directory, f"""\
global: {{scrape_interval: {interval}, scrape_timeout: {int(min(args.interval, 10) * 1000)}ms}}
scrape_configs:
  - job_name: fleet
    static_configs: [{{targets: [{targets}]}}]
""")
    base = f"http://127.0.0.1:{prom_port}"
    end = time.monotonic() + 6 * args.interval + 60
    while time.monotonic() < end:
        if (prometheus_value(base, "count(rate(requests_total[1m]) > 0)") or 0) >= 2 * args.targets:
            return proc, base
        time.sleep(1)
    proc.kill()
    raise SystemExit(f"Prometheus did not scrape all {args.targets} targets: "
                     f"{(directory / 'prometheus.log').read_text()[-2000:]}")


def prometheus_counts(base: str) -> tuple[float, float]:
    """(instant-query HTTP requests, engine queries) Prometheus has answered, from its /metrics
    (read there, not through /api/v1/query, so that reading them counts nothing)."""
    requests = queries = 0.0
    for line in get(base + "/metrics")[1].splitlines():
        if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query"' in line:
            requests += float(line.split()[-1])
        elif line.startswith("prometheus_engine_query_duration_seconds_count{") and 'slice="inner_eval"' in line:
            queries += float(line.split()[-1])
    return requests, queries


def with_data(state: Path, rules: int) -> dict:  # type: ignore[type-arg]
    """How many rules (target × rule) had a value at their last evaluation, from the state file."""
    if not state.exists():
        return {"rules_with_data": 0, "rules_expected": rules}
    with sqlite3.connect(f"file:{state}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT target, rule, state FROM rule_states").fetchall()
    last: dict[tuple[str, str], tuple[float, bool]] = {}
    for target, rule, text in rows:
        s = json.loads(text)
        at, has = s.get("evaluated_at") or 0.0, s.get("value") is not None
        seen = last.get((target, rule))
        if seen is None or at > seen[0] or (at == seen[0] and has):
            last[(target, rule)] = (at, has)
    newest = max((at for at, _ in last.values()), default=0.0)
    fresh = sum(1 for at, has in last.values() if has and at >= newest)
    return {"rules_with_data": fresh, "rules_expected": rules}


def profile(args: argparse.Namespace, pid: int) -> subprocess.Popen | None:  # type: ignore[type-arg]
    """py-spy on the daemon from its start (load, first tick, ticks) into `--profile` (collapsed
    stacks, CPU only: idle threads left out); summarise with bench/pyspy_top.py."""
    if not args.profile:
        return None
    spy = str(Path(sys.executable).with_name("py-spy"))
    seconds = int(args.interval * (args.ticks + 1) + 30)
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "50", "--nonblocking", "--threads",
                             "--format", "raw", "--duration", str(seconds), "-o", args.profile],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure(args: argparse.Namespace, daemon: subprocess.Popen, listen: int, started: float,  # type: ignore[type-arg]
            directory: Path, prom: subprocess.Popen | None, prom_url: str) -> dict:  # type: ignore[type-arg]
    base = f"http://127.0.0.1:{listen}"
    ready = None
    while time.monotonic() - started < 120 and daemon.poll() is None:
        if get(base + "/readyz")[0] == 200:
            ready = time.monotonic() - started
            break
        time.sleep(0.05)
    if ready is None:
        raise SystemExit(f"daemon not ready: {(directory / 'daemon.log').read_text()[-2000:]}")
    ticks: list[float] = []
    last_sum, last_count = duration_totals(get(base + "/metrics")[1])
    cpu0, wall0, peak = cpu_seconds(daemon.pid), time.monotonic(), rss_mb(daemon.pid)
    count0 = last_count
    prom0 = prometheus_counts(prom_url) if prom else (0.0, 0.0)
    prom_cpu0, prom_peak = (cpu_seconds(prom.pid), rss_mb(prom.pid)) if prom else (0.0, 0.0)
    deadline = time.monotonic() + args.interval * (args.ticks + 1) + 30
    while len(ticks) < args.ticks and time.monotonic() < deadline:
        # Not faster: rendering /metrics of 10,000 rules takes CPU from the daemon being measured
        # (polled every second, the renders took about half of its CPU); a Prometheus scraping
        # the daemon every 15 s renders it less often still.
        time.sleep(args.poll or max(1.0, args.interval / 3))
        peak = max(peak, rss_mb(daemon.pid))
        prom_peak = max(prom_peak, rss_mb(prom.pid)) if prom else 0.0
        total, count = duration_totals(get(base + "/metrics")[1])
        if count > last_count:
            ticks.append((total - last_sum) / (count - last_count))
            last_sum, last_count = total, count
    cpu = (cpu_seconds(daemon.pid) - cpu0) / (time.monotonic() - wall0)
    extra = {}
    if prom is not None:
        prom1, evaluations = prometheus_counts(prom_url), last_count - count0
        extra = {"prometheus_requests_per_tick": (prom1[0] - prom0[0]) / max(1.0, evaluations),
                 "prometheus_queries_per_tick": (prom1[1] - prom0[1]) / max(1.0, evaluations),
                 "prometheus_cpu_per_s": (cpu_seconds(prom.pid) - prom_cpu0) / (time.monotonic() - wall0),
                 "prometheus_rss_peak_mb": prom_peak}
    # stop mid-tick: the next tick starts on the interval's boundary (scheduled ticks)
    wait = args.interval - (time.time() % args.interval) + min(0.3, 0.3 * (sum(ticks) / max(1, len(ticks))))
    time.sleep(wait)
    t0 = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(timeout=60)
        stop = time.monotonic() - t0
    except subprocess.TimeoutExpired:
        stop = float("inf")
    return {"targets": args.targets, "rules_per_target": args.rules, "rules": args.targets * args.rules,
            "interval_s": args.interval, "poll_s": args.poll or max(1.0, args.interval / 3), "source": args.source,
            "split_by": args.split_by, "ticks_measured": len(ticks),
            "ticks_expected": args.ticks, "tick_mean_s": sum(ticks) / len(ticks) if ticks else float("nan"),
            "tick_p99_s": percentile(ticks, 0.99), "cpu_per_s": cpu, "rss_peak_mb": peak, "ready_s": ready,
            "stop_s": stop, "exit_code": daemon.returncode, **extra}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--rules", type=int, default=10)
    parser.add_argument("--interval", type=float, default=15.0)
    parser.add_argument("--ticks", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=None, help="the scrape source's concurrency (default: its own)")
    parser.add_argument("--split-by", action="store_true", help="fleet rules: one query per rule, split by `instance`")
    parser.add_argument("--source", choices=("scrape", "prometheus"), default="scrape",
                        help="scrape: the daemon scrapes the fleet; prometheus: a Prometheus started here scrapes it "
                             "and the daemon queries it (implies --split-by)")
    parser.add_argument("--poll", type=float, default=None,
                        help="seconds between two reads of /metrics (default: a third of the interval)")
    parser.add_argument("--profile", metavar="PATH", help="record the daemon with py-spy into PATH (collapsed stacks)")
    parser.add_argument("--code", metavar="DIR", help="run the daemon on the watchdog package in DIR (PYTHONPATH), "
                                                      "e.g. `git archive main` unpacked, for a baseline in the same run")
    parser.add_argument("--quick", action="store_true", help="200 targets, 5 s interval, 4 ticks")
    args = parser.parse_args()
    if args.quick:
        args.targets, args.interval, args.ticks = min(args.targets, 200), 5.0, 4
    if args.source == "prometheus":
        args.split_by = True  # fleet rules: 10 queries per tick, not one per target and rule
    result = {"benchmark": "fleet", "machine": machine(), "code": args.code or "this tree", "load": os.getloadavg(), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              **run(args)}
    goals = {"tick_mean_s": 1.0, "ready_s": 2.0, "rss_peak_mb": 120.0}
    print(f"{'measure':<30}{'value':>12}{'goal':>10}")
    for key in ("rules", "ticks_measured", "tick_mean_s", "tick_p99_s", "cpu_per_s", "rss_peak_mb", "ready_s", "stop_s",
                "exit_code", "rules_with_data", "prometheus_queries_per_tick", "prometheus_requests_per_tick",
                "prometheus_cpu_per_s", "prometheus_rss_peak_mb"):
        if key not in result:
            continue
        value = result[key]
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"{key:<30}{shown:>12}{('≤ ' + str(goals[key])) if key in goals else '':>10}")
    path = write_result("fleet", result)
    print(f"machine: {result['machine']}\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
