"""Durable state: rule states, holds, versions, the action journal and the audit history.

`StateStore` is every part at once; `RuleStates`, `Holds`, `Versions`, `Journal`, `History`,
`Releases`, `Replicas`, `Incidents`, `AlertQueue` and `Meta` are the parts (base.py).

`open_store(url_or_path)` picks the implementation:

    /var/lib/model-watchdog/state.db     SQLite file (relative paths are relative to the cwd)
    sqlite:///relative/state.db          SQLite, SQLAlchemy-style URL (relative path)
    sqlite:////var/lib/mw/state.db       SQLite, absolute path (four slashes)
    postgresql://user@host/db            PostgreSQL, shared by replicas (docs/replicas.md);
                                         needs `pip install 'model-watchdog[postgresql]'`
"""

from __future__ import annotations

from watchdog.errors import StateError
from watchdog.state.base import (
    DECISION_STATUSES,
    STEP_STATUSES,
    AlertQueue,
    Decision,
    History,
    HistoryEvent,
    Hold,
    Holds,
    Incidents,
    Journal,
    Meta,
    Releases,
    Replica,
    Replicas,
    RuleStateKey,
    RuleStates,
    StateStore,
    Step,
    TargetLocks,
    VersionRecord,
    Versions,
)
from watchdog.state.sqlite import SQLiteStateStore

__all__ = [
    "DECISION_STATUSES",
    "STEP_STATUSES",
    "AlertQueue",
    "Decision",
    "History",
    "HistoryEvent",
    "Hold",
    "Holds",
    "Incidents",
    "Journal",
    "Meta",
    "Releases",
    "Replica",
    "Replicas",
    "RuleStateKey",
    "RuleStates",
    "SQLiteStateStore",
    "StateStore",
    "Step",
    "TargetLocks",
    "VersionRecord",
    "Versions",
    "open_store",
]

_SQLITE_PREFIX = "sqlite:///"
_POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+")


def open_store(url_or_path: str) -> StateStore:
    """Open the state store named by a URL or a plain SQLite file path; raises StateError."""
    if url_or_path.startswith(_POSTGRES_SCHEMES):
        return _open_postgres(url_or_path)
    path = url_or_path
    if path.startswith(_SQLITE_PREFIX):
        path = path[len(_SQLITE_PREFIX):]
    elif "://" in path:
        # Name only the scheme: the rest of a URL may hold a password.
        scheme = path.split("://", 1)[0]
        raise StateError(
            f"unknown state store URL scheme {scheme!r}; "
            "use a file path, sqlite:///path or postgresql://"
        )
    if not path:
        raise StateError("the state store path is empty; set it to a SQLite file path")
    return SQLiteStateStore(path)


def _open_postgres(url: str) -> StateStore:
    try:
        from watchdog.state.postgres import PostgresStateStore
    except ImportError as exc:
        if not (exc.name or "").startswith("psycopg"):
            raise
        raise StateError(
            "PostgreSQL state needs the psycopg driver: pip install 'model-watchdog[postgresql]'"
        ) from None
    return PostgresStateStore(url)
