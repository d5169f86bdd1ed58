"""Rule values from SQL: PostgreSQL (psycopg 3, extra `postgresql`) and SQLite (standard library).

Accuracy is known only once labels arrive, minutes to days after the predictions, and it
lives in a database; so do many business metrics. A rule's `query` is one SELECT:

    SELECT model_version, avg((p.label = l.label)::int) AS value, count(*) AS samples
    FROM predictions p JOIN labels l USING (request_id)
    WHERE p.created_at >  :now - make_interval(secs => :window + :label_delay)
      AND p.created_at <= :now - make_interval(secs => :label_delay)
    GROUP BY model_version

- the column `value` is the value (NULL = no data); an optional column `samples` is the
  series' sample count (`QueryResult.counts`, used by `min_samples` without a second query);
  every other column is a label (stringified; NULL leaves the label out).
- named parameters: `:window` and `:label_delay` (seconds, float, from the source options),
  `:now` (PostgreSQL: timezone-aware `timestamptz`; SQLite: UTC text `YYYY-MM-DD HH:MM:SS`,
  comparable with `datetime()`), `:now_epoch` (float seconds), `:version` (the target's
  running version when the engine passes it through `query_with`, else NULL), `:target`
  (the target's name, likewise). Queries take no `{{placeholders}}`: values are bound,
  never pasted into the SQL text.
- every query runs in a read-only transaction with a statement timeout; a write fails with
  a QueryError. One connection per source, reopened after it is lost.
"""

from __future__ import annotations

import logging
import math
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from watchdog import redact
from watchdog.config.fields import option
from watchdog.errors import QueryError, SourceError
from watchdog.samples import Labels, Sample, labels_of
from watchdog.sources.base import QueryResult, Source, SourceHealth

log = logging.getLogger(__name__)

PARAMETERS = ("window", "label_delay", "now", "now_epoch", "version", "target")
MAX_ROWS = 10_000
VALUE, SAMPLES = "value", "samples"


@dataclass(frozen=True)
class SqlOptions:
    dsn: str = option(help="postgresql://user@host:5432/db (or libpq key=value), sqlite:///relative.db or "
                           "sqlite:////absolute/path.db")
    password: str | None = option(None, secret=True, help="PostgreSQL password; or password_file: PATH")
    timeout: float = option(10.0, duration=True, help="statement timeout of each query, also the connect timeout")
    window: float = option(3600.0, duration=True, help="the :window parameter, in seconds")
    label_delay: float = option(0.0, duration=True, help="the :label_delay parameter: how long labels take to arrive")
    retries: int = option(1, help="attempts after the first on a lost connection or timeout (within the tick)")
    backoff: float = option(0.5, duration=True, help="first pause between attempts; doubles each time")


# -- parameters -------------------------------------------------------------------------------------

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


@dataclass(frozen=True)
class Scanned:
    pyformat: str  # the query for psycopg: `:name` → `%(name)s`, every other `%` doubled
    names: tuple[tuple[str, int], ...]  # parameters used, with their 0-based positions


def scan(query: str) -> Scanned:
    """Find `:name` parameters outside string literals, quoted identifiers, comments and
    `::` casts. Raises QueryError for a second statement after `;` or an unterminated literal."""
    out: list[str] = []
    names: list[tuple[str, int]] = []
    i, n = 0, len(query)
    while i < n:
        c = query[i]
        end = _skip(query, i)
        if end > i:  # a literal or comment: copied, with % doubled for psycopg
            out.append(query[i:end].replace("%", "%%"))
            i = end
        elif query.startswith("::", i):
            out.append("::")
            i += 2
        elif c == ":" and (m := _IDENT.match(query, i + 1)) and not _word_before(query, i):
            names.append((m.group(0), i))
            out.append(f"%({m.group(0)})s")
            i = m.end()
        elif c == ";":
            rest = query[i + 1:]
            if _strip_comments(rest).strip():
                raise QueryError("only one SQL statement per query (found text after ';')", i)
            i = n
        else:
            out.append("%%" if c == "%" else c)
            i += 1
    return Scanned("".join(out), tuple(names))


def _word_before(query: str, i: int) -> bool:
    # `arr[lo:hi]` slices: a colon right after an identifier or ']' is not a parameter
    return i > 0 and (query[i - 1].isalnum() or query[i - 1] in "_]")


def _skip(query: str, i: int) -> int:
    """End of the literal, quoted identifier or comment starting at `i`; `i` if none starts there."""
    c = query[i]
    if c == "'":
        escapes = i > 0 and query[i - 1] in "eE" and (i < 2 or not (query[i - 2].isalnum() or query[i - 2] == "_"))
        return _close_quote(query, i, "'", escapes)
    if c == '"':
        return _close_quote(query, i, '"', False)
    if query.startswith("--", i):
        end = query.find("\n", i)
        return len(query) if end < 0 else end + 1
    if query.startswith("/*", i):
        depth, j = 0, i
        while j < len(query):
            if query.startswith("/*", j):
                depth, j = depth + 1, j + 2
            elif query.startswith("*/", j):
                depth, j = depth - 1, j + 2
                if depth == 0:
                    return j
            else:
                j += 1
        raise QueryError("unterminated /* comment", i)
    if c == "$" and not (i > 0 and (query[i - 1].isalnum() or query[i - 1] == "_")):
        m = _DOLLAR_TAG.match(query, i)
        if m:
            close = query.find(m.group(0), m.end())
            if close < 0:
                raise QueryError(f"unterminated dollar-quoted string {m.group(0)}", i)
            return close + len(m.group(0))
    return i


def _close_quote(query: str, i: int, quote_char: str, escapes: bool) -> int:
    j = i + 1
    while j < len(query):
        ch = query[j]
        if escapes and ch == "\\":
            j += 2
            continue
        if ch == quote_char:
            if query.startswith(quote_char * 2, j):
                j += 2
                continue
            return j + 1
        j += 1
    raise QueryError(f"unterminated {quote_char} quote", i)


def _strip_comments(text: str) -> str:
    return re.sub(r"--[^\n]*|/\*.*?\*/", "", text, flags=re.S)


# -- backends -----------------------------------------------------------------------------------

Rows = tuple[list[str], list[tuple[Any, ...]]]


class _Backend:
    where: str

    def run(self, scanned: Scanned, query: str, params: dict[str, Any], timeout: float) -> Rows:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _Postgres(_Backend):
    def __init__(self, dsn: str, password: str | None, timeout: float, source: str):
        try:
            import psycopg
        except ImportError as exc:
            raise ValueError(f"a postgresql dsn needs psycopg ({exc}); install it with: "
                             "pip install 'model-watchdog[postgresql]'") from None
        self.psycopg = psycopg
        self.dsn, self.password, self.connect_timeout = dsn, password, max(2, math.ceil(timeout))
        self.where = redact.redact_dsn(dsn)
        self.source = source
        self.conn: Any = None

    def _connect(self) -> Any:
        if self.conn is not None and not self.conn.closed and not self.conn.broken:
            return self.conn
        self.close()
        try:
            self.conn = self.psycopg.connect(self.dsn, password=self.password, connect_timeout=self.connect_timeout,
                                             application_name="model-watchdog", autocommit=False)
        except self.psycopg.Error as exc:
            raise SourceError(f"cannot connect to {self.where}: {_message(exc)}", "connection") from None
        return self.conn

    def run(self, scanned: Scanned, query: str, params: dict[str, Any], timeout: float) -> Rows:
        conn = self._connect()
        errors = self.psycopg.errors
        try:
            with conn.cursor() as cur:
                cur.execute("SET TRANSACTION READ ONLY")
                cur.execute(f"SET LOCAL statement_timeout = {max(1, int(timeout * 1000))}")
                cur.execute(scanned.pyformat, params)
                if cur.description is None:
                    raise QueryError(f"source {self.source}: the query returns no rows (is it a SELECT?)")
                columns = [d.name for d in cur.description]
                rows = cur.fetchmany(MAX_ROWS + 1)
            conn.rollback()
            return columns, rows
        except errors.QueryCanceled:
            self._end(conn)
            raise SourceError(f"query on {self.where} was cancelled by the statement timeout of {timeout:g}s",
                              "timeout") from None
        except errors.ReadOnlySqlTransaction as exc:
            self._end(conn)
            raise QueryError(f"source {self.source}: the query tries to write ({_message(exc)}); sql sources run "
                             "every query in a read-only transaction") from None
        except self.psycopg.OperationalError as exc:
            self.close()
            raise SourceError(f"lost the connection to {self.where}: {_message(exc)} (reconnecting on the next "
                              "query)", "connection") from None
        except (self.psycopg.ProgrammingError, self.psycopg.DataError) as exc:
            self._end(conn)
            raise _sql_query_error(self.source, exc) from None
        except self.psycopg.Error as exc:
            self._end(conn)
            raise SourceError(f"query on {self.where} failed: {_message(exc)}", "sql") from None
        except BaseException:
            self._end(conn)
            raise

    def _end(self, conn: Any) -> None:
        try:
            conn.rollback()
        except self.psycopg.Error:
            self.close()

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # closing a broken connection must not hide the error being reported
                pass
            self.conn = None


class _Sqlite(_Backend):
    def __init__(self, dsn: str, source: str):
        raw = dsn[len("sqlite:///"):].split("?", 1)[0]
        if not raw:
            raise ValueError("sqlite dsn needs a path: sqlite:///relative.db or sqlite:////absolute/path.db")
        self.path = Path(unquote(raw))
        self.where = f"sqlite:///{unquote(raw)}"
        self.source = source
        self.conn: sqlite3.Connection | None = None

    def _connect(self, timeout: float) -> sqlite3.Connection:
        if self.conn is None:
            path = self.path.resolve()
            try:
                conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=timeout,
                                       isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA query_only = ON")
            except sqlite3.Error as exc:
                raise SourceError(f"cannot open {self.where} ({path}) read-only: {exc}", "connection") from None
            self.conn = conn
        return self.conn

    def run(self, scanned: Scanned, query: str, params: dict[str, Any], timeout: float) -> Rows:
        conn = self._connect(timeout)
        deadline = time.monotonic() + timeout
        conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 1000)
        try:
            conn.execute("BEGIN")
            cur = conn.execute(query, params)
            if cur.description is None:
                raise QueryError(f"source {self.source}: the query returns no rows (is it a SELECT?)")
            columns = [d[0] for d in cur.description]
            return columns, cur.fetchmany(MAX_ROWS + 1)
        except sqlite3.Error as exc:
            raise self._error(exc, query, timeout) from None
        finally:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                conn.set_progress_handler(None, 0)
            except sqlite3.Error:
                self.close()

    def _error(self, exc: sqlite3.Error, query: str, timeout: float) -> Exception:
        text = str(exc)
        if text == "interrupted":
            return SourceError(f"query on {self.where} was stopped after the timeout of {timeout:g}s", "timeout")
        if "readonly" in text or "read-only" in text:
            return QueryError(f"source {self.source}: the query tries to write ({text}); sql sources run "
                              "every query read-only")
        if "locked" in text or "busy" in text:
            return SourceError(f"{self.where} is locked by a writer: {text}", "locked")
        if isinstance(exc, (sqlite3.ProgrammingError,)) or (
                isinstance(exc, sqlite3.OperationalError) and not text.startswith(("unable to open", "disk I/O"))):
            return QueryError(f"source {self.source}: SQL error: {text}")
        self.close()
        return SourceError(f"{self.where} failed: {text}", "connection")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _message(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return redact.redact(text[:300])


def _sql_query_error(source: str, exc: Any) -> QueryError:
    diag = getattr(exc, "diag", None)
    state = getattr(exc, "sqlstate", None)
    code = f" [SQLSTATE {state}]" if state else ""
    primary = getattr(diag, "message_primary", None) or _message(exc)
    return QueryError(f"source {source}: SQL error: {redact.redact(primary)}{code}")


# -- the source ---------------------------------------------------------------------------------


class SqlSource(Source):
    Options = SqlOptions
    # Text pasted into SQL is SQL: values go in bound parameters (:version), never in the text.
    placeholders = False

    def __init__(self, name: str, options: SqlOptions):
        super().__init__(name, options)
        if options.password:
            redact.register_secret(options.password)
        _register_dsn_password(options.dsn)
        if options.timeout <= 0:
            raise ValueError("timeout must be greater than 0")
        scheme = urlsplit(options.dsn).scheme if "://" in options.dsn else "postgresql"
        if scheme == "sqlite":
            if not options.dsn.startswith("sqlite:///"):
                raise ValueError("sqlite dsn must start with sqlite:/// (three slashes, then the path)")
            if options.password:
                raise ValueError("password is for PostgreSQL; SQLite has none")
            self.backend: _Backend = _Sqlite(options.dsn, name)
        elif scheme in ("postgresql", "postgres"):
            self.backend = _Postgres(options.dsn, options.password, options.timeout, name)
        else:
            raise ValueError(f"dsn must start with postgresql:// or sqlite:///, got {redact.redact_dsn(options.dsn)!r}")
        self._scanned: dict[str, Scanned] = {}
        self._lock = threading.Lock()
        self._last_success: float | None = None
        self._last_error = ""

    def _scan(self, query: str) -> Scanned:
        scanned = self._scanned.get(query)
        if scanned is None:
            if not query.strip():
                raise QueryError("empty SQL query")
            scanned = scan(query)
            for name, position in scanned.names:
                if name not in PARAMETERS:
                    raise QueryError(f"unknown parameter :{name} (available: "
                                     f"{', '.join(':' + p for p in PARAMETERS)})", position)
            self._scanned[query] = scanned
        return scanned

    def check_query(self, query: str) -> None:
        self._scan(query)

    def window_of(self, query: str) -> float:
        try:
            used = {name for name, _ in self._scan(query).names}
        except QueryError:
            return 0.0
        if "window" in used:
            return self.options.window + self.options.label_delay
        return self.options.label_delay if "label_delay" in used else 0.0

    def parameters(self, now: float, extra: dict[str, str] | None = None) -> dict[str, Any]:
        at = datetime.fromtimestamp(now, tz=timezone.utc)
        params: dict[str, Any] = {
            "window": float(self.options.window), "label_delay": float(self.options.label_delay),
            "now": at if isinstance(self.backend, _Postgres) else at.replace(tzinfo=None).isoformat(sep=" "),
            "now_epoch": float(now), "version": None, "target": None}
        for key, value in (extra or {}).items():
            if key not in PARAMETERS or key in ("now", "now_epoch"):
                raise QueryError(f"source {self.name}: parameter :{key} cannot be passed (allowed: version, target, "
                                 "window, label_delay)")
            params[key] = value
        return params

    def query(self, query: str, now: float) -> QueryResult:
        return self.query_with(query, now, None)

    def query_with(self, query: str, now: float, params: dict[str, str] | None) -> QueryResult:
        """Like `query`, with parameters the engine knows (`version`: the target's running version)."""
        scanned = self._scan(query)
        values = self.parameters(now, params)
        try:
            with self._lock:
                columns, rows = self.backend.run(scanned, query, values, self.options.timeout)
            result = self._result(columns, rows)
        except SourceError as exc:
            self._last_error = str(exc)
            raise
        self._last_success, self._last_error = now, ""
        return result

    def _result(self, columns: list[str], rows: list[tuple[Any, ...]]) -> QueryResult:
        lower = [c.lower() for c in columns]
        if VALUE not in lower:
            raise QueryError(f"source {self.name}: the query returns the columns {', '.join(columns) or 'none'} "
                             "but none named 'value' (write SELECT … AS value)")
        duplicated = sorted({c for c in lower if lower.count(c) > 1})
        if duplicated:
            raise QueryError(f"source {self.name}: the query returns the column(s) {', '.join(duplicated)} more than once")
        if len(rows) > MAX_ROWS:
            raise QueryError(f"source {self.name}: the query returns more than {MAX_ROWS} rows; aggregate it")
        vi = lower.index(VALUE)
        si = lower.index(SAMPLES) if SAMPLES in lower else None
        label_columns = [(i, c) for i, c in enumerate(columns) if i not in (vi, si)]
        samples: list[Sample] = []
        counts: dict[Labels, float] = {}
        seen: dict[Labels, int] = {}
        for number, row in enumerate(rows, 1):
            labels = labels_of({c: _label(row[i]) for i, c in label_columns if row[i] is not None})
            if labels in seen:
                raise QueryError(f"source {self.name}: rows {seen[labels]} and {number} have the same labels "
                                 f"{dict(labels)}; GROUP BY the label columns")
            seen[labels] = number
            samples.append(Sample(labels, self._number(row[vi], columns[vi], number)))
            if si is not None:
                raw = row[si]
                counts[labels] = 0.0 if raw is None else self._number(raw, columns[si], number)
        return QueryResult(samples, counts=counts if si is not None else None)

    def _number(self, raw: Any, column: str, row: int) -> float:
        if raw is None:
            return math.nan
        if isinstance(raw, (int, float, Decimal)):  # bool is an int
            return float(raw)
        raise QueryError(f"source {self.name}: column {column} of row {row} is {type(raw).__name__} "
                         f"{str(raw)[:40]!r}, not a number; cast it (e.g. CAST(x AS double precision))")

    def health(self) -> SourceHealth:
        return SourceHealth(up=not self._last_error, last_success=self._last_success, last_error=self._last_error,
                            details={"dsn": self.backend.where})

    def close(self) -> None:
        with self._lock:
            self.backend.close()


def _label(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _register_dsn_password(dsn: str) -> None:
    if "://" in dsn:
        try:
            password = urlsplit(dsn).password
        except ValueError:
            password = None
        if password:
            redact.register_secret(password)
            redact.register_secret(unquote(password))
    for m in re.finditer(r"\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|[^\s&]+)", dsn, re.I):
        redact.register_secret(m.group(1).strip("'"))
