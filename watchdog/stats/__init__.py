"""Statistics behind statistical and drift rules: pure functions over numbers, no I/O.

    proportion_test        error rate vs baseline: pooled z-test, or Fisher/Boschloo/Barnard (scipy)
    mann_whitney_samples   latency shift from raw samples (scipy)
    mann_whitney_buckets   latency shift from Prometheus histograms (pure Python, grouped data)
    sprt_start/sprt_update sequential test of an error rate: breach / ok / inconclusive over time
    psi, psi_buckets       population stability index over classes or histogram buckets
    ks_buckets, ks_samples largest CDF gap over histogram edges, or on raw samples (scipy)
    align_buckets, histogram_delta, counter_delta, ...  histogram plumbing

Every test returns a `StatResult`; `verdict` is "breach", "ok" or "inconclusive" (too little
data: with a reason, never an exception). NaN, negative or inconsistent counts raise ValueError
saying what to fix. Importing this package never imports scipy; the functions that need it
raise ImportError naming `pip install 'model-watchdog[stats]'`. See docs/statistics.md.
"""

from watchdog.stats._scipy import scipy_available
from watchdog.stats.buckets import (
    align_buckets,
    bucket_counts,
    counter_delta,
    cumulative_at,
    cumulative_buckets,
    histogram_delta,
)
from watchdog.stats.drift import ks_buckets, ks_samples, psi, psi_buckets
from watchdog.stats.proportion import newcombe_interval, proportion_test
from watchdog.stats.rank import mann_whitney_buckets, mann_whitney_samples
from watchdog.stats.result import Counts, Decision, StatResult
from watchdog.stats.sequential import SprtState, sprt_result, sprt_start, sprt_update

__all__ = [
    "Counts",
    "Decision",
    "SprtState",
    "StatResult",
    "align_buckets",
    "bucket_counts",
    "counter_delta",
    "cumulative_at",
    "cumulative_buckets",
    "histogram_delta",
    "ks_buckets",
    "ks_samples",
    "mann_whitney_buckets",
    "mann_whitney_samples",
    "newcombe_interval",
    "proportion_test",
    "psi",
    "psi_buckets",
    "scipy_available",
    "sprt_result",
    "sprt_start",
    "sprt_update",
]
