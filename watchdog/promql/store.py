"""In-memory samples of one scraped source, with Prometheus staleness.

Each series keeps two parallel arrays of C doubles (`array('d')`), timestamps and values,
appended in time order, so windows are found with bisect: 16 bytes a point, where lists of
Python floats took 40. A stale marker is stored as a NaN with its own bit pattern (as
Prometheus' StaleNaN, but a quiet NaN), told apart from an exported `NaN` by its bits: it ends
the series for instant selectors and is skipped by range selectors.

Label sets are interned: a series' label pairs are shared with every other series that has
the same pair (a fleet's `__name__`, `le` and `status` pairs exist once, not once per target),
and `intern(labels)` gives a caller (the scrape's relabelling) the store's own copy, so one
copy of each label set is held. Pruning forgets a series whose points are all gone or stale,
and with it its postings and the pairs no other series uses.

Series are found through an inverted index, as Prometheus' postings: for each label name and
value, the series that carry it. A selector's equality matchers (`instance="a:1"`) intersect
their postings, smallest first; only the series left are tested against the other matchers.
So a query for one instance among a thousand reads that instance's series, not the fleet's.
"""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence

from watchdog.samples import Labels, Sample

from .ast import Matcher

DEFAULT_LOOKBACK = 300.0

Points = list[tuple[float, float]]

# A quiet NaN with a payload of its own: no exported or computed NaN has these bits
# (float("nan") is 0x7ff8000000000000), and a quiet NaN keeps its bits through copies.
_STALE_BITS = 0x7FF8_0000_0000_5EA1
_STALE_BYTES = struct.pack("<Q", _STALE_BITS)
STALE = struct.unpack("<d", _STALE_BYTES)[0]


def is_stale(value: float) -> bool:
    """True for the stale marker only (an exported NaN is a value, not a marker)."""
    return value != value and struct.pack("<d", value) == _STALE_BYTES


class _Series:
    __slots__ = ("labels", "times", "values")

    def __init__(self, labels: Labels) -> None:
        self.labels = labels
        self.times = array("d")
        self.values = array("d")

    def append(self, t: float, value: float) -> None:
        # Out-of-order and duplicate timestamps are dropped, as Prometheus does,
        # which keeps `times` sorted for bisect.
        times = self.times
        if times and t <= times[-1]:
            return
        times.append(t)
        self.values.append(value)

    def label(self, name: str) -> str:
        for k, v in self.labels:
            if k == name:
                return v
        return ""


class SeriesStore:
    """Sample buffer for ONE source that we scrape ourselves."""

    def __init__(self, lookback: float = DEFAULT_LOOKBACK) -> None:
        self.lookback = lookback
        self._series: dict[Labels, _Series] = {}
        # label name → label value → series (insertion-ordered dicts used as sets)
        self._postings: dict[str, dict[str, dict[Labels, _Series]]] = {}
        # each target's series in its last scrape: a tuple (136 bytes for 12 series; a set was 728)
        self._last_scrape: dict[str, tuple[Labels, ...]] = {}
        self._pairs: dict[tuple[str, str], tuple[str, str]] = {}  # each label pair held once
        # label sets `intern` built from the pairs and not stored yet (a page's new series, read
        # before the round stores them): `_get_or_create` takes them as they are, not interned
        # twice. Emptied by `prune`, the end of a scrape round (a page that failed is not stored).
        self._built: dict[Labels, Labels] = {}

    def __len__(self) -> int:
        return len(self._series)

    def intern(self, labels: Labels) -> Labels:
        """The store's copy of `labels` (equal to it) when it holds that series, else `labels`
        rebuilt from the pairs it already holds: keep this one, and one copy is held (the
        series, when it is stored before the next `prune`, is stored under this very tuple)."""
        series = self._series.get(labels)
        if series is not None:
            return series.labels
        built = self._shared(labels)
        return self._built.setdefault(built, built)

    def _shared(self, labels: Labels) -> Labels:
        """`labels` rebuilt from the pairs the store holds (a new pair is held from now on)."""
        pairs = self._pairs
        out = []
        for pair in labels:
            shared = pairs.get(pair)
            if shared is None:
                shared = pairs[pair] = (sys.intern(pair[0]), pair[1])
            out.append(shared)
        return tuple(out)

    def append_scrape(self, t: float, samples: Iterable[Sample], target: str = "") -> None:
        """Record one successful scrape; series missing since the last one get a stale marker."""
        seen: set[Labels] = set()
        for sample in samples:
            series = self._get_or_create(sample.labels)
            series.append(t, float(sample.value))
            seen.add(series.labels)
        for labels in self._last_scrape.get(target, ()):
            if labels not in seen:
                self._series[labels].append(t, STALE)
        self._last_scrape[target] = tuple(seen)

    def append_stamped(self, points: Iterable[tuple[Labels, float, float]]) -> None:
        """Samples that carry their own time (an exporter's explicit timestamp), as (labels, t,
        value), each appended at its t. Not part of a target's last scrape: no stale marker ends
        them, they fade with the lookback (Prometheus tracks staleness only for samples without
        a timestamp). One at or before its series' last point (a repeat) is dropped."""
        for labels, t, value in points:
            self._get_or_create(labels).append(t, value)

    def mark_stale(self, t: float, target: str = "") -> None:
        """A failed scrape: every series of that target ends now, as in Prometheus."""
        for labels in self._last_scrape.pop(target, ()):
            self._series[labels].append(t, STALE)

    def prune(self, keep_seconds: float, now: float) -> None:
        """Forget points older than `now - keep_seconds` (never less than the lookback), and
        the series left with no point or only stale markers."""
        self._built.clear()
        cutoff = now - max(keep_seconds, self.lookback)
        gone: set[Labels] = set()
        for labels, series in list(self._series.items()):
            drop = bisect_left(series.times, cutoff)
            if drop:
                del series.times[:drop]
                del series.values[:drop]
            values = series.values
            if values and values[-1] == values[-1]:
                continue  # the latest point is a number: kept
            if not any(v == v or not is_stale(v) for v in values):
                self._forget(labels)
                gone.add(labels)
        if gone:  # out of the targets' last scrapes, all at once
            for target, last in self._last_scrape.items():
                if any(labels in gone for labels in last):
                    self._last_scrape[target] = tuple(labels for labels in last if labels not in gone)
        if len(self._pairs) > 2 * sum(len(values) for values in self._postings.values()) + 64:
            self._pairs = {pair: pair for labels in self._series for pair in labels}  # interned, never stored

    def instant(self, matchers: Sequence[Matcher], now: float) -> list[Sample]:
        """Latest value at or before `now` within the lookback; absent once stale."""
        out = []
        for series in self._select(matchers):
            i = bisect_right(series.times, now) - 1
            if i < 0 or series.times[i] <= now - self.lookback:
                continue
            value = series.values[i]
            if value == value or not is_stale(value):
                out.append(Sample(series.labels, value))
        return out

    def window(self, matchers: Sequence[Matcher], start: float, end: float) -> list[tuple[Labels, Points]]:
        """Points with start < t <= end per series (stale markers left out); empty series omitted."""
        out = []
        for series in self._select(matchers):
            lo = bisect_right(series.times, start)
            hi = bisect_right(series.times, end)
            points = [(t, v) for t, v in zip(series.times[lo:hi], series.values[lo:hi]) if v == v or not is_stale(v)]
            if points:
                out.append((series.labels, points))
        return out

    def _select(self, matchers: Sequence[Matcher]) -> list[_Series]:
        """The series every matcher accepts, in the order they were first stored."""
        lists = []
        for m in matchers:
            if m.op == "=" and m.value != "":  # `x=""` also matches series without x: not in postings
                found = self._postings.get(m.name, {}).get(m.value)
                if not found:
                    return []
                lists.append(found)
        if not lists:
            candidates: Iterable[_Series] = self._series.values()
        else:
            lists.sort(key=len)
            first, rest = lists[0], lists[1:]
            candidates = [s for labels, s in first.items() if all(labels in other for other in rest)]
        others = [m for m in matchers if not (m.op == "=" and m.value != "")]
        if not others:
            return list(candidates)
        return [s for s in candidates if all(m.matches(s.label(m.name)) for m in others)]

    def _get_or_create(self, labels: Labels) -> _Series:
        series = self._series.get(labels)
        if series is None:
            labels = self._built.pop(labels, None) or self._shared(labels)
            series = self._series[labels] = _Series(labels)
            postings = self._postings
            for name, value in labels:  # no `setdefault(…, {})`: that builds two dicts per pair to drop them
                values = postings.get(name)
                if values is None:
                    values = postings[name] = {}
                members = values.get(value)
                if members is None:
                    members = values[value] = {}
                members[labels] = series
        return series

    def _forget(self, labels: Labels) -> None:
        self._series.pop(labels)
        for pair in labels:
            name, value = pair
            values = self._postings.get(name, {})
            members = values.get(value, {})
            members.pop(labels, None)
            if not members:
                self._pairs.pop(pair, None)
                values.pop(value, None)
                if not values:
                    self._postings.pop(name, None)
