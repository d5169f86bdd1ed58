"""`model-watchdog backtest` on a SQL (SQLite) history: the production engine replayed with
`:now` bound to each step, nothing acted on, nothing written to the live state."""

from __future__ import annotations

import io
import json
import sqlite3
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import pytest

from watchdog.commands.backtest import BacktestError, parse_time
from watchdog.cli import _dash_values, main

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
    (tmp_path / "watchdog.yaml").write_text(textwrap.dedent(f"""\
        interval: {interval}
        state: live.db
        rule_files: [rules.yaml]
        sources:
          db: {{type: sql, dsn: "sqlite:///{tmp_path / 'm.db'}"}}
          page: {{type: scrape, url: "http://127.0.0.1:9/metrics"}}
        actuators:
          deploy: {{type: webhook, url: "http://127.0.0.1:9/rollback"}}
        alerters:
          ops: {{type: webhook, url: "http://127.0.0.1:9/alert"}}
        targets:
          m: {{rollback: [deploy], alert: [ops], version: {{source: page, query: model_info, label: version}}}}
        """))
    return tmp_path / "watchdog.yaml"


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
