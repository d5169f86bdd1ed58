"""Histogram plumbing: validation, per-bucket counts, interpolation, alignment, scrape deltas."""

from __future__ import annotations

import math

import pytest

from watchdog.stats import (
    align_buckets,
    bucket_counts,
    counter_delta,
    cumulative_at,
    cumulative_buckets,
    histogram_delta,
)

H = {"0.1": 10, "0.5": 30, "1": 40, "+Inf": 50}


def test_cumulative_buckets_parse_le_labels_and_sort():
    assert cumulative_buckets({"+Inf": 5, "1": 4, 0.5: 1}) == {0.5: 1.0, 1.0: 4.0, math.inf: 5.0}


@pytest.mark.parametrize("buckets,message", [
    ({0.1: 3, 0.5: 5}, "no '\\+Inf' bucket"),
    ({0.1: 3, 0.5: 2, "+Inf": 9}, "le=0.5 .* below .* le=0.1"),
    ({0.1: float("nan"), "+Inf": 9}, "NaN"),
    ({0.1: -1, "+Inf": 9}, "≥ 0"),
    ({"fast": 1, "+Inf": 9}, "'fast' is not a number"),
])
def test_bad_buckets_raise_with_the_fix(buckets, message):
    with pytest.raises(ValueError, match=message):
        cumulative_buckets(buckets, "latency")


def test_bucket_counts_are_per_bucket():
    assert list(bucket_counts(H).values()) == [10, 20, 10, 10]


def test_cumulative_at_is_exact_at_edges_and_linear_inside():
    assert cumulative_at(H, 0.5) == 30
    assert cumulative_at(H, 0.3) == pytest.approx(20)  # halfway between 0.1 (10) and 0.5 (30)
    assert cumulative_at(H, 0.05) == pytest.approx(5)  # first bucket assumed to start at 0
    assert cumulative_at(H, 7.0) == 40  # +Inf observations assumed above every finite edge
    assert cumulative_at(H, -1.0) == 0
    assert cumulative_at({-1.0: 4, "+Inf": 6}, -2.0) == 0


def test_align_common_keeps_shared_edges_exactly():
    other = {"0.5": 12, "2": 20, "+Inf": 25}
    a, b = align_buckets(H, other)
    assert a == {0.5: 30, math.inf: 50} and b == {0.5: 12, math.inf: 25}


def test_align_union_interpolates_foreign_edges():
    other = {"0.3": 12, "+Inf": 25}
    a, b = align_buckets(H, other, edges="union")
    assert list(a) == [0.1, 0.3, 0.5, 1.0, math.inf]
    assert a[0.3] == pytest.approx(20) and b[0.1] == pytest.approx(4) and b[0.5] == 12
    with pytest.raises(ValueError, match="edges"):
        align_buckets(H, other, edges="all")  # type: ignore[arg-type]


def test_counter_delta_handles_resets():
    assert counter_delta(100, 130) == 30
    assert counter_delta(100, 7) == 7  # restarted: counted from 0


def test_histogram_delta_between_scrapes():
    later = {"0.1": 15, "0.5": 38, "1": 52, "+Inf": 70}
    assert histogram_delta(H, later) == {0.1: 5, 0.5: 8, 1.0: 12, math.inf: 20}
    restarted = {"0.1": 2, "0.5": 31, "1": 41, "+Inf": 51}  # one bucket went down: whole reset
    assert histogram_delta(H, restarted) == cumulative_buckets(restarted)
    new_layout = {"0.2": 1, "+Inf": 3}
    assert histogram_delta(H, new_layout) == cumulative_buckets(new_layout)
