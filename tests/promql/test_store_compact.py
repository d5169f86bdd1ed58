"""The compact series store (arrays of doubles, a NaN-coded stale marker, interned label pairs)
answers exactly as a plain reference store of Python lists would, and frees what it forgets."""

from __future__ import annotations

import math
import random
import tracemalloc

import pytest

from watchdog.promql.ast import Matcher
from watchdog.promql.store import STALE, SeriesStore, is_stale
from watchdog.samples import NAME, Labels, Sample, labels_of


class ReferenceStore:
    """The semantics, spelled out: lists of (t, value or None), every series tested by every matcher."""

    def __init__(self, lookback: float) -> None:
        self.lookback = lookback
        self.series: dict[Labels, list[tuple[float, float | None]]] = {}
        self.last: dict[str, set[Labels]] = {}

    def _append(self, labels: Labels, t: float, v: float | None) -> None:
        points = self.series.setdefault(labels, [])
        if not points or t > points[-1][0]:
            points.append((t, v))

    def append_scrape(self, t: float, samples: list[Sample], target: str) -> None:
        seen = set()
        for s in samples:
            self._append(s.labels, t, s.value)
            seen.add(s.labels)
        for labels in self.last.get(target, set()) - seen:
            self._append(labels, t, None)
        self.last[target] = seen

    def mark_stale(self, t: float, target: str) -> None:
        for labels in self.last.pop(target, set()):
            self._append(labels, t, None)

    def prune(self, keep: float, now: float) -> None:
        cutoff = now - max(keep, self.lookback)
        for labels in list(self.series):
            self.series[labels] = points = [p for p in self.series[labels] if p[0] >= cutoff]
            if all(v is None for _, v in points):
                del self.series[labels]
                for seen in self.last.values():
                    seen.discard(labels)

    def _select(self, ms: list[Matcher]) -> list[Labels]:
        return [labels for labels in self.series if all(m.matches(dict(labels).get(m.name, "")) for m in ms)]

    def instant(self, ms: list[Matcher], now: float) -> list[Sample]:
        out = []
        for labels in self._select(ms):
            before = [p for p in self.series[labels] if p[0] <= now]
            if before and before[-1][0] > now - self.lookback and before[-1][1] is not None:
                out.append(Sample(labels, before[-1][1]))
        return out

    def window(self, ms: list[Matcher], start: float, end: float) -> list[tuple[Labels, list[tuple[float, float]]]]:
        out = []
        for labels in self._select(ms):
            points = [(t, v) for t, v in self.series[labels] if start < t <= end and v is not None]
            if points:
                out.append((labels, points))
        return out


def same(x: object) -> object:
    """NaN compares equal to NaN here (an exported NaN is a value the store must keep)."""
    if isinstance(x, float) and math.isnan(x):
        return "NaN"
    if isinstance(x, Sample):
        return (x.labels, same(x.value))
    if isinstance(x, (list, tuple)):
        return [same(v) for v in x]
    return x


NAMES = ["up", "requests_total", "latency_bucket"]
LABELS = {"instance": ["a:1", "b:1", "c:1", "d:1"], "status": ["ok", "error"], "le": ["0.1", "1", "+Inf"]}


def random_page(rng: random.Random) -> list[Sample]:
    page: dict[Labels, float] = {}
    for _ in range(rng.randint(0, 8)):
        labels = {NAME: rng.choice(NAMES)}
        for name, values in LABELS.items():
            if rng.random() < 0.5:
                labels[name] = rng.choice(values)
        page[labels_of(labels)] = rng.choice([float(rng.randint(0, 5)), rng.random(), math.nan, math.inf])
    return [Sample(labels, value) for labels, value in page.items()]


def random_matchers(rng: random.Random) -> list[Matcher]:
    ms = []
    if rng.random() < 0.7:
        ms.append(Matcher(NAME, "=", rng.choice(NAMES)))
    for _ in range(rng.randint(0, 2)):
        name = rng.choice(list(LABELS))
        op = rng.choice(["=", "!=", "=~", "!~"])
        value = rng.choice([".+", "a.*", "ok|error", ""]) if op in ("=~", "!~") else rng.choice([*LABELS[name], ""])
        ms.append(Matcher(name, op, value))
    return ms


@pytest.mark.parametrize("seed", range(40))
def test_the_compact_store_answers_as_the_reference(seed):
    rng = random.Random(seed)
    lookback = rng.choice([5.0, 30.0, 300.0])
    store, ref = SeriesStore(lookback=lookback), ReferenceStore(lookback)
    t = 1_700_000_000.0
    for _ in range(60):
        op = rng.random()
        target = rng.choice(["", "t1", "t2"])
        if op < 0.6:
            t += rng.choice([1.0, 2.5, 15.0])
            when = t if rng.random() < 0.9 else t - rng.choice([0.0, 1.0, 100.0])  # duplicate / out of order
            page = random_page(rng)
            store.append_scrape(when, page, target)
            ref.append_scrape(when, page, target)
        elif op < 0.7:
            store.mark_stale(t, target)
            ref.mark_stale(t, target)
        elif op < 0.8:
            keep, now = rng.choice([0.0, 10.0, 60.0]), t + rng.choice([0.0, 20.0, 400.0])
            store.prune(keep, now)
            ref.prune(keep, now)
        assert len(store) == len(ref.series)
        for _ in range(3):
            ms, now = random_matchers(rng), t - rng.choice([0.0, 1.0, 7.0, 40.0])
            assert same(store.instant(ms, now)) == same(ref.instant(ms, now))
            width = rng.choice([2.0, 10.0, 60.0, 600.0])
            assert same(store.window(ms, now - width, now)) == same(ref.window(ms, now - width, now))


def test_the_stale_marker_is_not_an_exported_nan():
    assert is_stale(STALE) and not is_stale(math.nan) and not is_stale(-math.nan) and not is_stale(1.0)
    assert not is_stale(math.inf - math.inf)
    store = SeriesStore()
    up = labels_of({NAME: "up"})
    store.append_scrape(1.0, [Sample(up, math.nan)], "t")
    assert math.isnan(store.instant([Matcher(NAME, "=", "up")], 2.0)[0].value)  # a NaN value is a value
    store.append_scrape(2.0, [], "t")  # gone from the page: the stale marker ends it
    assert store.instant([Matcher(NAME, "=", "up")], 3.0) == []
    assert same(store.window([Matcher(NAME, "=", "up")], 0.0, 3.0)) == same([(up, [(1.0, math.nan)])])


def test_retention_frees_series_that_vanished_with_their_postings_and_pairs():
    store = SeriesStore(lookback=30)
    for t in range(10):
        store.append_scrape(float(t), [Sample(labels_of({NAME: "x", "instance": f"h{i}:1", "code": "200"}), 1.0)
                                       for i in range(50)], target="a")
    store.append_scrape(10.0, [Sample(labels_of({NAME: "x", "instance": "h0:1", "code": "200"}), 1.0)], target="a")
    store.prune(0, 10.0 + 30)  # everything but h0's last point and the others' stale markers is older
    assert len(store) == 1
    assert set(store._postings["instance"]) == {"h0:1"}
    assert len(store._pairs) == 3
    store.mark_stale(11.0, "a")
    store.prune(0, 100.0)
    assert len(store) == 0 and store._postings == {} and store._pairs == {} and store._last_scrape == {}


def test_label_pairs_are_held_once_and_intern_gives_the_stores_copy():
    store = SeriesStore()
    pages = [[Sample(labels_of({NAME: "requests_total", "instance": f"h{i}:1", "status": s}), 1.0)
              for s in ("ok", "error")] for i in range(3)]
    for i, page in enumerate(pages):
        store.append_scrape(1.0, page, target=str(i))
    stored = [s.labels for s in store._series.values()]
    name_pairs = {id(labels[0]) for labels in stored}
    assert len(name_pairs) == 1  # one ("__name__", "requests_total") tuple for the six series
    fresh = labels_of({NAME: "requests_total", "instance": "h1:1", "status": "ok"})
    assert fresh is not stored[2] and store.intern(fresh) is stored[2]
    new = store.intern(labels_of({NAME: "requests_total", "instance": "h9:1", "status": "ok"}))
    assert new[0] is stored[0][0] and new[2] is stored[0][2]  # a new series reuses the pairs held


def test_a_new_series_is_stored_under_the_tuple_intern_gave_the_page_reader():
    """The scrape relabels a page's new series through `intern` before the round stores them:
    the store keeps that very tuple (one copy, the page reader's cache and the store share it),
    not a second one built from the pairs again."""
    store = SeriesStore()
    page = [labels_of({NAME: "requests_total", "instance": f"h{i}:1", "status": "ok"}) for i in range(3)]
    given = [store.intern(labels) for labels in page]
    store.append_scrape(1.0, [Sample(labels_of(dict(x)), 1.0) for x in page], target="a")  # equal, not the same
    assert all(store._series[x].labels is g for x, g in zip(page, given))
    assert store._built == {}  # taken as they were stored
    store.intern(labels_of({NAME: "requests_total", "instance": "h9:1", "status": "ok"}))  # a page that failed
    store.prune(300, 2.0)
    assert store._built == {}  # a round's label sets not stored are not held past its end


def test_interning_before_storing_gives_the_stores_contents_on_random_rounds():
    """Rounds where some pages are interned first (the scrape) and some are not (a failed
    page's series interned, never stored): the same series, points and pairs held once."""
    rng = random.Random(5)
    for trial in range(40):
        store, reference = SeriesStore(lookback=10), SeriesStore(lookback=10)
        names = [labels_of({NAME: rng.choice("xy"), "instance": f"h{i}", "le": rng.choice(["1", "+Inf"])})
                 for i in range(8)]
        for step in range(12):
            t = float(step * 4)
            for target in "ab":
                page = rng.sample(names, rng.randrange(0, 5))
                if rng.random() < 0.5:
                    page = [store.intern(x) for x in page]
                if rng.random() < 0.2:
                    store.intern(rng.choice(names))  # never stored
                    continue
                value = float(rng.randrange(4))
                store.append_scrape(t, [Sample(x, value) for x in page], target)
                reference.append_scrape(t, [Sample(x, value) for x in page], target)
            if rng.random() < 0.4:
                store.prune(0, t)
                reference.prune(0, t)
        assert list(store._series) == list(reference._series), trial
        for labels, series in store._series.items():
            ref = reference._series[labels]
            assert (list(series.times), repr(list(series.values))) == (list(ref.times), repr(list(ref.values))), trial
            assert all(store._pairs[pair] is pair for pair in series.labels), trial  # pairs held once


def test_a_point_costs_at_most_20_bytes():
    """Lists of Python floats took 40 bytes a point (8 + 24 for the value, 8 for the time)."""
    store = SeriesStore(lookback=10_000)
    labels = [labels_of({NAME: "x", "instance": f"h{i}:1"}) for i in range(200)]
    store.append_scrape(0.0, [Sample(lb, 0.5) for lb in labels])
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for t in range(1, 201):
            store.append_scrape(float(t), [Sample(lb, t * 0.5) for lb in labels])
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held / (200 * 200) <= 20


def test_last_scrapes_as_tuples_give_the_stale_markers_sets_gave_on_random_scrapes_and_prunes():
    """Each target's last scrape (now a tuple) against a reference kept as sets: the same
    series end with a stale marker, and a series pruned away is no longer in any last scrape."""
    rng = random.Random(11)
    for trial in range(30):
        store, reference = SeriesStore(lookback=20), {}  # target -> set of labels in its last scrape
        names = [labels_of({NAME: "x", "instance": f"h{i}"}) for i in range(6)]
        for step in range(40):
            t = float(step * 5)
            target = rng.choice(["a", "b"])
            if rng.random() < 0.15:
                store.mark_stale(t, target)
                for labels in reference.pop(target, set()):
                    assert is_stale(store._series[labels].values[-1]), trial
                continue
            page = rng.sample(names, rng.randrange(0, 4))
            own = {store.intern(x) for x in page}
            ended = reference.get(target, set()) - own
            store.append_scrape(t, [Sample(x, 1.0) for x in page], target)
            reference[target] = {store._series[store.intern(x)].labels for x in page}
            for labels in ended:
                assert is_stale(store._series[labels].values[-1]), trial
            if rng.random() < 0.3:
                store.prune(0, t + rng.choice([0.0, 30.0]))
                for key in reference:
                    reference[key] = {x for x in reference[key] if x in store._series}
            assert {k: set(v) for k, v in store._last_scrape.items()} == reference, trial
            assert all(x in store._series for last in store._last_scrape.values() for x in last), trial
            assert all(type(last) is tuple for last in store._last_scrape.values())  # not a set each (≈ 0.6 KB more)
