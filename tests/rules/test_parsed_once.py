"""Rule values that need parsing (baselines, relative/absolute changes, durations) are parsed
when the config loads, never again while the engine ticks."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from typing import Any

from watchdog.config.values import Baseline, Change

from tests.harness import Harness

# The parsers of rule values, by function name (old and new homes alike: config/checks.py had
# parse_change and fixed_time; durations.py has parse_duration).
PARSERS = {"parse", "parse_change", "fixed_time", "parse_duration", "baseline_or_none", "change_or_none"}

RULES = """\
- name: latency-vs-yesterday
  source: model
  query: p99
  compare: {baseline: 1d, max_increase: "20%"}
  for: 30s
  action: alert
- name: approvals-vs-launch
  source: model
  query: approval_rate
  compare: {baseline: "2026-11-20T12:00:00Z", max_decrease: "0.05"}
  action: alert
- name: errors-vs-previous
  source: model
  compare:
    baseline: previous_version
    test: proportion
    errors: errors_total
    total: requests_total
    min_effect: 20%
  action: alert
"""


class _Calls:
    """Counts calls of the parsers in this thread and any other, by code name (no patching)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def __call__(self, frame: Any, event: str, _arg: Any) -> None:
        if event == "call" and frame.f_code.co_name in PARSERS:
            self.counts[frame.f_code.co_name] += 1

    def __enter__(self) -> _Calls:
        sys.setprofile(self)
        threading.setprofile(self)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]


def test_baselines_and_changes_are_not_parsed_again_on_any_tick(tmp_path) -> None:
    h = Harness(tmp_path, RULES)
    h.clock.set(1_795_176_000.0 + 2 * 86_400)
    for name, value in {"p99": 0.3, "approval_rate": 0.7, "errors_total": 5, "requests_total": 1000}.items():
        h.source.set(name, value)
    h.run_for(10)  # the first tick builds what the engine keeps
    with _Calls() as calls:
        reports = h.run_for(200)
    assert len(reports) == 20
    assert calls.counts == Counter()


def test_the_parsed_values_are_the_configs_own() -> None:
    assert Baseline.parse("1d") == Baseline("offset", "1d", seconds=86_400.0)
    assert Baseline.parse("previous_version").when(5.0) == 5.0
    assert Baseline.parse("2026-11-20T12:00:00Z").lookback(1_795_176_060.0) == 60.0
    assert Change.parse("20%").above(10.0) == 12.0 and Change.parse("0.5").below(10.0) == 9.5
