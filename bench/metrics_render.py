"""Benchmark: one `/metrics` render of the daemon's metrics at fleet scale, old vs new in the same run.

    .venv/bin/python bench/metrics_render.py [--targets 1000] [--rules 10] [--reads 5]

The per-rule families of `--targets × --rules` rules, as the engine fills them after a tick
(a value, a threshold, a phase and an outcome count per rule; a few targets with decisions):

- old: `generate_latest(registry)`, what `/metrics` served before (a Sample object per line,
  label names validated per line);
- new: `DaemonMetrics.render()` (watchdog/metrics.py): the client's own families through
  `generate_latest`, the per-rule ones formatted from the rule tables in pieces (what
  `/metrics` streams, `DaemonMetrics.chunks()`), nothing kept between reads.

CPU time (`time.process_time`) per read, median of `--reads`: the first new read (every line
rendered), reads after a tick that changed every value and outcome (the fleet's case: values
move every tick), and reads with nothing changed. Both outputs are checked byte-equal.
Prints a table and writes bench/results/metrics_render-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from prometheus_client.exposition import generate_latest

from common import machine, write_result
from watchdog.metrics import DaemonMetrics

BOUNDS = ("above", "below")
PHASES = ("inactive", "pending", "firing")


def tick(metrics: DaemonMetrics, targets: int, rules: int, rng: random.Random) -> None:
    """What one engine tick writes: every rule's value and outcome, a phase, a threshold."""
    r = metrics.rules
    for t in range(targets):
        target = f"m{t:04d}"
        for i in range(rules):
            rule = f"rule-{i}"
            r.set_value(target, rule, "{}", rng.random())
            r.set_threshold(target, rule, BOUNDS[i % 2], 0.05 * (i + 1))
            r.set_phase(target, rule, "{}", PHASES[0] if rng.random() < 0.98 else PHASES[1])
            r.count_outcome(target, rule, "ok")


def cpu(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--rules", type=int, default=10)
    parser.add_argument("--reads", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(13)
    metrics = DaemonMetrics()
    for t in range(0, args.targets, 50):
        metrics.decisions.labels(f"m{t:04d}", "succeeded").inc()
    tick(metrics, args.targets, args.rules, rng)

    first = cpu(metrics.render)
    old, changed, unchanged = [], [], []
    for _ in range(args.reads):
        tick(metrics, args.targets, args.rules, rng)
        old.append(cpu(lambda: generate_latest(metrics.registry)))
        changed.append(cpu(metrics.render))
        unchanged.append(cpu(metrics.render))
        assert metrics.render() == generate_latest(metrics.registry), "render differs from generate_latest"
    size = len(metrics.render())
    result = {"rules": args.targets * args.rules, "bytes": size, "machine": machine(),
              "old_s": statistics.median(old), "new_first_s": first,
              "new_after_tick_s": statistics.median(changed), "new_unchanged_s": statistics.median(unchanged)}
    result["ratio_after_tick"] = result["old_s"] / result["new_after_tick_s"]
    print(f"/metrics for {result['rules']:,} rules ({size / 1e6:.1f} MB), CPU per read, median of {args.reads}:")
    print("| render | CPU s |\n|---|---|")
    print(f"| old: generate_latest(registry) | {result['old_s']:.3f} |")
    print(f"| new: first read (every line rendered) | {first:.3f} |")
    print(f"| new: after a tick that changed every value | {result['new_after_tick_s']:.3f} |")
    print(f"| new: nothing changed | {result['new_unchanged_s']:.3f} |")
    print(f"ratio old / new after a tick: {result['ratio_after_tick']:.1f}×")
    print(f"written to {write_result('metrics_render', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
