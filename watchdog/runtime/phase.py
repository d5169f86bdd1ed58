"""The phase of the ticks: evaluate just after Prometheus scrapes the targets (`align_ticks`).

A rule on the `prometheus` source sees a sample only once Prometheus has scraped it, and
Prometheus scrapes each target at a fixed phase of its interval (from a hash of the target).
Ticks on multiples of the interval therefore wait, on average, half an interval for the newest
sample, and up to a whole one. With

    align_ticks: {source: prom}          # optional: job: model

the daemon asks that Prometheus, at start and then every REALIGN_EVERY seconds, when it last
scraped its active targets (`GET /api/v1/targets`: `lastScrape` + `lastScrapeDuration`) and
shifts its tick grid to MARGIN after the end of those scrapes. Only targets scraped at the daemon's own interval count
(another interval has no single phase against ours); if their scrapes are spread over more
than a quarter of the interval, no phase suits them all and the grid stays where it was. Any
failure (Prometheus down at start, no target scraped yet) keeps the grid in place, with a
warning, and the reading is tried again every RETRY seconds: the option can only make the
newest sample fresher, never hold a tick back. Default: unset, ticks on multiples of the
interval.
"""

from __future__ import annotations

import logging
import re
import threading
from datetime import datetime
from typing import Any, Callable

from watchdog.clock import Clock
from watchdog.config.schema import AlignTicks
from watchdog.durations import parse_duration

log = logging.getLogger("watchdog.phase")

MARGIN = 0.05  # seconds after a scrape ends before its sample is queried (Prometheus commits it)
REALIGN_EVERY = 600.0  # seconds between two readings once a phase is known
RETRY = 5.0  # seconds between two readings while none is
MAX_SPREAD = 0.25  # share of the interval the scrapes may spread over and still get one phase
QUICK_RETRIES = 6  # readings RETRY apart before the wait doubles (up to REALIGN_EVERY): a phase may never come
#: JSON values a targets answer may hold (~15 per target): counted before it is decoded (sources/jsonlimits.py)
TARGETS_VALUE_LIMIT = 2_000_000
_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def rfc3339_seconds(text: str) -> float | None:
    """Prometheus' `lastScrape` (nanosecond RFC 3339) in seconds since the epoch; None when unset."""
    m = _TIME.match(text)
    if m is None or m.group(1).startswith("0001-"):  # Go's zero time: never scraped
        return None
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    whole = datetime.fromisoformat(m.group(1) + zone).timestamp()
    return whole + (int(m.group(2)[:9].ljust(9, "0")) / 1e9 if m.group(2) else 0.0)


def scrape_ends(doc: Any, interval: float, job: str = "") -> list[float]:
    """When each active target scraped every `interval` (of `job`, if given) finished its last
    scrape, from a `/api/v1/targets` answer."""
    data = doc.get("data") if isinstance(doc, dict) else None
    targets = data.get("activeTargets") if isinstance(data, dict) else None
    ends = []
    for t in targets if isinstance(targets, list) else []:
        labels = t.get("labels") if isinstance(t, dict) else None
        if not isinstance(labels, dict) or (job and labels.get("job") != job):
            continue
        try:
            every = parse_duration(t.get("scrapeInterval"))
            start = rfc3339_seconds(str(t.get("lastScrape", "")))
            took = float(t.get("lastScrapeDuration") or 0.0)
        except (TypeError, ValueError):
            continue
        if start is not None and abs(every - interval) < 1e-6 and 0 <= took < interval:
            ends.append(start + took)
    return ends


def offset_after(ends: list[float], interval: float) -> tuple[float | None, str]:
    """The grid offset (in [0, interval)) MARGIN after the latest of scrapes that end at these
    instants, or None and why not. The scrapes' phases form a cluster on the circle of the
    interval; the largest gap between them marks where the cluster ends."""
    if not ends:
        return None, "no active target scraped at this interval yet"
    phases = sorted(e % interval for e in ends)
    gaps = [(phases[(i + 1) % len(phases)] - p) % interval or (interval if len(phases) == 1 else 0.0)
            for i, p in enumerate(phases)]
    widest = max(range(len(gaps)), key=gaps.__getitem__)
    spread = interval - gaps[widest]
    if spread > MAX_SPREAD * interval:
        return None, f"the scrapes spread over {spread:.2f} s of the {interval:g} s interval: no one phase fits them"
    return round((phases[widest] + MARGIN) % interval, 3), f"{len(phases)} targets' scrapes end at +{phases[widest]:.3f} s"


class PhaseFollower:
    """Keeps the tick grid after the scrapes: measures at start, again every `every` seconds
    (a restarted Prometheus may scrape at other phases), and every `retry` seconds while no
    phase is known (Prometheus not up yet, or not yet scraped the targets)."""

    def __init__(self, align: AlignTicks, sources: Callable[[], dict[str, Any]], interval: float,
                 every: float = REALIGN_EVERY, retry: float = RETRY):
        self.align, self.sources, self.interval = align, sources, interval
        self.every, self.retry = every, retry
        self.offset: float | None = None  # the last phase measured
        self._warned = False

    def measure(self) -> float | None:
        """One reading of the scrapes; the grid offset, or None (logged once as a warning)."""
        from watchdog.sources import jsonlimits  # ijson: imported only where align_ticks is set

        try:
            answer = self.sources()[self.align.source].targets_api()  # the running configuration's
            if answer.status_code != 200:
                raise ValueError(f"HTTP {answer.status_code}")
            doc = jsonlimits.load_values(answer, f"{self.align.source} (GET /api/v1/targets)", TARGETS_VALUE_LIMIT)
            offset, why = offset_after(scrape_ends(doc, self.interval, self.align.job), self.interval)
        except Exception as exc:  # whatever went wrong, the grid in place is a correct schedule
            offset, why = None, f"cannot read the scrapes of {self.align.source} ({exc})"
        if offset is None:
            log.log(logging.DEBUG if self._warned else logging.WARNING,
                    "align_ticks: %s: the ticks stay where they are; trying again every %gs", why, self.retry)
            self._warned = True
            return None
        if offset != self.offset:
            log.info("align_ticks: %s; ticks at +%.3f s of every %g s", why, offset, self.interval)
        self.offset = offset
        return offset

    def follow(self, shift: Callable[[float], None], stop: threading.Event, clock: Clock) -> None:
        """Until `stop`: measure, `shift` the grid when a phase is found, wait (every/retry).
        Runs in its own thread: a slow Prometheus never holds up the start or a tick."""
        misses = 0
        while True:
            offset = self.measure()
            if offset is not None:
                shift(offset)
                misses = 0
            else:  # quick retries first (Prometheus starting), then less and less often
                misses += 1
            wait = self.every if offset is not None else min(self.every, self.retry * 2 ** max(0, misses - QUICK_RETRIES))
            if clock.sleep(wait, stop):
                return
