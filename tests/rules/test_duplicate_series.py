"""A query whose series share one label set once `__name__` is dropped (`{__name__=~"a|b"}`, a
SQL GROUP BY that repeats a key, a hostile source). Each tick judged both under one state key:
a breach and an OK of the same labels reset the `for` timer twice a tick, so the rule never
fired and its history flapped pending/inactive for ever. As Prometheus does for an alerting
rule, such a result is an error of the query (no data, with the reason), never a silent no."""

from __future__ import annotations

from watchdog.samples import Sample, labels_of

from tests.fixtures.rules import ERROR_RULE
from tests.harness import Harness


def test_series_with_the_same_labels_are_a_query_error_not_a_silent_no(tmp_path) -> None:
    h = Harness(tmp_path, ERROR_RULE)
    h.source.set("error_ratio", [Sample(labels_of({"__name__": "a", "x": "1"}), 0.2),
                                 Sample(labels_of({"__name__": "b", "x": "1"}), 0.01)])
    reports = h.run_for(60)
    verdicts = [(v.labels, v.outcome.value) for r in reports for _, _, v, _ in r.verdicts]
    assert verdicts and all(v == ((), "no_data") for v in verdicts), verdicts
    reason = reports[-1].verdicts[0][2].reason
    assert "same labels" in reason and '{x="1"}' in reason, reason
    flaps = [e for e in h.store.history(limit=100) if "pending" in e.message]
    assert not flaps, [e.message for e in flaps]


def test_distinct_series_are_judged_each_as_before(tmp_path) -> None:
    h = Harness(tmp_path, ERROR_RULE)
    h.source.set("error_ratio", [Sample(labels_of({"__name__": "a", "x": "1"}), 0.2),
                                 Sample(labels_of({"__name__": "a", "x": "2"}), 0.01)])
    h.run_for(60)
    assert h.phases("error-rate") == {'{"x":"1"}': "firing", '{"x":"2"}': "inactive"}
