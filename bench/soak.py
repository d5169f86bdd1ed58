"""Benchmark: memory soak of the real daemon on the demo scenario, 1 s interval.

    .venv/bin/python bench/soak.py [--minutes 20] [--sample 5] [--code /tmp/base-tree] [--probe 30 [--trace] [--collect-at S]]
                                   [--env MALLOC_ARENA_MAX=1] [--label NAME]

Starts a simulated model server (watchdog.demo) and `model-watchdog run` against it (scrape
source, the demo's rules, 1 s interval), switches the model between healthy and degraded every
minute (so rules fire, roll back and recover, and series come and go), samples the daemon's RSS
every `--sample` seconds, and fits a line: the slope (MB per hour) over the second half of the
run should be ≈ 0. Prints a table and writes bench/results/soak-<timestamp>.json.

Besides VmRSS each sample reads /proc/PID/status (RssAnon, RssFile, threads) and
/proc/PID/smaps: the slope of each kind of memory ([heap]: glibc's main arena; other anonymous
mappings: other malloc arenas, CPython's 1 MiB obmalloc arenas, thread stacks, large mallocs;
file-backed: code and libraries), and which mappings grew most between the first and the last
sample. `--probe N` runs the daemon under bench/soak_probe.py, which every N seconds writes
what the process holds from inside (malloc_info per arena, SQLite's memory, CPython's blocks,
threads, the collector's counts and the types of tracked objects that grew; `--trace`:
tracemalloc growth; `--collect-at S`: one gc.collect() at S seconds) to
bench/results/soak-<timestamp>-<pid>-probe.jsonl.
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
from common import compile_package, demo_config, free_port, machine, rss_mb, start_daemon, write_result  # noqa: E402

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


def status(pid: int) -> dict[str, float]:
    """RssAnon, RssFile (MB) and Threads of /proc/PID/status."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile", "RssShmem"):
            out[key] = int(value.split()[0]) / 1024
        elif key == "Threads":
            out[key] = int(value)
    return out


def mappings(pid: int) -> dict[str, tuple[str, int, int]]:
    """/proc/PID/smaps: start address → (description, size kB, Rss kB)."""
    found: dict[str, tuple[str, int, int]] = {}
    start = describe = ""
    size = 0
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if "-" in head[0] and not head[0].endswith(":"):
            lo, hi = head[0].split("-")
            start, size = lo, (int(hi, 16) - int(lo, 16)) // 1024
            path = head[5] if len(head) > 5 else ""
            aligned = "64M-aligned " if int(lo, 16) % (64 << 20) == 0 else ""
            describe = f"{head[1]} {path or (aligned + 'anon')}"
        elif head[0] == "Rss:":
            found[start] = (describe, size, int(head[1]))
    return found


def kinds(maps: dict[str, tuple[str, int, int]]) -> dict[str, float]:
    """MB of Rss by kind of mapping: heap (glibc's main arena), anon (everything else anonymous),
    stacks8m (anonymous mappings of exactly 8 MB: thread stacks), file (code, libraries, mmapped files)."""
    out = {"heap": 0.0, "anon": 0.0, "stacks8m": 0.0, "file": 0.0, "anon_mappings": 0.0}
    for describe, size, rss in maps.values():
        path = describe.split(" ", 1)[1]
        if path == "[heap]":
            out["heap"] += rss / 1024
        elif path.endswith("anon"):
            out["anon"] += rss / 1024
            out["anon_mappings"] += 1
            if size == 8192:
                out["stacks8m"] += rss / 1024
        elif not path.startswith("["):
            out["file"] += rss / 1024
    return out


def grown(first: dict[str, tuple[str, int, int]], last: dict[str, tuple[str, int, int]]) -> list[str]:
    """The mappings whose Rss changed most between two smaps readings (new and gone ones too)."""
    rows = []
    for start in set(first) | set(last):
        d0, s0, r0 = first.get(start, ("", 0, 0))
        d1, s1, r1 = last.get(start, ("", 0, 0))
        if r1 != r0 or s1 != s0:
            rows.append((r1 - r0, f"{start} {d1 or d0 + ' (gone)'} size {s0}->{s1} kB rss {r0}->{r1} kB"))
    rows.sort(key=lambda r: -abs(r[0]))
    return [f"{delta:+d} kB {text}" for delta, text in rows[:15]]


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
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="set in the daemon's environment")
    parser.add_argument("--probe", type=float, metavar="SECONDS", help="run the daemon under bench/soak_probe.py")
    parser.add_argument("--trace", action="store_true", help="with --probe: tracemalloc growth (slows the daemon)")
    parser.add_argument("--collect-at", type=float, metavar="SECONDS", help="with --probe: one gc.collect() then")
    parser.add_argument("--label", default="", help="a name for this run in the result")
    args = parser.parse_args()
    points: list[tuple[float, float]] = []
    series: list[dict[str, float]] = []
    maps_first: dict[str, tuple[str, int, int]] = {}
    maps_last: dict[str, tuple[str, int, int]] = {}
    env = {**os.environ, **dict(kv.split("=", 1) for kv in args.env)}
    if args.code:
        env["PYTHONPATH"] = args.code
    stamp = time.strftime("%Y%m%d-%H%M%S")
    probe_out = HERE / "results" / f"soak-{stamp}-{os.getpid()}-probe.jsonl"
    with tempfile.TemporaryDirectory() as tmp, SimulatedModelServer(version="v2", previous_versions=("v1",)) as model:
        directory, listen = Path(tmp), free_port()
        write_config(directory, model.url, listen)
        log = open(directory / "daemon.log", "w")
        if args.probe:
            compile_package(env)
            probe_out.parent.mkdir(exist_ok=True)
            daemon = subprocess.Popen([sys.executable, str(HERE / "soak_probe.py"), str(probe_out), str(args.probe),
                                       *(["--trace"] if args.trace else []),
                                       *(["--collect-at", str(args.collect_at)] if args.collect_at else []), "--",
                                       "-c", str(directory / "watchdog.yaml"), "--log-level", "warning", "run"],
                                      stdout=log, stderr=subprocess.STDOUT, cwd=directory, env=env)
        else:
            daemon = start_daemon(directory, log, env=env)
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
                    try:
                        maps_last = mappings(daemon.pid)
                        series.append({"t": elapsed, "rss": rss, **status(daemon.pid), **kinds(maps_last)})
                    except OSError:
                        pass
                    maps_first = maps_first or maps_last
                time.sleep(args.sample)
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
            log.close()
    half = [p for p in points if p[0] >= points[-1][0] / 2] if points else []
    by_kind = {}
    for key in ("RssAnon", "RssFile", "heap", "anon", "stacks8m", "file"):
        pairs = [(row["t"], row[key]) for row in series if key in row]
        second = [p for p in pairs if pairs and p[0] >= pairs[-1][0] / 2]
        by_kind[key] = {"start": pairs[0][1] if pairs else None, "end": pairs[-1][1] if pairs else None,
                        "slope_all": slope_mb_per_hour(pairs), "slope_second_half": slope_mb_per_hour(second)}
    result = {"benchmark": "soak", "label": args.label, "env": args.env, "machine": machine(), "code": args.code or "this tree",
              "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "minutes": args.minutes, "samples": len(points), "rss_start_mb": points[0][1] if points else None,
              "rss_end_mb": points[-1][1] if points else None, "rss_max_mb": max((r for _, r in points), default=None),
              "slope_mb_per_h_all": slope_mb_per_hour(points), "slope_mb_per_h_second_half": slope_mb_per_hour(half),
              "releases": flips, "exit_code": daemon.returncode,
              "threads": [series[0].get("Threads"), series[-1].get("Threads")] if series else None,
              "by_kind": by_kind, "grown_mappings": grown(maps_first, maps_last),
              "probe": str(probe_out) if args.probe else None, "rss_series": points, "series": series}
    print(f"{'measure':<28}{'value':>12}")
    for key in ("minutes", "samples", "releases", "rss_start_mb", "rss_end_mb", "rss_max_mb", "slope_mb_per_h_all",
                "slope_mb_per_h_second_half", "exit_code"):
        value = result[key]
        print(f"{key:<28}{(f'{value:.2f}' if isinstance(value, float) else str(value)):>12}")
    print(f"threads (first, last sample): {result['threads']}")
    print(f"{'kind (MB)':<12}{'start':>9}{'end':>9}{'MB/h all':>10}{'MB/h 2nd':>10}")
    for key, row in by_kind.items():
        if row["start"] is not None:
            print(f"{key:<12}{row['start']:>9.2f}{row['end']:>9.2f}{row['slope_all']:>10.2f}{row['slope_second_half']:>10.2f}")
    print("mappings that changed most (first → last sample):")
    for line in result["grown_mappings"]:
        print("  " + line)
    if args.probe:
        print(f"probe: {probe_out}")
    path = write_result("soak", result)
    print(f"machine: {result['machine']}\nwritten: {path}")
    return 0 if os.environ.get("SOAK_STRICT") is None or result["slope_mb_per_h_second_half"] < 5 else 1


if __name__ == "__main__":
    sys.exit(main())
