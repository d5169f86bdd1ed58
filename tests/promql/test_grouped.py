"""`evaluate_many` (templated queries evaluated as one) against `evaluate` of each query alone:
random stores, random templates, the same answers — samples, labels, order, bit-equal values,
and the same errors."""

from __future__ import annotations

import math
import random

import pytest

from watchdog.errors import PromQLError
from watchdog.promql import SeriesStore, evaluate, parse
from watchdog.promql.grouped import _candidates, evaluate_many, shape_of
from watchdog.promql.parser import Templated, parse_kept
from watchdog.samples import NAME, Sample, labels_of

INSTANCES = ["a:1", "b:2", "c:3", "d:4", "e:5"]
T0 = 1_700_000_000.0


def random_store(rng: random.Random, instances: list[str] = INSTANCES) -> SeriesStore:
    store = SeriesStore()
    series = []
    for instance in instances + [""]:
        for name in ("req", "lat_bucket", "acc", "other"):
            for status in ("ok", "error", ""):
                if rng.random() < 0.5:
                    continue
                les = ["0.1", "0.5", "+Inf"] if name == "lat_bucket" else [""]
                for le in les:
                    labels = {NAME: name, "instance": instance, "status": status, "le": le,
                              "job": rng.choice(["api", "batch"])}
                    series.append(labels_of({k: v for k, v in labels.items() if v}))
    rng.shuffle(series)  # creation order matters for sums: it must not be the instances' order
    values = {labels: rng.uniform(0, 100) for labels in series}
    for k in range(8):
        t = T0 + 15 * k
        samples = []
        for labels in series:
            if rng.random() < 0.1:
                continue  # goes stale
            values[labels] += rng.choice([0.0, rng.uniform(0, 50), -rng.uniform(0, 5), math.nan, 1e-9])
            samples.append(Sample(labels, values[labels]))
        store.append_scrape(t, samples)
    return store


def selector(rng: random.Random, name: str) -> str:
    matchers = ['instance="{V}"']
    if rng.random() < 0.4:
        matchers.append(rng.choice(['status="error"', 'status!="error"', 'job=~"a.*"', 'status=""', 'job!~"b.*"']))
    rng.shuffle(matchers)
    return f"{name}{{{', '.join(matchers)}}}"


def vector(rng: random.Random, depth: int) -> str:
    kind = rng.randrange(9) if depth > 0 else rng.randrange(2)
    name = rng.choice(["req", "acc", "lat_bucket", "other"])
    if kind == 0:
        return selector(rng, name)
    if kind == 1:
        fn = rng.choice(["rate", "increase", "avg_over_time", "max_over_time", "min_over_time", "sum_over_time",
                         "count_over_time"])
        return f"{fn}({selector(rng, name)}[{rng.choice(['30s', '1m', '5m'])}])"
    sub = vector(rng, depth - 1)
    if kind == 2:
        op = rng.choice(["sum", "avg", "min", "max", "count"])
        grouping = rng.choice(["", " by (status)", " by (le)", " without (status)", " by (job, le)", " without (le)",
                               " by ()", " without ()"])
        return f"{op}{grouping} ({sub})"
    if kind == 3:
        inner = f"sum by (le) (rate({selector(rng, 'lat_bucket')}[1m]))" if rng.random() < 0.7 else sub
        return f"histogram_quantile({rng.choice(['0.5', '0.99', '0.9'])}, {inner})"
    if kind == 4:
        return rng.choice([f"abs({sub})", f"clamp_min({sub}, 3)", f"clamp_max({sub}, 50)", f"-({sub})"])
    if kind == 5:
        op = rng.choice(["+", "-", "*", "/", "%", "^", ">", "<", "==", ">= bool", "!= bool"])
        return f"({sub}) {op} {rng.choice(['2', '0', '0.5', 'NaN'])}" if rng.random() < 0.5 else f"3 {op} ({sub})"
    other = vector(rng, depth - 1)
    if kind == 6:
        matching = rng.choice(["", " on (status)", " ignoring (le)", " on ()", " ignoring (job)", " on (job, status)"])
        return f"({sub}) {rng.choice(['+', '/', '>', '-', '< bool'])}{matching} ({other})"
    if kind == 7:
        matching = rng.choice(["", " on (status)", " ignoring (job)"])
        return f"({sub}) {rng.choice(['and', 'or', 'unless'])}{matching} ({other})"
    return f"sum(rate({selector(rng, 'req')}[1m])) / sum(rate({selector(rng, name)}[1m]))"


def same(a: list[Sample] | PromQLError, b: list[Sample] | PromQLError) -> bool:
    if isinstance(a, PromQLError) or isinstance(b, PromQLError):
        return isinstance(a, PromQLError) and isinstance(b, PromQLError) and str(a) == str(b)
    return len(a) == len(b) and all(
        x.labels == y.labels and (x.value == y.value or (math.isnan(x.value) and math.isnan(y.value)))
        and math.copysign(1, x.value) == math.copysign(1, y.value)
        for x, y in zip(a, b))


def alone(query: str, store: SeriesStore, now: float) -> list[Sample] | PromQLError:
    try:
        return evaluate(parse(query), store, now)
    except PromQLError as exc:
        return exc


@pytest.mark.parametrize("seed", range(40))
def test_grouped_answers_equal_each_query_alone(seed: int) -> None:
    rng = random.Random(seed)
    store = random_store(rng)
    templates = [vector(rng, rng.randrange(1, 4)) for _ in range(6)]
    values = INSTANCES[: rng.randrange(2, 6)] + ["z:9"]  # one instance that is not in the store
    queries = [t.replace("{V}", v) for t in templates for v in values]
    now = T0 + 15 * 7 + rng.choice([0, 1, 14.9])
    exprs = [parse(q) for q in queries]
    answers = dict(evaluate_many(exprs, store, now))
    assert sorted(answers) == list(range(len(queries)))
    for i, query in enumerate(queries):
        assert same(answers[i], alone(query, store, now)), query


LONG_INSTANCES = ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080", "10.0.0.4:8080", "10.0.0.5:8080"]


@pytest.mark.parametrize("seed", range(40))
def test_grouped_answers_of_kept_queries_equal_each_query_alone(seed: int) -> None:
    """As above, with what a source keeps (`parse_kept`: a `Templated` for a query whose values
    are long enough to be placeholders, its tree never built when it is grouped), some queries
    with a second long value (a job) and some kept as trees: the answers of `evaluate` alone."""
    rng = random.Random(500 + seed)
    store = random_store(rng, LONG_INSTANCES)
    templates = [vector(rng, rng.randrange(1, 4)) for _ in range(5)]
    templates += ['up{instance="{V}", job!="batch-and-more"} + on (status) acc{instance="{V}"}',
                  'sum by (job) (req{instance="{V}", job=~"a.*"})', 'req{instance="{V}"}']
    values = LONG_INSTANCES[: rng.randrange(2, 6)] + ["z:9", "10.0.0.99:9999"]  # not in the store
    queries = [t.replace("{V}", v) for t in templates for v in values]
    now = T0 + 15 * 7 + rng.choice([0, 1, 14.9])
    kept = [parse_kept(q) for q in queries]
    assert any(isinstance(k, Templated) for k in kept)
    for _ in range(2):  # the second batch: the analysis the handles keep
        answers = dict(evaluate_many(kept, store, now))
        assert sorted(answers) == list(range(len(queries)))
        for i, query in enumerate(queries):
            assert same(answers[i], alone(query, store, now)), query
            assert same(evaluate(kept[i], store, now) if not isinstance(answers[i], PromQLError) else answers[i],
                        alone(query, store, now)), query


def test_the_fleet_queries_are_grouped() -> None:
    """The templates of bench/fleet.py all qualify (so they are evaluated once per tick)."""
    queries = [
        'sum(rate(requests_total{instance="{V}",status="error"}[1m])) / sum(rate(requests_total{instance="{V}"}[1m]))',
        'histogram_quantile(0.99, sum by (le) (rate(request_latency_seconds_bucket{instance="{V}"}[1m])))',
        'model_accuracy{instance="{V}"}', 'up{instance="{V}"}',
        'rate(request_latency_seconds_sum{instance="{V}"}[1m]) / rate(request_latency_seconds_count{instance="{V}"}[1m])',
        'avg_over_time(model_accuracy{instance="{V}"}[1m])',
    ]
    for q in queries:
        assert {label for label, _, _ in _candidates(parse(q.replace("{V}", "a:1")))} == {"instance"}, q


@pytest.mark.parametrize("query", [
    'vector(1) + up{instance="{V}"}',  # a series of no instance
    'scalar(up{instance="{V}"})',
    'sum by (instance) (up{instance="{V}"})',  # the label is named elsewhere
    'up{instance="{V}"} + on (instance) up{instance="{V}"}',
    'up{instance="{V}"} + other{instance="x"}',  # not the same value in every selector
    'up{instance="{V}"} + other',  # a selector without it
    'up{instance="{V}", instance=~".+"}',
    '{instance="{V}"}',
])
def test_queries_that_do_not_qualify_are_evaluated_alone(query: str) -> None:
    assert "instance" not in {label for label, _, _ in _candidates(parse(query.replace("{V}", "a:1")))}
    store = random_store(random.Random(1))
    queries = [query.replace("{V}", v) for v in INSTANCES]
    answers = dict(evaluate_many([parse(q) for q in queries], store, T0 + 105))
    for i, q in enumerate(queries):
        assert same(answers[i], alone(q, store, T0 + 105))


def test_an_error_in_one_part_gives_each_query_its_own_answer() -> None:
    """A many-to-many match for one instance fails that instance's query only."""
    store = SeriesStore()
    samples = [Sample(labels_of({NAME: "x", "instance": "a", "k": "1"}), 1.0),
               Sample(labels_of({NAME: "y", "instance": "a", "k": "1"}), 2.0),
               Sample(labels_of({NAME: "x", "instance": "b", "k": "1"}), 1.0),
               Sample(labels_of({NAME: "y", "instance": "b", "k": "1", "j": "1"}), 2.0),
               Sample(labels_of({NAME: "y", "instance": "b", "k": "1", "j": "2"}), 3.0)]
    store.append_scrape(T0, samples)
    queries = [f'x{{instance="{v}"}} + on (k) y{{instance="{v}"}}' for v in ("a", "b")]
    answers = dict(evaluate_many([parse(q) for q in queries], store, T0))
    assert answers[0] == [Sample((("k", "1"),), 3.0)]
    assert isinstance(answers[1], PromQLError) and "many-to-many" in str(answers[1])


@pytest.mark.parametrize("seed", range(20))
def test_queries_of_the_whole_fleet_share_their_common_subtrees_exactly(seed: int) -> None:
    """split_by queries (no instance matcher) are evaluated alone, subtrees shared by the batch."""
    rng = random.Random(1000 + seed)
    store = random_store(rng)
    queries = [vector(rng, rng.randrange(1, 4)).replace('instance="{V}"', 'job!="zz"') for _ in range(8)]
    queries += queries[:3]  # the same query twice, as two rules may ask
    now = T0 + 15 * 7
    answers = dict(evaluate_many([parse(q) for q in queries], store, now))
    for i, query in enumerate(queries):
        assert same(answers[i], alone(query, store, now)), query


LONG = ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080", "error-model"]


@pytest.mark.parametrize("seed", range(60))
def test_candidates_from_the_skeleton_equal_those_from_each_tree(seed: int) -> None:
    """The fast path (`_candidates` of a tree built from a skeleton, keyed by the skeleton)
    against the reference (`_analyse` of the tree itself): same labels, values and template
    objects, on random templates whose values are long enough to become placeholders, some
    queries with a value repeated in another matcher (equal or not to L's)."""
    from watchdog.promql.grouped import _analyse
    from watchdog.promql.parser import skeleton_origin

    rng = random.Random(seed)
    templates = [vector(rng, rng.randrange(1, 4)) for _ in range(4)]
    templates += ['up{instance="{V}"} + other{instance="{W}"}', 'up{instance="{V}", job="{W}"}',
                  'sum(rate(req{instance="{V}",status="error"}[1m])) / sum(rate(req{instance="{V}"}[1m]))',
                  'up{instance="{V}", job=~"{W}"} / up{instance="{V}"}']
    taken = 0
    for template in templates:
        for v in LONG:
            for w in (v, LONG[0], "short", ""):
                query = template.replace("{V}", v).replace("{W}", w)
                expr = parse(query)
                reference = _analyse(expr)
                taken += skeleton_origin(expr) is not None
                got = _candidates(expr)
                assert skeleton_origin(expr) is None  # forgotten once analysed: _by_tree keeps the answer
                assert _candidates(expr) == got
                assert len(got) == len(reference), query
                for (label, template_got, value), (label_ref, template_ref, value_ref) in zip(got, reference):
                    assert (label, value) == (label_ref, value_ref), query
                    assert shape_of(template_got) is template_ref, query  # the interned object
    assert taken > 0


@pytest.mark.parametrize("make", [parse, parse_kept])
@pytest.mark.parametrize("query", [
    'sum(req{instance="{V}"})',
    'sum(rate(req{instance="{V}"}[1m])) / sum(rate(req{instance="{V}"}[1m]))',
    'req{instance="{V}"} > 0',
])
def test_a_series_carrying_the_hidden_label_name_does_not_change_any_answer(query: str, make) -> None:  # type: ignore[no-untyped-def]
    """A scraped page can name a label anything (`{"\\x00group"="b"}` parses): a series with a label
    named like the hidden one must not split, join or move series between parts."""
    store = SeriesStore()
    for k in range(3):
        store.append_scrape(T0 + 15 * k, [
            Sample(labels_of({NAME: "req", "instance": "a", "job": "x"}), 1.0 + k),
            Sample(labels_of({NAME: "req", "instance": "z", "\x00group": "b", "job": "y"}), 10.0 * (k + 1)),
            Sample(labels_of({NAME: "req", "instance": "z", "job": "x"}), 5.0 * (k + 1)),
            Sample(labels_of({NAME: "req", "instance": "b", "": "a", "job": "x"}), 7.0 * (k + 1)),
            Sample(labels_of({NAME: "req", "instance": "zz:12345", "\x00group": "ab:12345", "job": "y"}), 3.0 * k),
            Sample(labels_of({NAME: "req", "instance": "ab:12345", "job": "x"}), 2.0 * k),
        ])
    queries = [query.replace("{V}", v) for v in ("a", "b", "z", "ab:12345", "zz:12345")]
    exprs = [make(q) for q in queries]
    assert make is parse or isinstance(exprs[-1], Templated)
    answers = dict(evaluate_many(exprs, store, T0 + 30))
    for i, q in enumerate(queries):
        assert same(answers[i], alone(q, store, T0 + 30)), q


def test_a_template_no_other_query_shares_is_not_filled_and_answers_stay_the_same() -> None:
    """A fleet's `increase(x{instance="…",status="error"}[1m])` is a candidate for grouping
    by `status` too, with a template that keeps each query's instance: no other query shares
    it, so it is not filled (a thousand interned trees on the first tick, before); grouped by
    `instance`, the batch gives what each query alone gives."""
    from watchdog.promql import grouped

    store = SeriesStore()
    instances = [f"10.0.{i // 200}.{i % 200}:8080" for i in range(300)]
    for t in (0.0, 30.0, 60.0):
        store.append_scrape(t, [Sample(labels_of({NAME: "req", "instance": instance, "status": status}), t * (n + 1))
                                for n, instance in enumerate(instances) for status in ("ok", "error")])
    queries = [f'increase(req{{instance="{i}",status="error"}}[1m])' for i in instances]
    kept = [parse_kept(q) for q in queries]
    interned = len(grouped._interned)
    answers = dict(evaluate_many(kept, store, 60.0))
    assert len(grouped._interned) - interned <= 10  # the templates of the skeleton, not one per query
    by_status = [c for c in grouped._candidates(kept[0]) if c[0] == "status"]
    assert by_status and isinstance(by_status[0][1], grouped._Pending) and by_status[0][1].shape is None
    for i, query in enumerate(queries):
        assert same(answers[i], alone(query, store, 60.0)), query


def test_queries_of_one_template_are_one_group_whatever_their_values_lengths(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A template that keeps a placeholder (`status="error"`, grouped by instance) is one
    group for all the rule's queries, though their instance literals differ in length (and
    so their skeletons): ten groups for ten templates, not one per skeleton."""
    from watchdog.promql import grouped

    templates = ['sum(rate(req{instance="{V}",status="error"}[1m])) / sum(rate(req{instance="{V}"}[1m]))',
                 'increase(req{instance="{V}",status="error"}[1m])', 'up{instance="{V}"}']
    instances = [f"10.0.{i // 100}.{i}:80" for i in range(300)]  # 10.0.0.0:80 … 10.0.2.299:80: three lengths
    kept = [parse_kept(t.replace("{V}", i)) for i in instances for t in templates]
    groups: list[int] = []
    real = grouped._evaluate_group

    def counted(first, shape, label, members, store, now, memo):  # type: ignore[no-untyped-def]
        groups.append(len(members))
        return real(first, shape, label, members, store, now, memo)

    monkeypatch.setattr(grouped, "_evaluate_group", counted)
    store = SeriesStore()
    store.append_scrape(60.0, [Sample(labels_of({NAME: "up", "instance": i}), 1.0) for i in instances])
    answers = dict(evaluate_many(kept, store, 60.0))
    assert sorted(groups) == [300, 300, 300]
    assert len(answers) == len(kept)
