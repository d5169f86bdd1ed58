"""Benchmark: one evaluation tick of the production engine, against the bare cost of the
PromQL it evaluates (each distinct query once, as the engine's source runner does), measured
in the same run.

    .venv/bin/python bench/tick.py [--rules 60] [--series 2000] [--ticks 30]

Prints a table and writes bench/results/tick-<timestamp>.json. The ratio engine/PromQL shows
what the engine adds (state machine, persistence to SQLite, history) on top of the queries.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import textwrap
import threading
import time
from pathlib import Path

from watchdog.rollback.executor import RollbackExecutor
from watchdog.clock import FakeClock
from watchdog.config.loader import load
from watchdog.engine import Engine
from watchdog.metrics import DaemonMetrics
from watchdog.runtime.notify import Notifier
from watchdog.promql import SeriesStore, evaluate, parse
from watchdog.samples import NAME, Sample, labels_of
from watchdog.sources.base import QueryResult, Source
from watchdog.state.sqlite import SQLiteStateStore
from watchdog.testing import FakeOptions

QUERIES = [
    'sum by (region) (rate(requests_total{{status="error",shard="{i}"}}[1m])) / sum by (region) (rate(requests_total{{shard="{i}"}}[1m]))',
    'histogram_quantile(0.99, sum by (le) (rate(request_latency_seconds_bucket{{shard="{i}"}}[1m])))',
    'avg(model_accuracy{{shard="{i}"}})',
]


class StoreSource(Source):
    """A source answering from a pre-filled SeriesStore (no HTTP in the measurement)."""

    Options = FakeOptions

    def __init__(self, store: SeriesStore):
        super().__init__("model", FakeOptions())
        self.store = store

    def check_query(self, query: str) -> None:
        parse(query)

    def window_of(self, query: str) -> float:
        return parse(query).max_range()

    def query(self, query: str, now: float) -> QueryResult:
        return QueryResult(evaluate(parse(query), self.store, now))


def fill(store: SeriesStore, series: int, start: float, scrapes: int) -> None:
    shards = max(1, series // 40)
    for k in range(scrapes):
        t = start + 15 * k
        samples = []
        for n in range(series // 20):
            shard, region = str(n % shards), f"r{n % 4}"
            base = {"shard": shard, "region": region, "pod": f"p{n}"}
            samples.append(Sample(labels_of({**base, NAME: "requests_total", "status": "ok"}), 100.0 * k))
            samples.append(Sample(labels_of({**base, NAME: "requests_total", "status": "error"}), 1.0 * k))
            samples.append(Sample(labels_of({**base, NAME: "model_accuracy"}), 0.95))
            for le in ("0.05", "0.1", "0.25", "0.5", "1", "+Inf"):
                samples.append(Sample(labels_of({**base, NAME: "request_latency_seconds_bucket", "le": le}), 10.0 * k))
        store.append_scrape(t, samples)


def build(directory: Path, rules: int) -> str:
    (directory / "watchdog.yaml").write_text(textwrap.dedent("""\
        interval: 15s
        state: state.db
        rule_files: [rules.yaml]
        sources: {model: {type: scrape, url: "http://127.0.0.1:9/metrics"}}
        alerters: {log: {type: log}}
        targets: {bench: {alert: [log]}}
        """))
    lines = ["target: bench", "rules:"]
    queries = []
    for i in range(rules):
        query = QUERIES[i % len(QUERIES)].format(i=i % 10)
        queries.append(query)
        lines.append(f"  - name: rule-{i}\n    source: model\n    query: '{query}'\n    above: 1e9")
    (directory / "rules.yaml").write_text("\n".join(lines) + "\n")
    return "\n".join(queries)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rules", type=int, default=60)
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--ticks", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        queries = sorted(set(build(directory, args.rules).splitlines()))  # the engine asks each once
        loaded = load(directory / "watchdog.yaml")
        clock = FakeClock()
        series_store = SeriesStore()
        fill(series_store, args.series, clock.now(), 8)
        now = clock.now() + 15 * 7
        stop = threading.Event()
        metrics = DaemonMetrics()
        store = SQLiteStateStore(str(directory / "state.db"))
        notifier = Notifier({}, metrics, stop)
        executor = RollbackExecutor(store, {}, metrics, stop)
        engine = Engine(loaded, store, {"model": StoreSource(series_store)}, executor, notifier, metrics, clock=clock)
        engine.tick(now)  # warm caches
        baseline, ticks = [], []
        for _ in range(args.ticks):
            started = time.perf_counter()
            for q in queries:
                evaluate(parse(q), series_store, now)
            baseline.append(time.perf_counter() - started)
            started = time.perf_counter()
            engine.tick(now)
            ticks.append(time.perf_counter() - started)
        store.close()
    result = {
        "benchmark": "engine tick vs bare PromQL evaluation of the same (distinct) queries",
        "distinct_queries": len(queries),
        "rules": args.rules, "stored_samples_per_scrape": args.series, "ticks": args.ticks,
        "promql_median_s": statistics.median(baseline), "tick_median_s": statistics.median(ticks),
        "tick_p95_s": sorted(ticks)[int(0.95 * (len(ticks) - 1))],
        "ratio_tick_to_promql": statistics.median(ticks) / statistics.median(baseline),
    }
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    path = out / f"tick-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    for key, value in result.items():
        print(f"{key:>28}: {value:.4f}" if isinstance(value, float) else f"{key:>28}: {value}")
    print(f"{'saved':>28}: {path}")


if __name__ == "__main__":
    main()
