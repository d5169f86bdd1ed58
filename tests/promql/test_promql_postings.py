"""The store's inverted index (postings) selects exactly what testing every series would."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from watchdog.promql.ast import Matcher
from watchdog.promql.store import SeriesStore
from watchdog.samples import NAME, Sample, labels_of

NAMES = st.sampled_from(["up", "requests_total", "x"])
LABEL_NAMES = st.sampled_from(["instance", "status", "model", "le"])
VALUES = st.sampled_from(["", "a", "b", "a:1", "5xx", "ok"])
REGEXES = st.sampled_from([".+", "a.*", "a|b", "", ".*", "5.."])


@st.composite
def series(draw: st.DrawFn) -> dict[str, str]:
    labels = {NAME: draw(NAMES)}
    for name in draw(st.lists(LABEL_NAMES, max_size=3, unique=True)):
        value = draw(VALUES)
        if value:  # as on a scraped page: an empty label is no label
            labels[name] = value
    return labels


@st.composite
def matchers(draw: st.DrawFn) -> list[Matcher]:
    out = []
    if draw(st.booleans()):
        out.append(Matcher(NAME, "=", draw(NAMES)))
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["=", "!=", "=~", "!~"]))
        value = draw(REGEXES if op in ("=~", "!~") else VALUES)
        out.append(Matcher(draw(st.sampled_from([NAME, "instance", "status", "model", "le"])), op, value))
    return out


def linear(store: SeriesStore, ms: list[Matcher]) -> list:  # type: ignore[type-arg]
    """The old way: every series tested against every matcher."""
    return [s.labels for s in store._series.values() if all(m.matches(dict(s.labels).get(m.name, "")) for m in ms)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(series(), max_size=8), min_size=1, max_size=4), st.lists(matchers(), min_size=1, max_size=4),
       st.integers(0, 3))
def test_postings_select_what_a_linear_scan_selects(scrapes, selectors, forget_after):
    store = SeriesStore(lookback=10)
    for t, page in enumerate(scrapes):
        unique = {labels_of(s): None for s in page}
        store.append_scrape(float(t), [Sample(labels, 1.0) for labels in unique])
        if t == forget_after:
            store.prune(0, float(t) + 100)  # forgets the series that went stale: postings must follow
    for ms in selectors:
        assert [s.labels for s in store._select(ms)] == linear(store, ms)


def test_a_selector_on_one_instance_reads_only_that_instances_series():
    store = SeriesStore()
    store.append_scrape(1.0, [Sample(labels_of({NAME: "up", "instance": f"h{i}:1"}), 1.0) for i in range(1000)])
    chosen = store._select([Matcher(NAME, "=", "up"), Matcher("instance", "=", "h7:1")])
    assert [dict(s.labels)["instance"] for s in chosen] == ["h7:1"]
    assert store._postings["instance"]["h7:1"].keys() == {s.labels for s in chosen}
