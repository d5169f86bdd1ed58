"""`model-watchdog test`: unit tests for trigger rules, in the spirit of `promtool test rules`.

    file = load_test_file("rules/tests/fraud-model.yaml")   # ConfigError lists every problem
    results = run_file(file)                                # one CaseResult per test case
    print("\\n".join(report(file, results)))

A test file names rule files, gives synthetic input series in promtool's expanding notation
and states, at points in time, the expected rule states and the actions taken since the
previous check. The production engine runs them; see docs/rule-tests.md.
"""

from __future__ import annotations

from watchdog.durations import format_duration
from watchdog.ruletest.notation import GAP, STALE, NotationError, parse_series, parse_values
from watchdog.ruletest.runner import Action, CaseResult, Failure, run_case, run_file
from watchdog.ruletest.testfile import RuleTestFile, load_test_file

__all__ = [
    "GAP",
    "STALE",
    "Action",
    "CaseResult",
    "Failure",
    "NotationError",
    "RuleTestFile",
    "load_test_file",
    "parse_series",
    "parse_values",
    "report",
    "run_case",
    "run_file",
]


def report(path: str, results: list[CaseResult]) -> list[str]:
    """promtool-like lines: PASS per test; test, time, subject, expected and got per failure."""
    lines = [f"Unit Testing: {path}"]
    for result in results:
        if result.passed:
            lines.append(f"  PASS  {result.name}")
            continue
        lines.append(f"  FAIL  {result.name}")
        if result.error:
            lines.append(f"      error: {result.error}")
        for f in result.failures:
            lines.append(f"      time: {format_duration(f.at)}, {f.subject}")
            lines.append(f"        exp: {f.expected}")
            lines.append(f"        got: {f.got}")
    failed = sum(not r.passed for r in results)
    if not results:
        lines.append("  no test selected")
    lines.append(f"  FAILED: {failed} of {len(results)} tests" if failed else f"  SUCCESS: {len(results)} tests passed")
    return lines
