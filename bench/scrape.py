"""One scrape round of N loopback targets, in process: the scrape source's path against the old one.

    .venv/bin/python bench/scrape.py --targets 1000 --rounds 5

The targets are bench/fleetserver.py's pages (one asyncio server on N `127.0.x.y` addresses,
run as its own process so its CPU is not counted here). Each round scrapes every target
once and stores the samples, as a tick of the `scrape` source does. Two paths, measured in the
same run, one after the other:

- new: `ScrapeSource.begin_tick` (the event-loop client of `watchdog.http.scrapeloop`, the
  cached exposition parser, the series store);
- old: what the source did before (a thread pool of `concurrency` urllib3 transports,
  prometheus_client's parser, relabelling by look-up, the same series store).

CPU is `time.process_time()` of this process (all its threads); wall is `time.perf_counter()`.
The first round of each path (connects) is reported apart from the steady rounds (keep-alive).
Prints a table and writes bench/results/scrape-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # bench/ is not a package: fleetserver sits beside this file
sys.path.insert(0, str(HERE.parent))

from fleetserver import addresses  # noqa: E402

from watchdog.http import fetch as httpfetch  # noqa: E402
from watchdog.promql import SeriesStore  # noqa: E402
from watchdog.samples import NAME, Labels, Sample, labels_of  # noqa: E402
from watchdog.sources import exposition  # noqa: E402
from watchdog.sources.scrape import ScrapeOptions, ScrapeSource  # noqa: E402

T0 = 1_700_000_000.0


class OldPath:
    """The scrape source's round before the event loop: urllib3 on a thread pool, the
    prometheus_client parser, relabelling by look-up; the same store."""

    def __init__(self, urls: list[str], concurrency: int):
        self.urls = urls
        self.sessions = [httpfetch.make_session(True, None, trust_env=False) for _ in urls]
        self.relabelled: list[dict[Labels, Labels]] = [{} for _ in urls]
        self.instances = [u.split("/")[2] for u in urls]
        self.pool = ThreadPoolExecutor(max_workers=min(concurrency, len(urls)))
        self.store = SeriesStore()

    def one(self, i: int) -> list[Sample] | Exception:
        try:
            response = httpfetch.request(self.sessions[i], "GET", self.urls[i], timeout=5.0, what="scrape of",
                                         headers={"Accept": "text/plain;version=0.0.4;q=1,*/*;q=0.1"})
            page = exposition.reference_samples(response.content, 50_000)
        except Exception as exc:  # noqa: BLE001 - counted, not raised
            return exc
        last, now, out = self.relabelled[i], {}, []
        for s in page:
            labels = last.get(s.labels)
            if labels is None:
                relabelled = {("exported_instance" if k == "instance" else k): v for k, v in s.labels}
                relabelled["instance"] = self.instances[i]
                labels = labels_of(relabelled)
            now[s.labels] = labels
            out.append(Sample(labels, s.value))
        self.relabelled[i] = now
        return out

    def round(self, t: float) -> int:
        failed = 0
        for i, outcome in enumerate(self.pool.map(self.one, range(len(self.urls)))):
            up = Sample(labels_of({NAME: "up", "instance": self.instances[i]}), 0.0 if isinstance(outcome, Exception) else 1.0)
            if isinstance(outcome, Exception):
                failed += 1
                self.store.append_scrape(t, [up], target=self.instances[i])
            else:
                self.store.append_scrape(t, [*outcome, up], target=self.instances[i])
        self.store.prune(300, t)
        return failed

    def close(self) -> None:
        self.pool.shutdown()
        for s in self.sessions:
            s.close()


class NewPath:
    def __init__(self, urls: list[str], concurrency: int):
        self.source = ScrapeSource("fleet", ScrapeOptions(urls=urls, concurrency=concurrency, timeout=5.0))

    def round(self, t: float) -> int:
        error = self.source.begin_tick(t)
        if error is None:
            return 0
        return sum(1 for target in self.source.targets if target.last_error)

    def close(self) -> None:
        self.source.close()


def measure(path: Any, rounds: int) -> dict[str, Any]:
    runs = []
    for r in range(rounds):
        cpu, wall = time.process_time(), time.perf_counter()
        failed = path.round(T0 + 15 * r)
        runs.append({"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall, "failed": failed})
    steady = runs[1:] or runs
    return {"first": runs[0], "rounds": runs,
            "cpu": statistics.median(r["cpu"] for r in steady),
            "wall": statistics.median(r["wall"] for r in steady),
            "failed": max(r["failed"] for r in runs), "series": len(path.store if hasattr(path, "store")
                                                                     else path.source.store)}


def start_fleet(count: int, port: int) -> subprocess.Popen:  # type: ignore[type-arg]
    server = subprocess.Popen([sys.executable, str(HERE / "fleetserver.py"), "--count", str(count), "--port", str(port)],
                              stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    if server.stdout.readline().strip() != "ready":
        server.kill()
        raise SystemExit("bench/fleetserver.py did not start")
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5, help="rounds per path (the first one connects)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--port", type=int, default=18181)
    parser.add_argument("--only", choices=("new", "old"), help="measure one path only")
    args = parser.parse_args(argv)

    server = start_fleet(args.targets, args.port)
    urls = [f"http://{a}:{args.port}/metrics" for a in addresses(args.targets)]
    paths: dict[str, Callable[[], Any]] = {"new": lambda: NewPath(urls, args.concurrency),
                                           "old": lambda: OldPath(urls, args.concurrency)}
    results: dict[str, Any] = {}
    try:
        for name, make in paths.items():
            if args.only and name != args.only:
                continue
            path = make()
            try:
                results[name] = measure(path, args.rounds)
            finally:
                path.close()
    finally:
        server.terminate()
        server.wait()

    print(f"one scrape round of {args.targets} loopback targets (bench/fleetserver.py pages), "
          f"median of {max(1, args.rounds - 1)} keep-alive rounds")
    print(f"{'path':<6} {'CPU s':>8} {'wall s':>8} {'first CPU':>10} {'first wall':>11} {'failed':>7} {'series':>8}")
    for name, r in results.items():
        print(f"{name:<6} {r['cpu']:>8.3f} {r['wall']:>8.3f} {r['first']['cpu']:>10.3f} {r['first']['wall']:>11.3f} "
              f"{r['failed']:>7} {r['series']:>8}")
    if "new" in results and "old" in results:
        print(f"ratio old/new: CPU {results['old']['cpu'] / results['new']['cpu']:.1f}x, "
              f"wall {results['old']['wall'] / results['new']['wall']:.1f}x")
    out = HERE / "results" / f"scrape-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"targets": args.targets, "rounds": args.rounds, "concurrency": args.concurrency,
                               "results": results}, indent=2))
    print(f"wrote {out.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
