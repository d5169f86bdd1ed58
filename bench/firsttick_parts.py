"""Two parts of the fleet's first tick, in process (CPU), for this tree or a baseline (`--code`):

    .venv/bin/python bench/firsttick_parts.py [--code /tmp/base] [--trace]

- keep: the 10,000 templated queries of 1,000 targets × 10 rules as the scrape source keeps
  them (its `parse`), then their first grouping analysis (`promql.grouped._candidates`);
  with `--trace`, what they hold afterwards (tracemalloc; slower);
- first sight: 1,000 bench/fleetserver.py pages read by the scrape's page readers (relabelled
  into the store's label sets) and stored (`SeriesStore.append_scrape`), median of 7 rounds.

Run it once for each tree, alternately, and compare the CPU figures (the wall clock of this
shared machine moves with the load).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

TEMPLATES = [
    'sum(rate(requests_total{instance="{V}",status="error"}[1m])) / sum(rate(requests_total{instance="{V}"}[1m]))',
    'histogram_quantile(0.99, sum by (le) (rate(request_latency_seconds_bucket{instance="{V}"}[1m])))',
    'model_accuracy{instance="{V}"}', 'up{instance="{V}"}',
    'rate(request_latency_seconds_sum{instance="{V}"}[1m]) / rate(request_latency_seconds_count{instance="{V}"}[1m])',
    'avg_over_time(model_accuracy{instance="{V}"}[1m])', 'max_over_time(up{instance="{V}"}[5m])',
    'sum(rate(requests_total{instance="{V}"}[5m]))', 'increase(requests_total{instance="{V}",status="error"}[1m])',
    'min_over_time(model_accuracy{instance="{V}"}[5m]) < 0.5',
]


def keep(trace: bool) -> str:
    from watchdog.promql import grouped
    from watchdog.sources import scrape

    queries = [t.replace("{V}", f"127.0.{1 + i // 254}.{1 + i % 254}:9100") for i in range(1000) for t in TEMPLATES]
    scrape.parse(queries[0])  # the grammar built
    gc.collect()
    if trace:
        tracemalloc.start()
    t0 = time.process_time()
    kept = {q: scrape.parse(q) for q in queries}
    t1 = time.process_time()
    found = [grouped._candidates(e) for e in kept.values()]
    t2 = time.process_time()
    del found
    gc.collect()
    held = f"  held {tracemalloc.get_traced_memory()[0] / 1e6:.2f} MB" if trace else ""
    return f"keep: parse {t1 - t0:.3f} s, analysis {t2 - t1:.3f} s CPU{held}"


def first_sight() -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from fleetserver import addresses, page

    from watchdog.promql.store import SeriesStore
    from watchdog.samples import Sample
    from watchdog.sources import exposition
    from watchdog.sources.scrape import _labelled

    instances = [a + ":9100" for a in addresses(1000)]
    bodies = [page(100.0, f"m{i}") for i in range(1000)]
    runs = []
    for _ in range(7):
        gc.collect()
        store = SeriesStore()
        intern = store.intern
        readers = [exposition.PageReader(relabel=lambda labels, instance=a: intern(_labelled(labels, instance)))
                   for a in instances]
        t0 = time.process_time()
        pages = [reader.samples(body, 1000) for reader, body in zip(readers, bodies)]
        t1 = time.process_time()
        for instance, samples in zip(instances, pages):
            up = Sample((("__name__", "up"), ("instance", instance), ("job", "fleet")), 1.0)
            store.append_scrape(100.0, [*samples, up], target=instance)
        runs.append((t1 - t0, time.process_time() - t1))
    read = statistics.median(r for r, _ in runs)
    stored = statistics.median(s for _, s in runs)
    return f"first sight: read + relabel {read:.3f} s, store {stored:.3f} s CPU ({len(store)} series)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--code", metavar="DIR", help="import watchdog from DIR (a baseline tree)")
    parser.add_argument("--trace", action="store_true", help="also what the kept queries hold (tracemalloc)")
    args = parser.parse_args()
    if args.code:
        sys.path.insert(0, args.code)
    print(args.code or "this tree")
    print(keep(args.trace))
    print(first_sight())
    return 0


if __name__ == "__main__":
    sys.exit(main())
