"""What the state tests share: the stores under test, records to put in them, raw access.

`Backend` is one empty store of one engine, as a URL for `open_store` and a way in beside
the store (an operator's sqlite3 shell or psql), with the driver's own error type.
"""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from watchdog.state import Decision, HistoryEvent
from watchdog.state.decisions import DecisionContext

T0 = 1_700_000_000.0
ROOT = Path(__file__).resolve().parents[2]
#: databases written by earlier releases (see old_databases/make.py)
OLD_DATABASES = Path(__file__).resolve().parent / "old_databases"
ENGINES = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Backend:
    engine: str  # one of ENGINES
    url: str

    @property
    def refusal(self) -> type[Exception]:
        """What the driver raises when a trigger refuses a statement."""
        return sqlite3.DatabaseError if self.engine == "sqlite" else psycopg.errors.RaiseException

    def execute(self, script: str) -> None:
        """Run SQL statements on a connection of their own, committed at once."""
        if self.engine == "sqlite":
            conn = sqlite3.connect(self.url, isolation_level=None)
            try:
                conn.executescript(script)
            finally:
                conn.close()
            return
        with psycopg.connect(self.url, autocommit=True) as pg:
            pg.execute(script)  # without parameters, a script of several statements

    def load_old(self, schema_version: int) -> None:
        """Fill the empty store with the database an earlier release left behind."""
        self.execute((OLD_DATABASES / f"{self.engine}-v{schema_version}.sql").read_text())


def new_backend(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """An empty store: a file in `tmp_path`, or a new database on the session's PostgreSQL."""
    if engine == "sqlite":
        return Backend(engine, str(tmp_path / "state.db"))
    server = request.getfixturevalue("postgres")
    return Backend(engine, str(server.create_database(f"mw_{uuid.uuid4().hex[:16]}")))


def decision(id_: str, created_at: float = T0, status: str = "pending",
             target: str = "fraud") -> Decision:
    return Decision(id_, target, "p99-latency", "rollback", created_at, DecisionContext(severity="critical"), status)


def event(target: str, kind: str, at: float = T0, **data: object) -> HistoryEvent:
    return HistoryEvent(None, at, target, "p99", {"pod": "a"}, kind, f"{kind} happened", data)
