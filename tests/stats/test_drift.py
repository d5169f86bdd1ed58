"""PSI and KS distance: hand-worked values, scipy on the same inputs, and properties."""

from __future__ import annotations

import json
import math

import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.fuzzing import examples

from watchdog.stats import ks_buckets, ks_samples, psi, psi_buckets
from watchdog.stats._dist import kolmogorov_sf


def test_psi_worked_example():
    # Worked by hand with PSI = Σ (a − e)·ln(a/e), the "system stability index" of Siddiqi (2006),
    # Credit Risk Scorecards (Wiley), whose rule of thumb calls > 0.25 a significant shift:
    #   band   reference e   current a   (a − e)   ln(a/e)     term
    #   low        0.25        0.10       −0.15    −0.916291   0.137444
    #   mid        0.50        0.50        0        0          0
    #   high       0.25        0.40       +0.15    +0.470004   0.070501
    #   PSI = 0.207944 — above the 0.2 threshold.
    result = psi({"low": 100, "mid": 500, "high": 400}, {"low": 250, "mid": 500, "high": 250})
    assert result.statistic == pytest.approx(0.207944, abs=1e-6)
    assert result.verdict == "breach" and "bin low" in result.reason
    assert [b["bin"] for b in result.details["bins"]] == ["low", "mid", "high"]


def test_psi_is_the_jeffreys_divergence_computed_by_scipy():
    # PSI = KL(a‖e) + KL(e‖a) (Yurdakul 2018, "Statistical Properties of Population Stability Index").
    current, reference = [120, 340, 260, 180, 100], [200, 300, 250, 150, 100]
    a = [c / sum(current) for c in current]
    e = [r / sum(reference) for r in reference]
    expected = scipy.stats.entropy(a, e) + scipy.stats.entropy(e, a)
    got = psi(dict(enumerate(current)), dict(enumerate(reference)))
    assert got.statistic == pytest.approx(expected, rel=1e-12)


def test_psi_floors_empty_bins_at_epsilon():
    # Bin "b" is empty now: its share is taken as 1e-4, so its term is
    # (1e-4 − 0.5)·ln(1e-4/0.5) = 4.258288...; bin "a": (1 − 0.5)·ln(1/0.5) = 0.346574
    result = psi({"a": 200}, {"a": 100, "b": 100})
    expected = (1e-4 - 0.5) * math.log(1e-4 / 0.5) + (1 - 0.5) * math.log(1 / 0.5)
    assert result.statistic == pytest.approx(expected)
    assert result.details["epsilon"] == 1e-4
    json.dumps(result.to_dict(), allow_nan=False)


def test_psi_reports_noise_level_and_needs_enough_data():
    result = psi({"x": 60, "y": 60}, {"x": 50, "y": 70})
    assert result.details["expected_if_unchanged"] == pytest.approx(1 / 120 + 1 / 120)
    few = psi({"x": 6, "y": 6}, {"x": 50, "y": 70})
    assert few.verdict == "inconclusive" and "too little data" in few.reason


def test_psi_buckets_on_prometheus_histograms():
    reference = {"0.1": 100, "0.5": 600, "1": 900, "+Inf": 1000}
    assert psi_buckets(reference, reference).statistic == 0.0
    shifted = {"0.1": 20, "0.5": 300, "1": 800, "+Inf": 1000}
    result = psi_buckets(shifted, reference)
    assert result.verdict == "breach" and [b["bin"] for b in result.details["bins"]] == ["0.1", "0.5", "1.0", "+Inf"]
    disjoint = psi_buckets({"0.2": 5, "+Inf": 500}, {"0.3": 5, "+Inf": 500})
    assert disjoint.verdict == "inconclusive" and "union" in disjoint.reason


def test_ks_buckets_largest_gap_and_kolmogorov_p_value():
    reference = {"0.1": 100, "0.5": 600, "1": 900, "+Inf": 1000}
    current = {"0.1": 50, "0.5": 450, "1": 850, "+Inf": 1000}
    result = ks_buckets(current, reference)
    assert result.statistic == pytest.approx(0.15) and result.details["largest_gap_le"] == "0.5"
    assert result.p_value == pytest.approx(scipy.stats.kstwobign.sf(math.sqrt(500) * 0.15), rel=1e-9)
    assert result.verdict == "breach"
    assert ks_buckets(current, reference, threshold=0.2).verdict == "ok"


def test_ks_buckets_equals_ks_2samp_statistic_on_expanded_data():
    edges = [0.1, 0.5, 1.0, 5.0]
    cur, ref = [5, 40, 30, 20, 5], [10, 50, 25, 10, 5]
    expand = lambda counts: [v for v, c in zip([*edges, 50.0], counts) for _ in range(c)]
    cumulative = lambda counts: dict(zip([*edges, "+Inf"], [sum(counts[: i + 1]) for i in range(5)]))
    result = ks_buckets(cumulative(cur), cumulative(ref))
    assert result.statistic == pytest.approx(scipy.stats.ks_2samp(expand(cur), expand(ref)).statistic)


def test_ks_needs_significance_unless_disabled():
    current, reference = {"1": 60, "+Inf": 100}, {"1": 45, "+Inf": 100}  # gap 0.15 on 100 vs 100
    result = ks_buckets(current, reference)
    assert result.verdict == "ok" and "not significant" in result.reason and result.p_value > 0.05
    assert ks_buckets(current, reference, confidence=None).verdict == "breach"


def test_ks_samples_matches_scipy():
    cur = [i / 10 + 0.5 for i in range(60)]
    ref = [i / 10 for i in range(60)]
    result = ks_samples(cur, ref)
    expected = scipy.stats.ks_2samp(cur, ref)
    assert result.statistic == pytest.approx(expected.statistic) and result.p_value == pytest.approx(expected.pvalue)
    assert result.details["current"]["n"] == 60
    assert ks_samples(cur[:5], ref).verdict == "inconclusive"


@pytest.mark.parametrize("x", [0.0, 0.05, 0.3, 0.6, 0.9, 1.1799, 1.18, 1.36, 2.0, 3.5])
def test_kolmogorov_sf_matches_scipy(x):
    assert kolmogorov_sf(x) == pytest.approx(scipy.stats.kstwobign.sf(x), abs=1e-12)


count_vectors = st.lists(st.integers(0, 5000), min_size=2, max_size=12).filter(lambda v: sum(v) >= 100)


@settings(max_examples=examples(100), deadline=None)
@given(a=count_vectors, data=st.data())
def test_psi_is_zero_on_itself_and_never_negative(a, data):
    b = data.draw(st.lists(st.integers(0, 5000), min_size=len(a), max_size=len(a)).filter(lambda v: sum(v) >= 100))
    assert psi(dict(enumerate(a)), dict(enumerate(a))).statistic == 0.0
    assert psi(dict(enumerate(a)), dict(enumerate(b))).statistic >= 0.0


def as_cumulative(counts: list[int]) -> dict[str, int]:
    labels = [str(0.1 * (i + 1)) for i in range(len(counts) - 1)] + ["+Inf"]
    return dict(zip(labels, [sum(counts[: i + 1]) for i in range(len(counts))]))


@settings(max_examples=examples(100), deadline=None)
@given(a=count_vectors, data=st.data())
def test_ks_distance_is_in_unit_interval_and_symmetric(a, data):
    b = data.draw(st.lists(st.integers(0, 5000), min_size=len(a), max_size=len(a)).filter(lambda v: sum(v) >= 100))
    forward = ks_buckets(as_cumulative(a), as_cumulative(b))
    backward = ks_buckets(as_cumulative(b), as_cumulative(a))
    assert 0.0 <= forward.statistic <= 1.0
    assert forward.statistic == pytest.approx(backward.statistic) and forward.p_value == pytest.approx(backward.p_value)
