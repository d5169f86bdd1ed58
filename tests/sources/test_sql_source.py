"""The sql source on SQLite: the delayed-label pattern, rows → series, read-only, timeouts, errors.

PostgreSQL is covered by tests/integration/test_sources_sql_postgres.py against a real server.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest

from watchdog.errors import QueryError, SourceError
from watchdog.sources.sql import SqlOptions, SqlSource, scan

pytestmark = pytest.mark.timeout(30)

NOW = 1_700_000_000.0
HOUR = 3600.0

# Accuracy of predictions made between now - window - label_delay and now - label_delay,
# over those whose label has arrived (the SQLite form of rules/examples/delayed-labels.yaml).
ACCURACY = """
SELECT p.model_version AS version,
       avg(CASE WHEN p.predicted = l.label THEN 1.0 ELSE 0.0 END) AS value,
       count(*) AS samples
FROM predictions p
JOIN labels l ON l.request_id = p.request_id
WHERE p.created_at >  :now_epoch - :window - :label_delay
  AND p.created_at <= :now_epoch - :label_delay
GROUP BY p.model_version
"""


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "ml.db"
    with sqlite3.connect(path) as conn:
        conn.executescript("""
            CREATE TABLE predictions (request_id TEXT PRIMARY KEY, model_version TEXT, predicted TEXT, created_at REAL);
            CREATE TABLE labels (request_id TEXT PRIMARY KEY, label TEXT, arrived_at REAL);
        """)
        rows = []
        labels = []
        # In the window (made 30 to 90 minutes ago): 8 labelled, 6 of them right; 2 unlabelled yet.
        for i in range(10):
            rows.append((f"in-{i}", "v7", "fraud", NOW - 1.5 * HOUR + (i + 1) * 60))
            if i < 8:
                labels.append((f"in-{i}", "fraud" if i < 6 else "legit", NOW - 60))
        # Too recent (labels of such predictions are still mostly missing) and too old: ignored.
        rows += [("new-0", "v7", "fraud", NOW - 600), ("old-0", "v7", "fraud", NOW - 3 * HOUR)]
        labels += [("new-0", "legit", NOW), ("old-0", "legit", NOW - 2 * HOUR)]
        conn.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?)", rows)
        conn.executemany("INSERT INTO labels VALUES (?, ?, ?)", labels)
    conn.close()
    return path


def sqlite_source(path: Path, **options: object) -> SqlSource:
    options.setdefault("window", HOUR)
    options.setdefault("label_delay", 0.5 * HOUR)
    options.setdefault("timeout", 5.0)
    return SqlSource("labels-db", SqlOptions(dsn=f"sqlite:///{path}", **options))  # type: ignore[arg-type]


def test_delayed_label_accuracy_counts_only_predictions_whose_labels_arrived(db: Path) -> None:
    result = sqlite_source(db).query(ACCURACY, NOW)

    [sample] = result.samples
    assert dict(sample.labels) == {"version": "v7"}
    assert sample.value == pytest.approx(0.75)
    assert result.counts == {sample.labels: 8.0}


def test_every_other_column_is_a_label_and_null_means_no_data(db: Path) -> None:
    query = """SELECT 'fraud' AS model, NULL AS region, 3 AS shard, NULL AS value
               UNION ALL SELECT 'churn', 'eu', 4, 0.5"""
    samples = {s.label("model"): s for s in sqlite_source(db).query(query, NOW).samples}

    assert math.isnan(samples["fraud"].value)
    assert dict(samples["fraud"].labels) == {"model": "fraud", "shard": "3"}  # NULL label left out
    assert dict(samples["churn"].labels) == {"model": "churn", "region": "eu", "shard": "4"}


def test_the_version_parameter_is_null_unless_the_engine_passes_it(db: Path) -> None:
    source = sqlite_source(db)
    query = "SELECT count(*) AS value FROM predictions WHERE model_version = :version OR :version IS NULL"

    assert source.query(query, NOW).samples[0].value == 12
    assert source.query_with(query, NOW, {"version": "v6"}).samples[0].value == 0
    assert source.query_with(query, NOW, {"version": "v7"}).samples[0].value == 12


def test_now_is_utc_text_that_sqlite_date_functions_understand(db: Path) -> None:
    query = "SELECT strftime('%s', :now) - :now_epoch AS value, :now AS shown"
    [sample] = sqlite_source(db).query(query, NOW).samples

    assert sample.value == 0
    assert sample.label("shown") == "2023-11-14 22:13:20"


def test_a_missing_value_column_names_the_columns_found(db: Path) -> None:
    with pytest.raises(QueryError, match="columns version, accuracy but none named 'value'"):
        sqlite_source(db).query("SELECT 'v7' AS version, 0.9 AS accuracy", NOW)


def test_a_text_value_is_a_query_error(db: Path) -> None:
    with pytest.raises(QueryError, match="column value of row 1 is str 'high', not a number"):
        sqlite_source(db).query("SELECT 'high' AS value", NOW)


def test_rows_with_the_same_labels_are_a_query_error(db: Path) -> None:
    with pytest.raises(QueryError, match="rows 1 and 2 have the same labels"):
        sqlite_source(db).query("SELECT model_version, 1 AS value FROM predictions LIMIT 2", NOW)


def test_queries_cannot_write(db: Path) -> None:
    source = sqlite_source(db)

    with pytest.raises(QueryError, match="tries to write"):
        source.query("DELETE FROM predictions RETURNING 1 AS value", NOW)
    with pytest.raises(QueryError, match="tries to write"):
        source.query("INSERT INTO labels VALUES ('x', 'y', 0) RETURNING 1 AS value", NOW)
    assert source.query("SELECT count(*) AS value FROM predictions", NOW).samples[0].value == 12


def test_a_runaway_query_is_stopped_at_the_timeout(db: Path) -> None:
    forever = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) AS value FROM c"
    source = sqlite_source(db, timeout=0.3)

    with pytest.raises(SourceError, match="stopped after the timeout of 0.3s") as err:
        source.query(forever, NOW)

    assert err.value.kind == "timeout"
    assert source.query("SELECT 1 AS value", NOW).samples[0].value == 1  # the connection still works


def test_a_syntax_error_is_a_query_error(db: Path) -> None:
    with pytest.raises(QueryError, match='SQL error: near "SELEC": syntax error'):
        sqlite_source(db).query("SELEC 1 AS value", NOW)
    with pytest.raises(QueryError, match="no such table: predictionz"):
        sqlite_source(db).query("SELECT count(*) AS value FROM predictionz", NOW)


def test_a_missing_database_file_is_a_connection_error(tmp_path: Path) -> None:
    source = sqlite_source(tmp_path / "absent.db")

    with pytest.raises(SourceError, match="cannot open .*absent.db.* read-only") as err:
        source.query("SELECT 1 AS value", NOW)

    assert err.value.kind == "connection"
    assert not (tmp_path / "absent.db").exists()  # read-only: never created
    assert not source.health().up


def test_a_relative_sqlite_path_is_relative_to_the_working_directory(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(db.parent)
    source = SqlSource("labels-db", SqlOptions(dsn="sqlite:///ml.db"))
    assert source.query("SELECT count(*) AS value FROM labels", NOW).samples[0].value == 10


def test_unknown_parameters_and_second_statements_are_rejected_up_front(db: Path) -> None:
    source = sqlite_source(db)

    with pytest.raises(QueryError, match=r"unknown parameter :windw \(available: :window") as err:
        source.check_query("SELECT 1 AS value WHERE 1 > :windw")
    assert err.value.position == 28
    with pytest.raises(QueryError, match="only one SQL statement"):
        source.check_query("SELECT 1 AS value; DROP TABLE labels")
    source.check_query("SELECT 1 AS value; -- trailing comment")


def test_window_of_covers_the_window_and_the_label_delay_when_the_query_uses_them(db: Path) -> None:
    source = sqlite_source(db)

    assert source.window_of(ACCURACY) == 1.5 * HOUR
    assert source.window_of("SELECT 1 AS value WHERE :now_epoch - :label_delay > 0") == 0.5 * HOUR
    assert source.window_of("SELECT 1 AS value") == 0


def test_parameters_are_found_outside_literals_comments_and_casts() -> None:
    scanned = scan("SELECT x::int AS value, ':no', \"a:b\", $$ :no $$, arr[1:2] -- :no\n"
                   "FROM t WHERE ts > :now - :window * interval '1 second' AND s LIKE 'a%' /* :no */")

    assert [name for name, _ in scanned.names] == ["now", "window"]
    assert "%(now)s - %(window)s" in scanned.pyformat
    assert "LIKE 'a%%'" in scanned.pyformat and "x::int" in scanned.pyformat


@pytest.mark.parametrize("dsn, message", [
    ("mysql://db/ml", "dsn must start with postgresql:// or sqlite:///"),
    ("sqlite://relative.db", "three slashes"),
    ("sqlite:///", "needs a path"),
])
def test_bad_dsns_are_rejected_when_the_config_loads(dsn: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SqlSource("db", SqlOptions(dsn=dsn))


def test_a_password_in_the_dsn_is_masked_in_health_and_messages() -> None:
    source = SqlSource("db", SqlOptions(dsn="postgresql://watchdog:inline-secret-pw@127.0.0.1:1/ml", timeout=1.0))

    assert source.health().details["dsn"] == "postgresql://watchdog:***@127.0.0.1:1/ml"
    with pytest.raises(SourceError) as err:
        source.query("SELECT 1 AS value", NOW)
    assert "inline-secret-pw" not in str(err.value) and err.value.kind == "connection"
