"""`model-watchdog backtest` on a SQL (SQLite) history: the production engine replayed with
`:now` bound to each step, nothing acted on, nothing written to the live state."""

from __future__ import annotations

import io
import json
import random
import re
import sqlite3
import textwrap
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from watchdog.commands import backtest
from watchdog.commands.backtest import BacktestError, Request, parse_time
from watchdog.cli import _dash_values, main
from watchdog.config.loader import load

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
MINUTE = 60.0


def _at(seconds: float) -> str:
    return datetime.fromtimestamp(T0 + seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _history(path: Path, bad: tuple[int, int] = (60, 80), minutes: int = 360) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE m (at TEXT, value REAL)")
    for i in range(minutes):
        at = datetime.fromtimestamp(T0 + i * MINUTE, tz=timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
        db.execute("INSERT INTO m VALUES (?, ?)", (at, 0.2 if bad[0] <= i < bad[1] else 0.01))
    db.commit()
    db.close()


def _setup(tmp_path: Path, rule_extra: str = "for: 2m", interval: str = "1m") -> Path:
    _history(tmp_path / "m.db")
    (tmp_path / "rules.yaml").write_text(textwrap.dedent(f"""\
        target: m
        rules:
        - name: err
          source: db
          query: "SELECT value FROM m WHERE at <= :now ORDER BY at DESC LIMIT 1"
          above: 0.1
          {rule_extra}
          action: rollback
        - name: live-only
          source: page
          query: up
          below: 1
        """))
    _watchdog_yaml(tmp_path, interval, "version: {source: page, query: model_info, label: version}",
                   '\n  page: {type: scrape, url: "http://127.0.0.1:9/metrics"}')
    return tmp_path / "watchdog.yaml"


def _watchdog_yaml(tmp_path: Path, interval: str, target_extra: str, more_sources: str = "") -> None:
    """watchdog.yaml: source `db` (tmp_path/m.db), target `m` rolling back through a webhook."""
    (tmp_path / "watchdog.yaml").write_text(f"""\
interval: {interval}
state: live.db
rule_files: [rules.yaml]
sources:
  db: {{type: sql, dsn: "sqlite:///{tmp_path / 'm.db'}"}}{more_sources}
actuators:
  deploy: {{type: webhook, url: "http://127.0.0.1:9/rollback"}}
alerters:
  ops: {{type: webhook, url: "http://127.0.0.1:9/alert"}}
targets:
  m: {{rollback: [deploy], alert: [ops], {target_extra}}}
""")


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(["backtest", *argv], out=out, err=err), out.getvalue(), err.getvalue()


def test_sql_history_is_replayed_with_now_bound_to_each_step(tmp_path: Path) -> None:
    config = _setup(tmp_path)
    code, out, err = _run("-c", str(config), "--from", _at(0), "--to", _at(359 * MINUTE), "--json")
    assert code == 1, err
    report = json.loads(out)
    assert report["step"] == "1m"
    rule = report["targets"]["m"]["rules"]["err"]
    assert rule["evaluations"] == 360 and rule["no_data"] == 0
    assert [(f["pending_at"], f["fired_at"], f["resolved_at"], f["value"]) for f in rule["firings"]] == [
        (_at(60 * MINUTE), _at(62 * MINUTE), _at(80 * MINUTE), 0.2)]
    assert report["targets"]["m"]["rollbacks"] == [{"at": _at(62 * MINUTE), "rule": "err", "value": 0.2}]
    assert {(a["kind"], a["status"]) for a in report["targets"]["m"]["alerts"]} >= {("rule", "firing"), ("rule", "resolved")}
    assert "keeps no history" in report["targets"]["m"]["rules"]["live-only"]["skipped"]
    assert not (tmp_path / "live.db").exists()


def test_a_step_longer_than_the_interval_is_not_a_gap(tmp_path: Path) -> None:
    # evaluations 5m apart with a 1m interval: `for` must still count across them
    config = _setup(tmp_path, rule_extra="for: 10m")
    code, out, err = _run("-c", str(config), "--from", _at(0), "--to", _at(359 * MINUTE), "--step", "5m", "--json")
    assert code == 1, err
    firings = json.loads(out)["targets"]["m"]["rules"]["err"]["firings"]
    assert [(f["pending_at"], f["fired_at"]) for f in firings] == [(_at(60 * MINUTE), _at(70 * MINUTE))]


def test_nothing_fired_exits_0_with_a_text_report(tmp_path: Path) -> None:
    config = _setup(tmp_path)
    code, out, err = _run("-c", str(config), "--from", _at(100 * MINUTE), "--to", _at(200 * MINUTE))
    assert code == 0, err
    assert "rule err: 101 evaluations, 0 without data, 0 firing(s)" in out
    assert "rule live-only: not replayed: source page (scrape) keeps no history" in out
    assert "note: target m: the running version is not replayed" in err and "page (scrape)" in err


def test_rules_option_tries_undeployed_rule_files(tmp_path: Path) -> None:
    config = _setup(tmp_path)
    (tmp_path / "draft.yaml").write_text(textwrap.dedent("""\
        target: m
        rules:
        - name: draft
          source: db
          query: "SELECT value FROM m WHERE at <= :now ORDER BY at DESC LIMIT 1"
          above: 0.005
        """))
    code, out, err = _run("-c", str(config), "--from", _at(0), "--to", _at(10 * MINUTE),
                          "--rules", str(tmp_path / "draft.*"), "--json")
    assert code == 1, err
    assert list(json.loads(out)["targets"]["m"]["rules"]) == ["draft"]


def test_unknown_target_is_a_usage_error(tmp_path: Path) -> None:
    code, out, err = _run("-c", str(_setup(tmp_path)), "nope", "--from", _at(0), "--to", _at(60))
    assert code == 2 and "unknown target(s) nope; configured: m" in err


def test_times() -> None:
    now = 1_800_000_000.0
    assert parse_time("now", now) == now
    assert parse_time("-6h", now) == now - 6 * 3600
    assert parse_time("-7d", now) == now - 7 * 86400
    assert parse_time("2023-11-14T22:13:20Z", now) == T0
    assert parse_time("2023-11-14T23:13:20+01:00", now) == T0
    for bad in ("yesterday", "2023-11-14T22:13:20", "-6x"):
        with pytest.raises(BacktestError):
            parse_time(bad, now)


def test_leading_dash_times_are_values() -> None:
    assert _dash_values(["backtest", "--from", "-6h", "--to", "-1h", "-c", "x"]) == [
        "backtest", "--from=-6h", "--to=-1h", "-c", "x"]
    assert _dash_values(["backtest", "--from", "now", "--json"]) == ["backtest", "--from", "now", "--json"]


# -- quiet steps: the fast path gives the report of an engine ticked on every step ---------------

def _random_history(path: Path, seed: int, minutes: int) -> None:
    """Three series a minute (a, b, c), mostly calm; bursts of breaches, gaps without data, a
    series that vanishes for a while, calm stretches with too few samples."""
    rng = random.Random(seed)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE m (t REAL, series TEXT, value REAL, samples REAL)")
    burst = gap = vanish = few = 0
    for i in range(minutes):
        if rng.random() < 0.02:
            few = rng.randint(1, 4)
        if rng.random() < 0.03:
            burst = rng.randint(1, 8)
        if rng.random() < 0.01:
            gap = rng.randint(1, 7)
        if rng.random() < 0.01:
            vanish = rng.randint(2, 20)
        for series in ("a", "b", "c"):
            if gap or (series == "c" and vanish):
                continue
            value = rng.uniform(0.6, 0.95) if burst and series != "b" else rng.uniform(0.1, 0.3)
            samples = 2.0 if few else 50.0
            db.execute("INSERT INTO m VALUES (?, ?, ?, ?)", (T0 + i * MINUTE, series, value, samples))
        burst, gap, vanish, few = max(0, burst - 1), max(0, gap - 1), max(0, vanish - 1), max(0, few - 1)
    db.commit()
    db.close()


QUERY = "SELECT series, value, samples FROM m WHERE t > :now_epoch - 60 AND t <= :now_epoch"
RULES = f"""\
target: m
rules:
- name: err
  source: db
  query: "{QUERY}"
  above: 0.5
  for: 2m
  error_limit: 1
  action: rollback
- name: low
  source: db
  query: "{QUERY}"
  below: 0.101
  on_no_data: ignore
- name: counted
  source: db
  query: "{QUERY}"
  above: 0.8
  min_samples: {{at_least: 10}}
  max_inconclusive: 1m
- name: either
  source: db
  any:
  - {{query: "{QUERY}", above: 0.9}}
  - {{query: "SELECT value FROM m WHERE series = 'b' AND t > :now_epoch - 60 AND t <= :now_epoch", above: 0.29}}
  for: 1m
"""


def _differential_config(tmp_path: Path, seed: int, minutes: int) -> Path:
    _random_history(tmp_path / "m.db", seed, minutes)
    (tmp_path / "rules.yaml").write_text(RULES)
    _watchdog_yaml(tmp_path, "1m", "verify_window: 5m, max_rollbacks: {count: 100, window: 1h}")
    return tmp_path / "watchdog.yaml"


def _normal(report: dict[str, object]) -> str:
    """The report with decision ids (random) replaced."""
    return re.sub(r"[0-9a-f]{32}", "<id>", json.dumps(report, sort_keys=True))


@pytest.mark.parametrize("seed", [1, 2])
def test_skipping_quiet_steps_gives_the_report_of_every_step_ticked(tmp_path: Path, seed: int) -> None:
    minutes = 360
    loaded = load(_differential_config(tmp_path, seed, minutes))
    request = Request(start=T0, end=T0 + (minutes - 1) * MINUTE)
    fast_stats: dict[str, int] = {}
    exact_stats: dict[str, int] = {}
    fast = backtest.run(loaded, request, stats=fast_stats)
    exact = backtest.run(loaded, request, exact=True, stats=exact_stats)
    assert _normal(fast) == _normal(exact)
    rules = exact["targets"]["m"]["rules"]
    assert all(rules[r]["firings"] for r in ("err", "counted", "either")), "the history must make the rules fire"
    assert exact["targets"]["m"]["rollbacks"] and rules["err"]["no_data"] > 0
    assert exact_stats["ticks"] == minutes
    assert fast_stats["ticks"] < minutes / 2, fast_stats  # most steps were skipped


def test_quiet_steps_are_not_skipped_for_rules_with_a_failure_limit(tmp_path: Path) -> None:
    loaded = load(_differential_config(tmp_path, 1, 60))
    loaded = replace(loaded, rules=[replace(lr, rule=replace(lr.rule, failure_limit=2)) for lr in loaded.rules])
    stats: dict[str, int] = {}
    backtest.run(loaded, Request(start=T0, end=T0 + 59 * MINUTE), stats=stats)
    assert stats["ticks"] == 60


def test_a_source_that_answers_nothing_but_errors_is_an_error_not_a_calm_week(tmp_path: Path) -> None:
    config = _setup(tmp_path)
    (tmp_path / "m.db").unlink()
    (tmp_path / "m.db").mkdir()  # SQLite cannot open a folder: every query fails
    code, out, err = _run("-c", str(config), "--from", _at(0), "--to", _at(30 * MINUTE))
    assert code == 2 and "source db: every query failed" in err, out + err
