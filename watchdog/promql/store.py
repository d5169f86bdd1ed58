"""In-memory samples of one scraped source, with Prometheus staleness.

Each series keeps two parallel lists, timestamps and values, appended in time
order, so windows are found with bisect. A stale marker is stored as value
`None` (Prometheus uses a special NaN): it ends the series for instant
selectors and is skipped by range selectors.

Series are found through an inverted index, as Prometheus' postings: for each label name and
value, the series that carry it. A selector's equality matchers (`instance="a:1"`) intersect
their postings, smallest first; only the series left are tested against the other matchers.
So a query for one instance among a thousand reads that instance's series, not the fleet's.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence

from watchdog.samples import Labels, Sample

from .ast import Matcher

DEFAULT_LOOKBACK = 300.0

Points = list[tuple[float, float]]


class _Series:
    __slots__ = ("labels", "label_map", "times", "values")

    def __init__(self, labels: Labels) -> None:
        self.labels = labels
        self.label_map = dict(labels)
        self.times: list[float] = []
        self.values: list[float | None] = []

    def append(self, t: float, value: float | None) -> None:
        # Out-of-order and duplicate timestamps are dropped, as Prometheus does,
        # which keeps `times` sorted for bisect.
        if self.times and t <= self.times[-1]:
            return
        self.times.append(t)
        self.values.append(value)

    def is_stale(self) -> bool:
        return bool(self.values) and self.values[-1] is None


class SeriesStore:
    """Sample buffer for ONE source that we scrape ourselves."""

    def __init__(self, lookback: float = DEFAULT_LOOKBACK) -> None:
        self.lookback = lookback
        self._series: dict[Labels, _Series] = {}
        # label name → label value → series (insertion-ordered dicts used as sets)
        self._postings: dict[str, dict[str, dict[Labels, _Series]]] = {}
        self._last_scrape: dict[str, set[Labels]] = {}

    def __len__(self) -> int:
        return len(self._series)

    def append_scrape(self, t: float, samples: Iterable[Sample], target: str = "") -> None:
        """Record one successful scrape; series missing since the last one get a stale marker."""
        seen: set[Labels] = set()
        for sample in samples:
            self._get_or_create(sample.labels).append(t, float(sample.value))
            seen.add(sample.labels)
        for labels in self._last_scrape.get(target, set()) - seen:
            self._series[labels].append(t, None)
        self._last_scrape[target] = seen

    def mark_stale(self, t: float, target: str = "") -> None:
        """A failed scrape: every series of that target ends now, as in Prometheus."""
        for labels in self._last_scrape.pop(target, set()):
            self._series[labels].append(t, None)

    def prune(self, keep_seconds: float, now: float) -> None:
        """Forget points older than `now - keep_seconds` (never less than the lookback)."""
        cutoff = now - max(keep_seconds, self.lookback)
        for labels, series in list(self._series.items()):
            drop = bisect_left(series.times, cutoff)
            if drop:
                del series.times[:drop]
                del series.values[:drop]
            if all(v is None for v in series.values):
                self._forget(labels)

    def instant(self, matchers: Sequence[Matcher], now: float) -> list[Sample]:
        """Latest value at or before `now` within the lookback; absent once stale."""
        out = []
        for series in self._select(matchers):
            i = bisect_right(series.times, now) - 1
            if i < 0 or series.times[i] <= now - self.lookback:
                continue
            value = series.values[i]
            if value is not None:
                out.append(Sample(series.labels, value))
        return out

    def window(self, matchers: Sequence[Matcher], start: float, end: float) -> list[tuple[Labels, Points]]:
        """Points with start < t <= end per series (stale markers left out); empty series omitted."""
        out = []
        for series in self._select(matchers):
            lo = bisect_right(series.times, start)
            hi = bisect_right(series.times, end)
            points = [(t, v) for t, v in zip(series.times[lo:hi], series.values[lo:hi]) if v is not None]
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
        return [s for s in candidates if all(m.matches(s.label_map.get(m.name, "")) for m in others)]

    def _get_or_create(self, labels: Labels) -> _Series:
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = _Series(labels)
            for name, value in labels:
                self._postings.setdefault(name, {}).setdefault(value, {})[labels] = series
        return series

    def _forget(self, labels: Labels) -> None:
        self._series.pop(labels)
        for name, value in labels:
            values = self._postings.get(name, {})
            members = values.get(value, {})
            members.pop(labels, None)
            if not members:
                values.pop(value, None)
                if not values:
                    self._postings.pop(name, None)
        for seen in self._last_scrape.values():
            seen.discard(labels)
