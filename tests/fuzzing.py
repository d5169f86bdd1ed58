"""Hypothesis profiles: how hard the property tests search, chosen by environment.

- `dev` (default outside CI): Hypothesis' randomised search at each test's own example count.
- `ci` (selected when CI=true): `derandomize=True`, so every CI run tries the same examples
  and a test either catches a bug every time or never (no 2-in-4 flakes), with twice the
  examples; no example database.
- `nightly` (HYPOTHESIS_PROFILE=nightly): randomised again, twenty times the examples, for
  long runs that look for new counter-examples (see docs/testing.md).

HYPOTHESIS_PROFILE names a profile explicitly and wins over CI.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

from tests.needs import in_ci

SCALE = {"dev": 1, "ci": 2, "nightly": 20}

# Hypothesis switches to its own "ci" profile when it detects CI; ours are built on its
# plain defaults so nothing is inherited from whichever profile happened to be active.
_BASE = settings.get_profile("default")
settings.register_profile("dev", parent=_BASE, deadline=None, derandomize=False)
settings.register_profile("ci", parent=_BASE, deadline=None, derandomize=True, database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("nightly", parent=_BASE, deadline=None, derandomize=False, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])


def profile_name() -> str:
    return os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if in_ci() else "dev")


def examples(n: int) -> int:
    """`n` examples scaled for the active profile: `@settings(max_examples=examples(300))`."""
    return n * SCALE.get(profile_name(), 1)


settings.load_profile(profile_name())
