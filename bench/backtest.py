"""Benchmark: `model-watchdog backtest` over a week of real Prometheus history, a dozen rules.

    .venv/bin/python bench/backtest.py [--days 7] [--resolution 15] [--step 1m] [--baseline-calls 3000]

A week of a model's metrics (request counters by status, latency sum/count, accuracy and two
gauges; one sample every `--resolution` seconds, two known incidents) is written as
OpenMetrics and backfilled into a real Prometheus (the Debian package, started here on
127.0.0.1) with `promtool tsdb create-blocks-from openmetrics`. Then the real CLI runs

    model-watchdog backtest --from T0 --to T0+7d --step 1m --json

for 12 rules (rates, ratios, *_over_time, gauges; 12 distinct queries) and we measure its
wall time (process start to exit) and the requests Prometheus served for it (its own
`prometheus_http_requests_total`, before and after).

Baseline: what the naive replay costs at the least: one plain `/api/v1/query?time=` per
rule and step, made by a trivial loop (one keep-alive session, nothing else done). It is
timed over `--baseline-calls` calls spread over the week and extrapolated to every rule and
step; the ratio is baseline / backtest. Goal (issue 15): a week at 1 m for 12 rules in
≤ 5 s. Prints a table and writes bench/results/backtest-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # common.py beside this file; the tests' backfill helper
from common import machine, write_result  # noqa: E402
from tests.servers import backfilled_prometheus  # noqa: E402

DAY = 86400.0
# (start, end) in seconds after t0 and what goes wrong: the known bad periods of the history
INCIDENTS = [(1 * DAY + 7200, 1 * DAY + 7200 + 1200, "errors"), (3 * DAY + 18000, 3 * DAY + 18000 + 900, "latency"),
             (5 * DAY + 36000, 5 * DAY + 36000 + 1800, "accuracy")]

RULES = [  # name, query, threshold, extra
    ("error-ratio", 'sum(rate(requests_total{status="error"}[5m])) / sum(rate(requests_total[5m]))', "above: 0.05",
     "for: 3m\n    action: rollback"),
    ("error-ratio-15m", 'sum(rate(requests_total{status="error"}[15m])) / sum(rate(requests_total[15m]))',
     "above: 0.04", "action: alert"),
    ("errors", 'sum(rate(requests_total{status="error"}[5m]))', "above: 5", "action: alert"),
    ("error-increase", 'sum(increase(requests_total{status="error"}[1h]))', "above: 5000", "action: alert"),
    ("traffic", "sum(rate(requests_total[5m]))", "below: 10", "action: alert"),
    ("mean-latency", "rate(request_latency_seconds_sum[5m]) / rate(request_latency_seconds_count[5m])",
     "above: 0.5", "for: 2m\n    action: rollback"),
    ("accuracy", "model_accuracy", "below: 0.8", "for: 5m\n    action: rollback"),
    ("accuracy-1h", "avg_over_time(model_accuracy[1h])", "below: 0.85", "action: alert"),
    ("error-gauge", 'max(model_error_ratio{model="fraud"})', "above: 0.1", "for: 2m\n    action: alert"),
    ("latency-gauge", "max(model_latency_seconds)", "above: 0.5", "action: alert"),
    ("latency-max-10m", "max_over_time(model_latency_seconds[10m])", "above: 1", "action: alert"),
    ("latency-p90-30m", "quantile_over_time(0.9, model_latency_seconds[30m])", "above: 0.8", "action: alert"),
]


def _bad(t: float, kind: str) -> bool:
    return any(start <= t < end and k == kind for start, end, k in INCIDENTS)


def openmetrics(t0: float, days: float, resolution: float) -> str:
    """The history: counters integrate a steady 50 requests/s (2 % errors, 20 % in the errors incident)."""
    rows: dict[str, list[str]] = {k: [] for k in ("ok", "error", "sum", "count", "acc", "err", "lat")}
    ok = error = total_latency = count = 0.0
    for i in range(int(days * DAY // resolution) + 1):
        t, wiggle = i * resolution, (i % 13) / 13
        ratio = 0.2 if _bad(t, "errors") else 0.02 + 0.005 * wiggle
        latency = 1.2 if _bad(t, "latency") else 0.1 + 0.05 * wiggle
        accuracy = 0.7 if _bad(t, "accuracy") else 0.93 + 0.02 * wiggle
        served = 50.0 * resolution
        ok, error = ok + served * (1 - ratio), error + served * ratio
        total_latency, count = total_latency + served * latency, count + served
        at = f"{t0 + t:.3f}"
        rows["ok"].append(f'requests_total{{status="ok"}} {ok:.1f} {at}')
        rows["error"].append(f'requests_total{{status="error"}} {error:.1f} {at}')
        rows["sum"].append(f"request_latency_seconds_sum {total_latency:.3f} {at}")
        rows["count"].append(f"request_latency_seconds_count {count:.1f} {at}")
        rows["acc"].append(f"model_accuracy {accuracy:.4f} {at}")
        rows["err"].append(f'model_error_ratio{{model="fraud"}} {ratio:.4f} {at}')
        rows["lat"].append(f"model_latency_seconds {latency:.4f} {at}")
    # OpenMetrics wants each family's samples together (the summary's _sum and _count too)
    return "\n".join(["# TYPE requests counter", *rows["ok"], *rows["error"],
                      "# TYPE request_latency_seconds summary", *rows["sum"], *rows["count"],
                      "# TYPE model_accuracy gauge", *rows["acc"], "# TYPE model_error_ratio gauge", *rows["err"],
                      "# TYPE model_latency_seconds gauge", *rows["lat"], "# EOF"]) + "\n"


def write_config(directory: Path, url: str) -> Path:
    rules = ["target: fraud-model", "rules:"]
    for name, query, threshold, extra in RULES:
        rules += [f"  - name: {name}", "    source: prom", f"    query: '{query}'", f"    {threshold}", f"    {extra}"]
    (directory / "rules.yaml").write_text("\n".join(rules) + "\n")
    (directory / "watchdog.yaml").write_text(f"""\
interval: 1m
state: state.db
rule_files: [rules.yaml]
sources:
  prom: {{type: prometheus, url: "{url}"}}
actuators:
  deploy: {{type: webhook, url: "http://127.0.0.1:9/rollback"}}
alerters:
  ops: {{type: webhook, url: "http://127.0.0.1:9/alert"}}
targets:
  fraud-model: {{rollback: [deploy], alert: [ops]}}
""")
    return directory / "watchdog.yaml"


def served(url: str) -> dict[str, float]:
    """Prometheus' own count of the query requests it answered, by handler."""
    counts = {"/api/v1/query": 0.0, "/api/v1/query_range": 0.0}
    for line in requests.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("prometheus_http_requests_total{"):
            for handler in counts:
                if f'handler="{handler}"' in line:
                    counts[handler] += float(line.rsplit(" ", 1)[1])
    return counts


def rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def run_backtest(config: Path, start: float, end: float, step: str, url: str) -> dict:  # type: ignore[type-arg]
    exe = str(Path(sys.executable).with_name("model-watchdog"))
    before = served(url)
    started = time.monotonic()
    proc = subprocess.run([exe, "-c", str(config), "backtest", "--from", rfc3339(start), "--to", rfc3339(end),
                           "--step", step, "--json"], capture_output=True, text=True, cwd=config.parent, timeout=900)
    wall = time.monotonic() - started
    after = served(url)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"backtest exited with {proc.returncode}:\n{proc.stderr[-3000:]}")
    report = json.loads(proc.stdout)
    rules = report["targets"]["fraud-model"]["rules"]
    return {"wall_s": wall, "exit_code": proc.returncode,
            "requests_query_range": after["/api/v1/query_range"] - before["/api/v1/query_range"],
            "requests_query": after["/api/v1/query"] - before["/api/v1/query"],
            "evaluations": sum(r.get("evaluations", 0) for r in rules.values()),
            "firings": {name: len(r.get("firings", [])) for name, r in rules.items()},
            "rollbacks": len(report["targets"]["fraud-model"]["rollbacks"])}


def baseline(url: str, start: float, end: float, calls: int) -> float:
    """Seconds per plain instant query, made by a trivial loop over the rules' queries."""
    session, rng = requests.Session(), random.Random(15)
    started = time.monotonic()
    for i in range(calls):
        at = start + rng.randrange(int((end - start) // 60)) * 60
        response = session.get(f"{url}/api/v1/query", params={"query": RULES[i % len(RULES)][1], "time": at},
                               timeout=30)
        response.raise_for_status()
    return (time.monotonic() - started) / calls


def report(result: dict) -> None:  # type: ignore[type-arg]
    print(f"{'measure':<40}{'value':>14}")
    for key in ("rules", "steps", "evaluations", "wall_s", "requests_query_range", "requests_query",
                "rollbacks", "baseline_s_per_query", "baseline_s_one_query_per_rule_and_step",
                "ratio_baseline_over_backtest"):
        value = result[key]
        print(f"{key:<40}{(f'{value:.4g}' if isinstance(value, float) else str(value)):>14}")
    path = write_result("backtest", result)
    print(f"goal: a week at 1m for 12 rules ≤ {result['goal_wall_s']:g} s\nmachine: {result['machine']}\nwritten: {path}",
          flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--resolution", type=float, default=15.0, help="seconds between samples in the history")
    parser.add_argument("--step", default="1m")
    parser.add_argument("--baseline-calls", type=int, default=3000, help="plain queries timed for the baseline")
    parser.add_argument("--keep", action="store_true",
                        help="afterwards keep Prometheus and the config for profiling, until Ctrl-C or SIGTERM")
    args = parser.parse_args()
    t0 = float((int(time.time()) // DAY) * DAY - (args.days + 1) * DAY)  # on a day boundary, within retention
    end = t0 + args.days * DAY
    made = time.monotonic()
    history = openmetrics(t0, args.days, args.resolution)
    with tempfile.TemporaryDirectory() as tmp, backfilled_prometheus(history, prefix="mw-bench-backtest-") as prom:
        backfill_s = time.monotonic() - made
        config = write_config(Path(tmp), prom.url)
        ours = run_backtest(config, t0, end, args.step, prom.url)
        per_call = baseline(prom.url, t0, end, args.baseline_calls)
        naive = per_call * ours["evaluations"]
        report({"benchmark": "backtest", "machine": machine(),
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "days": args.days,
                "resolution_s": args.resolution, "step": args.step, "rules": len(RULES),
                "steps": ours["evaluations"] // len(RULES), "backfill_s": backfill_s, **ours,
                "baseline_calls_timed": args.baseline_calls, "baseline_s_per_query": per_call,
                "baseline_s_one_query_per_rule_and_step": naive,
                "ratio_baseline_over_backtest": naive / ours["wall_s"], "goal_wall_s": 5.0})
        if args.keep:
            print(f"Prometheus at {prom.url}; model-watchdog -c {config} backtest --from {rfc3339(t0)} "
                  f"--to {rfc3339(end)} --step {args.step}; Ctrl-C or SIGTERM to stop", flush=True)
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            try:
                signal.pause()
            except KeyboardInterrupt:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
