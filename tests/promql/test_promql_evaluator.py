"""Evaluating rules against scraped samples, with expectations worked out by hand from
Prometheus' own algorithms (promql/functions.go `extrapolatedRate`, promql/quantile.go
`BucketQuantile`, promql/engine.go binary operators)."""

from __future__ import annotations

import math

import pytest

from watchdog.errors import PromQLError
from watchdog.promql import SeriesStore, evaluate, parse
from watchdog.promql.ast import Binary, MatrixSelector, NumberLiteral, VectorSelector
from watchdog.samples import NAME, Labels, Sample, labels_of

NOW = 1_700_000_060.0


def lbl(name: str | None = None, **labels: str) -> Labels:
    return labels_of({**({NAME: name} if name else {}), **labels})


History = dict[Labels, list[tuple[float, float]]]


def store_with(history: History) -> SeriesStore:
    """Scrapes at the given offsets from NOW (seconds, <= 0), one scrape per distinct time."""
    store = SeriesStore()
    times = sorted({t for points in history.values() for t, _ in points})
    for t in times:
        scrape = [Sample(labels, v) for labels, points in history.items() for tt, v in points if tt == t]
        store.append_scrape(NOW + t, scrape)
    return store


def run(store: SeriesStore, query: str) -> dict[Labels, float]:
    return {s.labels: s.value for s in evaluate(parse(query), store, NOW)}


def one(store: SeriesStore, query: str) -> float:
    (value,) = run(store, query).values()
    return value


# --- rate and increase ----------------------------------------------------------------------


def test_rate_over_a_window_with_a_counter_reset() -> None:
    # The model server restarted between -30s and -15s: its counter fell from 160 to 20.
    store = store_with({lbl("predictions_total"): [(-60, 100), (-45, 130), (-30, 160), (-15, 20), (0, 50)]})
    # Window (now-60s, now]: the point at -60 is outside (left-open), so 130, 160, 20, 50.
    #   raw delta      = 50 - 130              = -80
    #   reset 160 → 20 : add the value before   = -80 + 160 = 80
    #   sampled        = 45 s over 3 steps     → average step 15 s, threshold 1.1 × 15 = 16.5 s
    #   to window start 15 s < 16.5 → extrapolate all the way: 15 s
    #   zero point: 45 × 130 / 80 = 73.1 s > 15 s, no clamp;  to window end: 0 s
    #   increase = 80 × (45 + 15 + 0) / 45 = 106.67;   rate = 106.67 / 60 = 1.7778 /s
    assert one(store, "increase(predictions_total[1m])") == pytest.approx(80 * 60 / 45)
    assert one(store, "rate(predictions_total[1m])") == pytest.approx(80 / 45)


def test_rate_extrapolates_only_half_a_step_where_a_series_starts_inside_the_window() -> None:
    # A new replica appears at -30 s; its counter is 10, 20, 30 at -30, -15, 0.
    store = store_with({lbl("predictions_total"): [(-30, 10), (-15, 20), (0, 30)]})
    #   delta 20 over 30 s, average step 15 s, threshold 16.5 s
    #   to window start = 30 s >= 16.5 → assume the series began half a step earlier: 7.5 s
    #   zero point: 30 × 10 / 20 = 15 s > 7.5 s, no clamp;  to end: 0 s
    #   increase = 20 × (30 + 7.5) / 30 = 25;   rate = 25 / 60
    assert one(store, "increase(predictions_total[1m])") == pytest.approx(25.0)
    assert one(store, "rate(predictions_total[1m])") == pytest.approx(25 / 60)


def test_rate_extrapolates_half_a_step_past_a_series_that_ended() -> None:
    # The last scrape that saw the counter was 30 s ago (e.g. the series was dropped).
    store = store_with({lbl("errors_total"): [(-50, 100), (-40, 110), (-30, 120)]})
    #   delta 20 over 20 s, step 10 s, threshold 11 s
    #   to start = 10 s < 11 → 10 s (zero point 20 × 100/20 = 100 s, no clamp)
    #   to end   = 30 s >= 11 → half a step: 5 s
    #   increase = 20 × (20 + 10 + 5) / 20 = 35
    assert one(store, "increase(errors_total[1m])") == pytest.approx(35.0)


def test_increase_never_extrapolates_a_counter_below_zero() -> None:
    # Counter 1, 11, 21, 31 at -45 .. 0: it started from zero shortly before -45 s.
    store = store_with({lbl("jobs_total"): [(-45, 1), (-30, 11), (-15, 21), (0, 31)]})
    #   delta 30 over 45 s, step 15 s; to start 15 s would be allowed (< 16.5 s) but the
    #   trend line hits zero 45 × 1/30 = 1.5 s before the first sample, so only 1.5 s.
    #   increase = 30 × (45 + 1.5) / 45 = 31 — exactly the counter's value, never more.
    assert one(store, "increase(jobs_total[1m])") == pytest.approx(31.0)


def test_rate_needs_two_points_in_the_window() -> None:
    store = store_with({lbl("x_total", pod="old"): [(-120, 5), (-10, 7)], lbl("x_total", pod="new"): [(-10, 1)]})
    assert run(store, "rate(x_total[1m])") == {}  # each series has one point in (now-60, now]
    assert set(run(store, "rate(x_total[5m])")) == {lbl(pod="old")}


def test_error_ratio_of_two_pods() -> None:
    # Requests counted by status on two pods, scraped every 15 s.
    #   pod a: error +3 per 15 s, ok +27 per 15 s;  pod b: error flat at 5, ok +30 per 15 s
    history: History = {}
    for pod, err_step, ok_step in (("a", 3, 27), ("b", 0, 30)):
        times = range(-60, 1, 15)
        history[lbl("requests_total", pod=pod, status="error")] = [(t, 5 + err_step * (t + 60) / 15) for t in times]
        history[lbl("requests_total", pod=pod, status="ok")] = [(t, 1000 + ok_step * (t + 60) / 15) for t in times]
    store = store_with(history)
    # Every series: 4 points in the window, step 15 s, starts 15 s after the window start
    # (< 16.5 s → extrapolate), starts far above zero → rate = (increase over 45 s) × 60/45 / 60,
    # i.e. exactly the per-second slope:
    #   errors: a 3/15 = 0.2/s, b 0/s → 0.2/s;   all: 0.2 + 27/15 + 0 + 30/15 = 0.2 + 1.8 + 2 = 4.0/s
    #   ratio = 0.2 / 4.0 = 0.05
    ratio = one(store, 'sum(rate(requests_total{status="error"}[1m])) / sum(rate(requests_total[1m]))')
    assert ratio == pytest.approx(0.05)
    per_pod = run(
        store, 'sum by (pod) (rate(requests_total{status="error"}[1m])) / sum by (pod) (rate(requests_total[1m]))'
    )
    assert per_pod == pytest.approx({lbl(pod="a"): 0.2 / 2.0, lbl(pod="b"): 0.0})


# --- histogram_quantile -----------------------------------------------------------------------

BUCKET_DELTAS = {"0.05": 10, "0.1": 10, "0.25": 10, "0.5": 90, "1.0": 90, "+Inf": 100}


def latency_store() -> SeriesStore:
    # Two pods share the observations 40/60; bucket counters rise linearly from 0 at -45 s.
    history: History = {}
    for pod, share in (("a", 0.4), ("b", 0.6)):
        for le, delta in BUCKET_DELTAS.items():
            points = [(t, delta * share * (t + 45) / 45) for t in (-45.0, -30.0, -15.0, 0.0)]
            history[lbl("latency_seconds_bucket", le=le, pod=pod)] = points
    return store_with(history)


@pytest.mark.parametrize(("q", "expected"), [(0.5, 0.375), (0.9, 0.5), (0.99, 1.0)])
def test_histogram_quantile_worked_example(q: float, expected: float) -> None:
    # First points are 0, so rate() = delta / 60 for every bucket (no extrapolation), and
    # sum by (le) adds the pods: cumulative counts ∝ 10, 10, 10, 90, 90, 100.
    #   p50: rank 50 → first bucket with count >= 50 is le=0.5 (90); it starts at 0.25 with
    #        10 below it: 0.25 + (0.5 - 0.25) × (50 - 10) / (90 - 10) = 0.375
    #   p90: rank 90 → le=0.5 again: 0.25 + 0.25 × (90 - 10) / 80 = 0.5
    #   p99: rank 99 → no finite bucket reaches 99, it is in +Inf → the highest finite
    #        bound below it: 1.0
    query = f"histogram_quantile({q}, sum by (le) (rate(latency_seconds_bucket[1m])))"
    assert run(latency_store(), query) == {(): pytest.approx(expected)}


def test_sum_by_le_keeps_the_bucket_label() -> None:
    result = run(latency_store(), "sum by (le) (rate(latency_seconds_bucket[1m]))")
    assert result[lbl(le="+Inf")] == pytest.approx(100 / 60)
    assert len(result) == 6


def test_histogram_quantile_per_pod_keeps_other_labels() -> None:
    result = run(latency_store(), "histogram_quantile(0.5, rate(latency_seconds_bucket[1m]))")
    assert result == {lbl(pod="a"): pytest.approx(0.375), lbl(pod="b"): pytest.approx(0.375)}


def bucket_gauges(counts: dict[str, float], **extra: str) -> SeriesStore:
    return store_with({lbl("h_bucket", le=le, **extra): [(0, c)] for le, c in counts.items()})


def test_histogram_quantile_edge_cases() -> None:
    plain = bucket_gauges({"0.1": 10, "0.2": 15, "+Inf": 20})
    assert one(plain, "histogram_quantile(-0.5, h_bucket)") == -math.inf
    assert one(plain, "histogram_quantile(1.5, h_bucket)") == math.inf
    assert math.isnan(one(plain, "histogram_quantile(NaN, h_bucket)"))
    # rank 5 in the first bucket, whose lower bound is taken as 0: 0.1 × 5/10
    assert one(plain, "histogram_quantile(0.25, h_bucket)") == pytest.approx(0.05)
    assert math.isnan(one(bucket_gauges({"0.1": 10, "0.2": 15}), "histogram_quantile(0.5, h_bucket)"))  # no +Inf
    assert math.isnan(one(bucket_gauges({"0.1": 0, "+Inf": 0}), "histogram_quantile(0.5, h_bucket)"))  # empty


def test_histogram_quantile_repairs_non_monotonic_buckets() -> None:
    # le=0.2 (8) is below le=0.1 (10) — e.g. buckets scraped at slightly different times.
    # Prometheus takes the running maximum: 10, 10, 20. p50: rank 10 → le=0.1 → 0.1 × 10/10.
    # (Without the repair the binary search would land in +Inf and answer 0.2.)
    store = bucket_gauges({"0.1": 10, "0.2": 8, "+Inf": 20})
    assert one(store, "histogram_quantile(0.5, h_bucket)") == pytest.approx(0.1)


def test_histogram_quantile_with_a_non_positive_first_bucket() -> None:
    store = bucket_gauges({"0": 4, "1": 8, "+Inf": 8})
    # rank 2 falls in le=0: no lower bound to interpolate from, so the answer is 0 itself.
    assert one(store, "histogram_quantile(0.25, h_bucket)") == 0.0
    # rank 6 falls in le=1 between 0 and 1 with 4 below: 0 + 1 × (6 - 4) / (8 - 4) = 0.5
    assert one(store, "histogram_quantile(0.75, h_bucket)") == pytest.approx(0.5)



def test_histogram_quantile_treats_float_noise_between_buckets_as_equal() -> None:
    # Summed rates give le=2 the count 0.1 + 0.2 = 0.30000000000000004 where le=1 has 0.3: the
    # same observations, apart from float noise. Prometheus (ensureMonotonicAndIgnoreSmallDeltas,
    # tolerance 1e-12) makes them equal, so p100 stays in le=1: 0 + 1 × 0.3/0.3 = 1.
    # Without the repair rank 0.30000000000000004 only fits le=2 and the answer is 2.
    noisy = 0.1 + 0.2
    assert noisy != 0.3
    store = bucket_gauges({"1": 0.3, "2": noisy, "+Inf": noisy})
    assert one(store, "histogram_quantile(1, h_bucket)") == 1.0


def test_histogram_quantile_adds_up_buckets_with_the_same_bound() -> None:
    # le="1" and le="1.0" are one bound written twice (e.g. two client library versions):
    # Prometheus coalesces them by adding counts, giving 5, 10, 10. p25: rank 2.5 → le=1 →
    # 0 + 1 × 2.5/5 = 0.5. Kept apart (2, 3, 10, 10) the rank would land in the second le=1
    # bucket and interpolate from 1 upwards: 1.
    store = bucket_gauges({"1": 2, "1.0": 3, "2": 10, "+Inf": 10})
    assert one(store, "histogram_quantile(0.25, h_bucket)") == pytest.approx(0.5)


def test_histogram_quantile_never_mixes_the_buckets_of_two_metrics() -> None:
    # Prometheus groups by every label but `le` (the name included) and drops the name
    # afterwards: two histograms with equal labels clash instead of being added together.
    store = store_with({**{lbl("a_bucket", le=le): [(0, c)] for le, c in {"1": 1, "+Inf": 2}.items()},
                        **{lbl("b_bucket", le=le): [(0, c)] for le, c in {"1": 5, "+Inf": 8}.items()}})
    with pytest.raises(PromQLError, match="same labelset"):
        run(store, 'histogram_quantile(0.5, {__name__=~"a_bucket|b_bucket"})')
    assert run(store, "histogram_quantile(0.5, b_bucket)") == {(): pytest.approx(0.8)}


def test_histogram_quantile_zero_in_an_empty_first_bucket_is_nan_not_a_crash() -> None:
    # q=0 → rank 0 lands in le=0.5, which holds no observations: Go's 0/0 is NaN.
    assert math.isnan(one(bucket_gauges({"0.5": 0, "1": 3, "+Inf": 8}), "histogram_quantile(0, h_bucket)"))

# --- operators --------------------------------------------------------------------------------


def two_pods() -> SeriesStore:
    return store_with(
        {
            lbl("errors_total", pod="a"): [(0, 2)],
            lbl("errors_total", pod="b"): [(0, 0)],
            lbl("requests_total", pod="a", status="ok"): [(0, 18)],
            lbl("requests_total", pod="a", status="error"): [(0, 2)],
            lbl("requests_total", pod="b", status="ok"): [(0, 10)],
            lbl("requests_total", pod="c", status="ok"): [(0, 5)],
            lbl("queue_depth", pod="a"): [(0, 3)],
            lbl("queue_depth", pod="b"): [(0, 12)],
        }
    )


def test_one_to_one_matching_ignores_the_metric_name() -> None:
    result = run(two_pods(), 'errors_total / requests_total{status="ok"}')
    assert result == {}  # label sets differ by `status`
    result = run(two_pods(), 'errors_total / ignoring(status) requests_total{status="ok"}')
    assert result == {lbl(pod="a"): pytest.approx(2 / 18), lbl(pod="b"): 0.0}  # pod c has no partner
    result = run(two_pods(), "errors_total / on(pod) sum by (pod) (requests_total)")
    assert result == {lbl(pod="a"): pytest.approx(0.1), lbl(pod="b"): 0.0}


def test_duplicates_on_the_one_side_are_an_error_not_a_guess() -> None:
    with pytest.raises(PromQLError, match="many-to-many matching not allowed") as info:
        run(two_pods(), "errors_total / ignoring(status) requests_total")
    assert info.value.position == len("errors_total ")
    with pytest.raises(PromQLError, match="many-to-one matching must be explicit"):
        run(two_pods(), "requests_total / ignoring(status) errors_total")


def test_comparisons_filter_and_keep_the_name() -> None:
    store = two_pods()
    assert run(store, "queue_depth > 5") == {lbl("queue_depth", pod="b"): 12.0}
    # With the scalar on the left the vector's value is still the result.
    assert run(store, "5 < queue_depth") == {lbl("queue_depth", pod="b"): 12.0}
    assert run(store, "queue_depth > bool 5") == {lbl(pod="a"): 0.0, lbl(pod="b"): 1.0}
    assert run(store, "queue_depth > errors_total") == {
        lbl("queue_depth", pod="a"): 3.0,
        lbl("queue_depth", pod="b"): 12.0,
    }
    assert run(store, "errors_total >= bool queue_depth") == {lbl(pod="a"): 0.0, lbl(pod="b"): 0.0}


def test_arithmetic_drops_the_name() -> None:
    assert run(two_pods(), "queue_depth * 2") == {lbl(pod="a"): 6.0, lbl(pod="b"): 24.0}
    assert run(two_pods(), "-queue_depth") == {lbl(pod="a"): -3.0, lbl(pod="b"): -12.0}
    assert set(run(two_pods(), "+queue_depth")) == {lbl("queue_depth", pod="a"), lbl("queue_depth", pod="b")}


def test_set_operators() -> None:
    store = two_pods()
    assert set(run(store, "queue_depth and errors_total > 0")) == {lbl("queue_depth", pod="a")}
    assert set(run(store, "queue_depth unless errors_total > 0")) == {lbl("queue_depth", pod="b")}
    assert set(run(store, "errors_total > 0 or queue_depth")) == {
        lbl("errors_total", pod="a"),
        lbl("queue_depth", pod="b"),
    }
    assert set(run(store, 'requests_total and on(pod) errors_total > 0')) == {
        lbl("requests_total", pod="a", status="ok"),
        lbl("requests_total", pod="a", status="error"),
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("1 / 0", math.inf),
        ("-1 / 0", -math.inf),
        ("0 / 0", math.nan),
        ("5 % 0", math.nan),
        ("-7 % 3", -1.0),  # Go's math.Mod keeps the dividend's sign (Python's % would say 2)
        ("2 ^ 10000", math.inf),
        ("(-8) ^ 0.5", math.nan),
        ("0 ^ -1", math.inf),
        ("2 ^ 3 ^ 2", 512.0),
        ("-2 ^ 2", -4.0),
        ("1 + 2 * 3 % 4", 3.0),
        ("(1 + 2) * 3", 9.0),
        ("1 > bool 2", 0.0),
        ("NaN == bool NaN", 0.0),
        ("Inf - Inf", math.nan),
    ],
)
def test_scalar_arithmetic_follows_ieee_like_prometheus(query: str, expected: float) -> None:
    (result,) = evaluate(parse(query), SeriesStore(), NOW)
    assert result.labels == ()
    assert result.value == expected or (math.isnan(expected) and math.isnan(result.value))


def test_vector_division_by_zero() -> None:
    store = store_with({lbl("x", pod="a"): [(0, 3)], lbl("x", pod="b"): [(0, -3)], lbl("x", pod="c"): [(0, 0)]})
    result = run(store, "x / 0")
    assert result[lbl(pod="a")] == math.inf and result[lbl(pod="b")] == -math.inf and math.isnan(result[lbl(pod="c")])


# --- aggregations -----------------------------------------------------------------------------


def test_aggregations_by_and_without() -> None:
    store = two_pods()
    assert run(store, "sum(requests_total)") == {(): 35.0}
    assert run(store, "sum by (pod) (requests_total)") == {lbl(pod="a"): 20.0, lbl(pod="b"): 10.0, lbl(pod="c"): 5.0}
    assert run(store, "count without (pod) (requests_total)") == {lbl(status="ok"): 3.0, lbl(status="error"): 1.0}
    assert run(store, "avg(queue_depth)") == {(): 7.5}
    assert run(store, "max by (status) (requests_total)") == {lbl(status="ok"): 18.0, lbl(status="error"): 2.0}
    assert run(store, "min(requests_total) by (status)") == {lbl(status="ok"): 5.0, lbl(status="error"): 2.0}


def test_max_skips_nan_unless_everything_is_nan() -> None:
    store = store_with({lbl("score", m="a"): [(0, math.nan)], lbl("score", m="b"): [(0, 0.7)]})
    assert run(store, "max(score)") == {(): 0.7}
    assert run(store, "min(score)") == {(): 0.7}
    assert math.isnan(one(store, 'max(score{m="a"})'))


# --- functions --------------------------------------------------------------------------------


def test_over_time_functions() -> None:
    # A gauge scraped every 10 s: in the window (now-1m, now] we see 4, 8, 6, 2, 5, 5.
    store = store_with({lbl("gpu_util"): list(zip(range(-60, 1, 10), [99, 4, 8, 6, 2, 5, 5]))})
    assert one(store, "avg_over_time(gpu_util[1m])") == pytest.approx(30 / 6)
    assert one(store, "sum_over_time(gpu_util[1m])") == 30.0
    assert one(store, "max_over_time(gpu_util[1m])") == 8.0
    assert one(store, "min_over_time(gpu_util[1m])") == 2.0
    assert one(store, "count_over_time(gpu_util[1m])") == 6.0
    assert set(run(store, "avg_over_time(gpu_util[1m])")) == {()}  # the name is dropped


def test_functions_drop_the_name_and_refuse_clashing_series() -> None:
    store = store_with({lbl("a_total", pod="x"): [(-30, 1), (0, 2)], lbl("b_total", pod="x"): [(-30, 1), (0, 2)]})
    with pytest.raises(PromQLError, match="same labelset"):
        run(store, 'rate({__name__=~"a_total|b_total"}[1m])')
    with pytest.raises(PromQLError, match="same labelset"):
        run(store, '{__name__=~"a_total|b_total"} * 2')


def test_abs_and_clamp() -> None:
    store = store_with(
        {lbl("drift", f="a"): [(0, -0.4)], lbl("drift", f="b"): [(0, 2.5)], lbl("drift", f="c"): [(0, math.nan)]}
    )
    assert run(store, 'abs(drift{f!="c"})') == {lbl(f="a"): 0.4, lbl(f="b"): 2.5}
    assert run(store, 'clamp_max(drift{f!="c"}, 1)') == {lbl(f="a"): -0.4, lbl(f="b"): 1.0}
    assert run(store, 'clamp_min(drift{f!="c"}, 0)') == {lbl(f="a"): 0.0, lbl(f="b"): 2.5}
    assert math.isnan(run(store, "clamp_min(drift, 0)")[lbl(f="c")])


def test_scalar_and_vector() -> None:
    store = two_pods()
    assert one(store, 'scalar(queue_depth{pod="a"})') == 3.0
    assert math.isnan(one(store, "scalar(queue_depth)"))  # two elements → NaN, like Prometheus
    assert run(store, "vector(1) + 1") == {(): 2.0}
    assert run(store, "queue_depth / scalar(sum(queue_depth))") == {lbl(pod="a"): 0.2, lbl(pod="b"): 0.8}


def test_instant_selector_keeps_the_name_and_missing_data_is_empty() -> None:
    store = two_pods()
    assert set(run(store, 'queue_depth{pod="a"}')) == {lbl("queue_depth", pod="a")}
    assert run(store, "no_such_metric") == {}
    assert run(store, "sum(no_such_metric)") == {}


def test_hand_built_trees_are_checked_before_evaluation() -> None:
    bad = Binary("+", MatrixSelector(VectorSelector("x"), 60.0), NumberLiteral(1.0))
    with pytest.raises(PromQLError, match="range vector selector is only allowed"):
        evaluate(bad, SeriesStore(), NOW)
