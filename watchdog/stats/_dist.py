"""The few distribution functions the pure-Python tests need (no scipy)."""

from __future__ import annotations

import math
from statistics import NormalDist

from watchdog.stats.result import Alternative

_STANDARD = NormalDist()


def normal_sf(z: float) -> float:
    """P(Z > z); erfc keeps precision far in the upper tail where 1 - cdf would round to 0."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def normal_quantile(q: float) -> float:
    return _STANDARD.inv_cdf(q)


def p_from_z(z: float, alternative: Alternative) -> float:
    if alternative == "greater":
        return normal_sf(z)
    if alternative == "less":
        return normal_sf(-z)
    return min(1.0, 2.0 * normal_sf(abs(z)))


def kolmogorov_sf(x: float) -> float:
    """P(K > x) for the limiting Kolmogorov distribution (scipy: kstwobign.sf).

    Two series, each used where it converges in a handful of terms.
    """
    if x <= 0:
        return 1.0
    if x < 1.18:
        w = math.pi**2 / (8.0 * x * x)
        cdf = math.sqrt(2.0 * math.pi) / x * sum(math.exp(-(2 * k - 1) ** 2 * w) for k in range(1, 8))
        return min(1.0, max(0.0, 1.0 - cdf))
    terms = ((1.0 if k % 2 else -1.0) * math.exp(-2.0 * k * k * x * x) for k in range(1, 12))
    return min(1.0, 2.0 * math.fsum(terms))
