"""The sql source against a real PostgreSQL: delayed labels end to end, read-only, timeouts,
errors, a lost connection, and a password that never shows."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from tests.needs import require_module
from tests.servers import PostgresServer
from tests.sources.helpers import options_from_yaml
from watchdog.config.schema import MinSamples, Rule
from watchdog.errors import QueryError, SourceError, WatchdogError
from watchdog.rules.evaluate import Outcome, Situation, judge_rule
from watchdog.sources.base import QueryResult, Source
from watchdog.sources.sql import SqlOptions, SqlSource
from watchdog.sources.runner import invoke

psycopg = require_module("psycopg", "'psycopg[binary]'")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def ml_db(postgres: PostgresServer) -> Iterator[str]:
    dsn = postgres.create_database("ml_sources")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("""
            CREATE TABLE predictions (request_id text PRIMARY KEY, model_version text NOT NULL,
                                      predicted text NOT NULL, created_at timestamptz NOT NULL);
            CREATE TABLE labels (request_id text PRIMARY KEY, label text NOT NULL,
                                 arrived_at timestamptz NOT NULL DEFAULT now());
        """)
        rows, labels = [], []
        # Made 35 to 85 minutes ago (inside window 1h + label_delay 30m): v7 is right 170 of
        # 200 labelled times (0.85); 50 more predictions have no label yet and do not count.
        for i in range(250):
            made = NOW - timedelta(minutes=35 + i * 50 / 250)
            rows.append((f"v7-{i}", "v7", "fraud", made))
            if i < 200:
                labels.append((f"v7-{i}", "fraud" if i < 170 else "legit"))
        # Too recent to judge (labels mostly missing) and too old: both outside the window.
        rows += [(f"new-{i}", "v7", "fraud", NOW - timedelta(minutes=5)) for i in range(50)]
        labels += [(f"new-{i}", "legit") for i in range(50)]
        rows += [(f"old-{i}", "v6", "fraud", NOW - timedelta(hours=3)) for i in range(50)]
        labels += [(f"old-{i}", "legit") for i in range(50)]
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO predictions VALUES (%s, %s, %s, %s)", rows)
            cur.executemany("INSERT INTO labels (request_id, label) VALUES (%s, %s)", labels)
    yield dsn


def pg_source(dsn: str, **options: Any) -> SqlSource:
    options.setdefault("window", 3600.0)
    options.setdefault("label_delay", 1800.0)
    options.setdefault("timeout", 5.0)
    return SqlSource("labels-db", SqlOptions(dsn=dsn, **options))


def example_rule() -> Rule:
    doc = yaml.safe_load((ROOT / "rules/examples/delayed-labels.yaml").read_text())
    raw = doc["rules"][0]
    return Rule(name=raw["name"], source=raw["source"], query=raw["query"], below=raw["below"],
                min_samples=MinSamples(at_least=raw["min_samples"]["at_least"]))


def judge(rule: Rule, source: Source, now: float) -> list[Any]:
    def fetch(name: str, query: str, at: float, params: dict[str, str] | None = None) -> QueryResult | WatchdogError:
        try:
            return invoke(source, query, at, params)
        except WatchdogError as exc:
            return exc

    return judge_rule(rule, Situation(fetch=fetch, now=now, variables={}))


def test_the_shipped_delayed_label_rule_judges_accuracy_on_labels_that_arrived(ml_db: str) -> None:
    source = pg_source(ml_db)
    rule = example_rule()

    result = source.query(rule.query or "", NOW.timestamp())
    [sample] = result.samples
    assert dict(sample.labels) == {"version": "v7"}
    assert sample.value == pytest.approx(0.85)
    assert result.counts == {sample.labels: 200.0}

    [verdict] = judge(rule, source, NOW.timestamp())
    assert verdict.outcome is Outcome.BREACH and verdict.samples == 200  # 0.85 < 0.90 on 200 labels

    # An hour later the window holds only a few labelled predictions: too few to judge.
    [later] = judge(rule, source, (NOW + timedelta(minutes=60)).timestamp())
    assert later.outcome in (Outcome.INSUFFICIENT, Outcome.NO_DATA)


def test_parameters_casts_and_percent_signs_reach_postgres_intact(ml_db: str) -> None:
    source = pg_source(ml_db)
    query = """SELECT count(*)::float8 AS value, :version::text AS asked, pg_typeof(:now)::text AS now_type
               FROM predictions WHERE request_id LIKE 'v7-%' AND (model_version = :version OR :version IS NULL)"""

    [everything] = source.query(query, NOW.timestamp()).samples
    [v6] = source.query_with(query, NOW.timestamp(), {"version": "v6"}).samples

    assert everything.value == 250 and everything.label("asked") is None
    assert everything.label("now_type") == "timestamp with time zone"
    assert v6.value == 0 and v6.label("asked") == "v6"


def test_queries_run_read_only(ml_db: str) -> None:
    source = pg_source(ml_db)

    with pytest.raises(QueryError, match="tries to write .*read-only transaction"):
        source.query("UPDATE predictions SET predicted = 'x' RETURNING 1 AS value", NOW.timestamp())
    with pytest.raises(QueryError, match="tries to write"):
        source.query("WITH d AS (DELETE FROM labels RETURNING 1) SELECT count(*) AS value FROM d", NOW.timestamp())

    [count] = source.query("SELECT count(*) AS value FROM predictions WHERE predicted = 'x'", NOW.timestamp()).samples
    assert count.value == 0


def test_a_slow_query_is_cancelled_by_the_statement_timeout(ml_db: str) -> None:
    source = pg_source(ml_db, timeout=0.5)
    started = time.monotonic()

    with pytest.raises(SourceError, match="cancelled by the statement timeout of 0.5s") as err:
        source.query("SELECT 1 AS value FROM pg_sleep(5)", NOW.timestamp())

    assert err.value.kind == "timeout"
    assert time.monotonic() - started < 4
    assert source.query("SELECT 2 AS value", NOW.timestamp()).samples[0].value == 2  # same connection goes on


def test_sql_errors_are_query_errors_with_the_servers_message(ml_db: str) -> None:
    source = pg_source(ml_db)

    with pytest.raises(QueryError, match='SQL error: syntax error at or near "SELEC"'):
        source.query("SELEC 1 AS value", NOW.timestamp())
    with pytest.raises(QueryError, match='relation "predictionz" does not exist'):
        source.query("SELECT count(*) AS value FROM predictionz", NOW.timestamp())
    with pytest.raises(QueryError, match="none named 'value'"):
        source.query("SELECT 1 AS accuracy", NOW.timestamp())
    assert source.query("SELECT 3 AS value", NOW.timestamp()).samples[0].value == 3


def test_a_lost_connection_is_a_source_error_and_the_next_query_reconnects(ml_db: str) -> None:
    source = pg_source(ml_db)
    [pid] = source.query("SELECT pg_backend_pid() AS value", NOW.timestamp()).samples

    with psycopg.connect(ml_db, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (int(pid.value),))

    with pytest.raises(SourceError, match="lost the connection to postgresql://") as err:
        source.query("SELECT 1 AS value", NOW.timestamp())
    assert err.value.kind == "connection"
    assert not source.health().up

    [again] = source.query("SELECT pg_backend_pid() AS value", NOW.timestamp()).samples
    assert again.value != pid.value and source.health().up


def test_a_password_from_a_file_never_appears_in_errors_or_logs(postgres: PostgresServer, ml_db: str,
                                                                tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "db-password").write_text("pg-Secret-4711\n")
    options = options_from_yaml(SqlOptions, f"""
dsn: postgresql://watchdog@127.0.0.1:{postgres.port}/no_such_database
password_file: db-password
timeout: 2s
""", tmp_path)
    assert options.password == "pg-Secret-4711"
    source = SqlSource("labels-db", options)

    with caplog.at_level(logging.DEBUG):
        with pytest.raises(SourceError) as err:
            source.query("SELECT 1 AS value", NOW.timestamp())
        logging.getLogger("test").warning("source failed: %s; health %s", err.value, source.health())

    assert 'database "no_such_database" does not exist' in str(err.value)
    assert err.value.kind == "connection"
    assert "pg-Secret-4711" not in str(err.value) and "pg-Secret-4711" not in caplog.text
    assert "pg-Secret-4711" not in repr(options)

    # With the right database the password is passed (trust auth accepts it) and queries work.
    working = SqlSource("labels-db", SqlOptions(dsn=ml_db, password=options.password, timeout=2.0))
    assert working.query("SELECT 1 AS value", NOW.timestamp()).samples[0].value == 1
    working.close()
