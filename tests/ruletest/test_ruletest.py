"""`model-watchdog test`: promtool's series notation, the test-file format, and runs on the real engine."""

from __future__ import annotations

import io
import math
import re
import textwrap
from pathlib import Path

import pytest

from watchdog.cli import main
from watchdog.errors import ConfigError
from watchdog.ruletest import GAP, STALE, NotationError, load_test_file, parse_series, parse_values, run_file

ROOT = Path(__file__).resolve().parents[2]


# -- the series notation -----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expanded"), [
    # the examples of promtool's documentation
    ("-2+4x3", [-2, 2, 6, 10]),
    (" 1-2x4", [1, -1, -3, -5, -7]),
    (" 1x4", [1, 1, 1, 1, 1]),
    (" 1 _x3 stale", [1, GAP, GAP, GAP, STALE]),
    ("10+10x2 30+20x5", [10, 20, 30, 30, 50, 70, 90, 110, 130]),
    ("0+10x3", [0, 10, 20, 30]),
    ("_", [GAP]),
    ("_x0 5", [5]),
    ("stalex2", [STALE, STALE, STALE]),
    ("0x1f 1e3 .5 -Inf +Inf 2.5+.5x2", [31, 1000, 0.5, -math.inf, math.inf, 2.5, 3, 3.5]),
])
def test_expanding_notation(text, expanded):
    assert parse_values(text) == expanded


def test_nan_values_are_kept():
    values = parse_values("NaN 1 nan")
    assert math.isnan(values[0]) and values[1] == 1 and math.isnan(values[2])


def test_increments_add_up_as_promtool_does():
    # promtool adds the step n times (float addition), not start + i*step
    expected, value = [], 0.0
    for _ in range(11):
        expected.append(value)
        value += 0.1
    assert parse_values("0+0.1x10") == expected


@pytest.mark.parametrize(("text", "column", "message"), [
    ("1 2 abc", 4, "cannot read 'abc'"),
    ("1+x3", 0, "cannot read"),
    ("stale+1x2", 0, "cannot be incremented"),
    ("_+1x3", 0, "cannot read"),
    ("1x", 0, "cannot read"),
])
def test_notation_errors_say_where(text, column, message):
    with pytest.raises(NotationError) as info:
        parse_values(text)
    assert info.value.column == column and message in str(info.value)


def test_series_descriptions():
    assert parse_series('requests_total{status="error", code="5"}') == (
        ("__name__", "requests_total"), ("code", "5"), ("status", "error"))
    assert parse_series("model_accuracy") == (("__name__", "model_accuracy"),)
    with pytest.raises(NotationError, match="exact labels"):
        parse_series('x{a=~"b"}')
    with pytest.raises(NotationError, match="series description"):
        parse_series("sum(x)")


# -- the shipped rule tests ---------------------------------------------------------------------------


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def test_every_example_rule_file_has_tests_and_they_pass():
    test_files = sorted(str(p) for p in (ROOT / "rules" / "tests").glob("*.yaml"))
    covered = {Path(f).resolve() for t in test_files for f in load_test_file(t).rule_files}
    examples = {p.resolve() for p in (ROOT / "rules").rglob("*.yaml")
                if "tests" not in p.parts and p.name != "watchdog.yaml"}
    assert examples <= covered, f"rule files without tests in rules/tests: {sorted(map(str, examples - covered))}"
    code, out, _ = run_cli("test", *test_files)
    assert code == 0, out
    assert "FAIL" not in out and out.count("PASS") >= 8


# -- writing test files ---------------------------------------------------------------------------------

RULES = """\
target: fraud-model
rules:
  - name: error-rate
    source: model
    query: errors_ratio
    above: 0.05
    for: 30s
    action: rollback
    severity: critical
  - name: by-code
    source: model
    query: errors_by_code
    above: 10
    action: alert
    on_no_data: ignore
    labels: {team: fraud}   # alerts carry it; expectations name the series labels only
"""


def write(tmp_path: Path, tests: str, rules: str = RULES) -> Path:
    (tmp_path / "rules.yaml").write_text(rules)
    path = tmp_path / "test.yaml"
    path.write_text("rule_files: [rules.yaml]\nevaluation_interval: 15s\n" + textwrap.dedent(tests))
    return path


def results(path: Path, select: str | None = None):  # type: ignore[no-untyped-def]
    return run_file(load_test_file(path), re.compile(select) if select else None)


def test_a_sustained_breach_rolls_back_once(tmp_path):
    path = write(tmp_path, """\
        tests:
          - name: sustained
            target: {version: v2}
            input_series:
              - {series: errors_ratio, values: '0.01x3 0.2x20'}    # breach from 1m on
            expect:
              - at: 45s
                rules: {error-rate: inactive}
              - at: 1m15s
                rules: {error-rate: pending}
                actions: []
              - at: 1m30s
                rules: {error-rate: firing}
                actions: [rollback]
              - at: 5m
                rules: {error-rate: firing}
                actions: []
        """)
    [result] = results(path)
    assert result.passed, result


def test_a_failure_says_when_what_was_expected_and_what_happened(tmp_path):
    path = write(tmp_path, """\
        tests:
          - name: wrong expectations
            input_series:
              - {series: errors_ratio, values: '0.2x20'}
            expect:
              - at: 15s
                rules: {error-rate: firing}
                actions: [alert]
        """)
    code, out, _ = run_cli("test", str(path))
    assert code == 1
    assert out.splitlines() == [
        f"Unit Testing: {path}",
        "  FAIL  wrong expectations",
        "      time: 15s, rule error-rate",
        "        exp: firing",
        "        got: pending (error-rate = 0.2 is > 0.05, pending since 0s)",
        "      time: 15s, actions",
        "        exp: [alert]",
        "        got: []",
        "  FAILED: 1 of 1 tests",
    ]


def test_gaps_and_stale_markers_differ_as_in_prometheus(tmp_path):
    # A gap leaves the last sample visible for the 5m lookback; a stale marker ends the series.
    path = write(tmp_path, """\
        tests:
          - name: gap
            input_series:
              - {series: errors_by_code, values: '50 _x10'}
            expect:
              - at: 2m
                rules: {by-code: firing}
          - name: stale
            input_series:
              - {series: errors_by_code, values: '50 stale'}
              - {series: errors_ratio, values: '0+0x10'}    # (0x10 would be hex 16, as in promtool)
            expect:
              - at: 0s
                rules: {by-code: firing}
                actions: [alert by-code]
              - at: 2m
                rules: {by-code: firing}     # no data does not prove recovery
                actions: [no_data by-code]
        """, rules=RULES.replace("on_no_data: ignore", "on_no_data: alert"))
    assert [(r.name, r.passed, r.failures) for r in results(path)] == [("gap", True, []), ("stale", True, [])]


def test_expectations_per_series(tmp_path):
    path = write(tmp_path, """\
        tests:
          - name: per code
            input_series:
              - {series: 'errors_by_code{code="500"}', values: '50x4'}
              - {series: 'errors_by_code{code="503"}', values: '1x4'}
            expect:
              - at: 0s
                rules: {'by-code{code="500"}': firing, 'by-code{code="503"}': inactive, by-code: firing,
                        'by-code{code="404"}': inactive}
                actions: ['alert by-code{code="500"}']
        """)
    [result] = results(path)
    assert result.passed, result


def test_every_problem_of_a_test_file_is_reported_with_its_line(tmp_path):
    path = write(tmp_path, """\
        tests:
          - name: broken
            input_series:
              - {series: errors_ratio, values: '0.2x4 abc'}
            expect:
              - at: 1m
                rules: {error-rat: firing, by-code: fired}
              - at: 30s
                actions: ['rollback nope']
          - name: misspelt
            intervall: 15s
        """)
    with pytest.raises(ConfigError) as info:
        load_test_file(path)
    shown = [str(p) for p in info.value.problems]
    assert f"{path}:13:5: test file.tests[1]: unknown key 'intervall' (did you mean 'interval'?)" in shown
    assert any(s.startswith(f"{path}:6:") and "cannot read 'abc'" in s for s in shown), shown
    assert any(s.startswith(f"{path}:9:") and "unknown rule 'error-rat' (did you mean 'error-rate'?)" in s
               for s in shown), shown
    assert any(":9:" in s and "must be one of inactive, pending, firing, got 'fired'" in s for s in shown), shown
    assert any(":10:" in s and "times must not go backwards" in s for s in shown), shown
    assert any("unknown rule 'nope'" in s for s in shown), shown


def test_rule_file_problems_point_into_the_rule_file(tmp_path):
    path = write(tmp_path, "tests: [{name: x, expect: [{at: 0s}]}]\n",
                 rules=RULES.replace("query: errors_ratio", "query: rate(errors_ratio)"))
    with pytest.raises(ConfigError) as info:
        load_test_file(path)
    [problem] = info.value.problems
    assert problem.file == str(tmp_path / "rules.yaml") and problem.line == 5
    assert "rate" in problem.message


def test_target_settings_pass_through_to_the_engine(tmp_path):
    # `mode: shadow` is a target setting: the rule fires and alerts but nothing is rolled back.
    path = write(tmp_path, """\
        tests:
          - name: shadow
            target: {version: v2, mode: shadow}
            input_series:
              - {series: errors_ratio, values: '0.2x10'}
            expect:
              - at: 1m
                rules: {error-rate: firing}
                actions: [alert error-rate]
        """)
    [result] = results(path)
    assert result.passed, result
    with pytest.raises(ConfigError, match="set by the test runner"):
        load_test_file(write(tmp_path, "tests: [{name: x, target: {rollback: [a]}, expect: [{at: 0s}]}]\n"))


def test_a_new_version_lifts_the_hold(tmp_path):
    path = write(tmp_path, """\
        tests:
          - name: v2 rolled back, v3 rolled back too
            target:
              versions: [{at: 0s, version: v2}, {at: 3m, version: v3}]
            input_series:
              - {series: errors_ratio, values: '0.2x4 0.01x7 0.2x20'}    # bad; good 1m15s–3m; bad from 3m15s
            expect:
              - at: 30s
                actions: [rollback error-rate]
              - at: 2m
                rules: {error-rate: inactive}
                actions: [resolved error-rate]
              - at: 3m45s
                rules: {error-rate: firing}
                actions: [rollback error-rate]     # v3 is not held: it is rolled back too
        """)
    [result] = results(path)
    assert result.passed, result


def test_rules_of_several_targets_are_told_apart(tmp_path):
    rules = RULES.replace("target: fraud-model", "targets: [fraud-a, fraud-b]")
    path = write(tmp_path, """\
        tests:
          - name: both
            input_series:
              - {series: errors_ratio, values: '0.2x10'}
            expect:
              - at: 30s
                rules: {fraud-a/error-rate: firing, fraud-b/error-rate: firing}
                actions: [rollback fraud-a/error-rate, rollback fraud-b/error-rate]
        """, rules=rules)
    [result] = results(path)
    assert result.passed, result
    with pytest.raises(ConfigError, match="write TARGET/error-rate"):
        load_test_file(write(tmp_path, "tests: [{expect: [{at: 0s, rules: {error-rate: firing}}]}]\n", rules=rules))


def test_run_selects_tests_by_name(tmp_path):
    path = write(tmp_path, """\
        tests:
          - name: one
            expect: [{at: 0s, rules: {error-rate: inactive}}]
          - name: two
            expect: [{at: 0s, rules: {error-rate: firing}}]
        """)
    code, out, _ = run_cli("test", str(path), "--run", "^one$")
    assert code == 0 and "PASS  one" in out and "two" not in out
    code, out, _ = run_cli("test", str(path))
    assert code == 1 and "PASS  one" in out and "FAIL  two" in out


# -- several targets, their own settings; alert routing -----------------------------------------------

MULTI = """\
targets: [fraud-a, fraud-b]
rules:
  - name: error-rate
    source: model
    query: errors_ratio{region="{{region}}"}
    above: 0.05
    action: rollback
  - name: accuracy
    source: model
    query: accuracy{model="{{target}}",version="{{version}}"}
    below: 0.9
    action: alert
    alert: [chat, pager]
"""


def test_each_target_gets_its_own_variables_versions_and_settings(tmp_path):
    # `target` applies to every target; an entry of `targets` replaces the keys it gives.
    path = write(tmp_path, """\
        tests:
          - name: per target
            target: {version: v1, variables: {region: nowhere}}
            targets:
              fraud-a: {variables: {region: eu}}
              fraud-b: {variables: {region: us}, mode: shadow,
                        versions: [{at: 0s, version: v1}, {at: 1m, version: v2}]}
            input_series:
              - {series: 'errors_ratio{region="eu"}', values: '0.01x10'}
              - {series: 'errors_ratio{region="us"}', values: '0.2x10'}
              - {series: 'accuracy{model="fraud-a",version="v1"}', values: '0.95x10'}
              - {series: 'accuracy{model="fraud-b",version="v1"}', values: '0.95x10'}
              - {series: 'accuracy{model="fraud-b",version="v2"}', values: '0.5x10'}
            expect:
              - at: 45s                          # fraud-b is in shadow mode: it alerts, nothing rolls back
                rules: {fraud-a/error-rate: inactive, fraud-b/error-rate: firing, fraud-b/accuracy: inactive}
                actions: [alert fraud-b/error-rate via alerts]
              - at: 1m                           # v2 runs on fraud-b only; fraud-a stays on v1
                rules: {fraud-a/accuracy: inactive, fraud-b/accuracy: firing}
                actions: ['alert fraud-b/accuracy via chat,pager', resolved fraud-b/error-rate,
                          alert fraud-b/error-rate]
        """, rules=MULTI)
    [result] = results(path)
    assert result.passed, result


def test_alerts_are_recorded_per_alerter_and_via_is_checked(tmp_path):
    path = write(tmp_path, """\
        tests:
          - name: wrong alerter
            target: {version: v1, variables: {region: eu}}
            input_series:
              - {series: 'errors_ratio{region="eu"}', values: '0.01x10'}
              - {series: 'accuracy{model="fraud-a",version="v1"}', values: '0.5x10'}
              - {series: 'accuracy{model="fraud-b",version="v1"}', values: '0.95x10'}
            expect:
              - at: 0s
                actions: [alert fraud-a/accuracy via chat]
        """, rules=MULTI)
    [result] = results(path)
    [failure] = result.failures
    assert failure.expected == "[alert fraud-a/accuracy via chat]"
    assert failure.got == '[alert fraud-a/accuracy{model="fraud-a",version="v1"} via chat,pager (at 0s)]'
    with pytest.raises(ConfigError, match="unknown alerter 'chatt' \\(did you mean 'chat'\\?\\)"):
        load_test_file(write(tmp_path, "tests: [{target: {version: v1, variables: {region: eu}}, "
                                       "expect: [{at: 0s, actions: [alert via chatt]}]}]\n", rules=MULTI))


def test_placeholders_without_a_value_and_unknown_targets_are_problems(tmp_path):
    path = write(tmp_path, """\
        tests:
          - name: no variables, no version
            expect: [{at: 0s}]
          - name: misspelt target
            target: {version: v1, variables: {region: eu}}
            targets: {fraud-c: {mode: shadow}}
            expect: [{at: 0s}]
        """, rules=MULTI)
    with pytest.raises(ConfigError) as info:
        load_test_file(path)
    shown = [str(p) for p in info.value.problems]
    assert any(":4:" in s and "rule 'error-rate' of target 'fraud-a' uses {{region}}, which has no value" in s
               for s in shown), shown
    assert any("rule 'accuracy' of target 'fraud-b' uses {{version}}: give the running version" in s for s in shown), shown
    assert any(":8:" in s and "tests[1].targets: unknown target 'fraud-c'" in s for s in shown), shown
