"""Ask a Prometheus server (or anything speaking its HTTP API: Thanos, Mimir, VictoriaMetrics).

Each rule query is an instant query, `GET /api/v1/query?query=…&time=<tick>`, evaluated by
the server, so the full PromQL language is available (not only the subset of `scrape`). A
query longer than 2000 characters is sent as a form-encoded POST instead.

What comes back is mapped as follows (the API's documented shapes and error types):

    vector                 one Sample per series; "NaN"/"+Inf"/"-Inf" values are kept as floats
                           (NaN is judged as no data)
    scalar                 one unlabelled Sample
    matrix, string         QueryError: a rule needs an instant vector or a scalar
    error bad_data (400)   QueryError with Prometheus' own message
    other errors           SourceError, kind = the errorType (execution, timeout, canceled,
                           internal, not_found, not_acceptable, unavailable)
    non-JSON / HTML        SourceError http_4xx/http_5xx or parse (a proxy's page, a login page)
    warnings               logged, and carried in QueryResult.note
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode


from watchdog import redact
from watchdog.config.fields import option
from watchdog.durations import parse_duration
from watchdog.errors import QueryError, SourceError
from watchdog.http.client import HttpOptions, check_options
from watchdog.samples import Sample, labels_of
from watchdog.http import fetch as httpfetch
from watchdog.sources import jsonlimits
from watchdog.sources.base import QueryResult, Source, SourceHealth

log = logging.getLogger(__name__)

API_PATH = "/api/v1/query"
SERIES_LIMIT = 10_000
SAMPLE_LIMIT = 500_000
LONG_QUERY = 2000  # characters of encoded parameters above which the query is POSTed
_KNOWN_ERRORS = ("execution", "timeout", "canceled", "internal", "not_found", "not_acceptable", "unavailable")
_HINTS = {
    "timeout": "the query ran longer than Prometheus allows; make it cheaper or raise the server's --query.timeout",
    "execution": "the query failed while running (e.g. many-to-many matching, too many samples)",
    "not_found": "check url: it must be Prometheus' base URL, e.g. http://prometheus:9090",
    "unavailable": "Prometheus is starting up or its storage is not ready",
    "canceled": "the query was cancelled (server shutting down or client gone)",
}


@dataclass(frozen=True)
class BasicAuth:
    username: str = option(help="user name")
    password: str = option(secret=True, help="password; or password_file: PATH")


@dataclass(frozen=True)
class PrometheusOptions(HttpOptions):
    url: str = option(help="Prometheus base URL, e.g. http://prometheus:9090 (the API path is added)")
    timeout: float = option(10.0, duration=True, help="per query; also sent to Prometheus as the query's timeout")
    retries: int = option(2, help="attempts after the first on timeouts, network errors and 5xx (within the tick)")
    backoff: float = option(0.5, duration=True, help="first pause between attempts; doubles each time")
    bearer_token: str | None = option(None, secret=True, help="sent as Authorization: Bearer; or bearer_token_file: PATH")
    basic_auth: BasicAuth | None = option(None, help="{username, password or password_file}")
    max_body: int = option(httpfetch.MAX_BODY, size=True,
                           help="largest answer accepted, after decompression (e.g. 32MiB); a larger one is no data")
    series_limit: int = option(SERIES_LIMIT, help="most series one answer may have (0: no limit); an answer with "
                               "more is no data, counted before it is decoded")
    sample_limit: int = option(SAMPLE_LIMIT, help="most samples one answer may have (0: no limit): one per series "
                               "of an instant query, one per step and series of a query_range (backtest)")


class PrometheusSource(Source):
    Options = PrometheusOptions
    #: instant queries are independent HTTP requests; the runner may run this many at once
    max_concurrency = 4

    def __init__(self, name: str, options: PrometheusOptions):
        check_options(options)
        if options.max_body <= 0:
            raise ValueError("max_body must be greater than 0")
        for key in ("series_limit", "sample_limit"):
            if getattr(options, key) < 0:
                raise ValueError(f"{key} must not be negative (0: no limit)")
        basic = options.basic_auth
        httpfetch.check_auth(options.headers, options.bearer_token, basic is not None)
        if basic is not None:
            redact.register_secret(basic.password)
        super().__init__(name, options)
        base = options.url.rstrip("/")
        self.endpoint = base if base.endswith(API_PATH) else base + API_PATH
        self.where = redact.redact_url(self.endpoint)
        self._headers = {"Accept": "application/json",
                         **httpfetch.auth_headers(options.headers, options.bearer_token)}
        self._auth = (basic.username, basic.password) if basic is not None else None
        self._caps = jsonlimits.PrometheusCaps(options.series_limit, options.sample_limit)
        self._session: httpfetch.Transport | None = None
        self._windows: dict[str, float] = {}  # window_of() by query: the configuration's, so bounded
        self._last_success: float | None = None
        self._last_error = ""

    # -- validation ---------------------------------------------------------------------------------

    def check_query(self, query: str) -> None:
        # Full PromQL is evaluated by the server; anything our subset parser does not know
        # (offset, subqueries, topk, …) is still fine, so only an empty query is rejected here.
        if not query.strip():
            raise QueryError("empty PromQL query")

    def window_of(self, query: str) -> float:
        # Fleet rules repeat one query for every target: parsed once each (10,000 rules, 10
        # queries: 2.45 → 0.14 s CPU at start, most of it building the grammar), not once per rule.
        window = self._windows.get(query)
        if window is None:
            window = self._windows[query] = _window_of(query)
        return window

    # -- queries ----------------------------------------------------------------------------------

    def query(self, query: str, now: float) -> QueryResult:
        try:
            response = self._send(query, now)
            result = self._result(response, query)
        except SourceError as exc:
            self._last_error = str(exc)
            raise
        self._last_success = now
        self._last_error = ""
        return result

    def _send(self, query: str, now: float) -> httpfetch.Fetched:
        params = {"query": query, "time": f"{now:.3f}", "timeout": f"{self.options.timeout:g}"}  # seconds
        kwargs: dict[str, Any] = {"headers": self._headers, "auth": self._auth}
        if len(urlencode(params)) > LONG_QUERY:
            method, kwargs["data"] = "POST", params
        else:
            method, kwargs["params"] = "GET", params
        return httpfetch.request(self._http(), method, self.endpoint, timeout=self.options.timeout,
                                 max_body=self.options.max_body, what=f"Prometheus query {method}", **kwargs)

    def query_range(self, query: str, start: float, end: float, step: float) -> dict[int, list[Sample]]:
        """Evaluate `query` at start, start + step, … ≤ end with one `/api/v1/query_range`
        request (what `query` would answer at each of those instants; `watchdog.commands.backtest`).
        Returns the samples by instant in milliseconds; an instant without any series is absent."""
        params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:.3f}",
                  "timeout": f"{self.options.timeout:g}"}
        endpoint = self.endpoint[: -len(API_PATH)] + API_PATH + "_range"
        response = httpfetch.request(self._http(), "POST", endpoint, timeout=self.options.timeout,
                                     max_body=self.options.max_body, what="Prometheus query_range POST",
                                     headers=self._headers, auth=self._auth, data=params)
        if httpfetch.is_html(response):
            raise httpfetch.html_error(response, self.where, "a Prometheus API answer")
        doc = self._decode(response)
        if not isinstance(doc, dict) or doc.get("status") != "success":
            if isinstance(doc, dict) and doc.get("status") == "error":
                raise self._api_error(doc, response.status_code)
            raise self._http_error(response)
        data = doc.get("data")
        if not isinstance(data, dict) or data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
            raise SourceError(f"{self.where} answered query_range without a matrix", "parse")
        out: dict[int, list[Sample]] = {}
        for item in data["result"]:
            if not isinstance(item, dict) or not isinstance(item.get("metric", {}), dict):
                raise SourceError(f"{self.where} answered a matrix element that is not {{metric, values}}", "parse")
            labels = labels_of(item.get("metric") or {})
            for pair in item.get("values") or []:
                if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], (int, float)):
                    raise SourceError(f"{self.where} answered a point that is not [time, value]: {_short(repr(pair))}",
                                      "parse")
                out.setdefault(round(pair[0] * 1000), []).append(Sample(labels, self._value(pair)))
        return out

    def targets_api(self) -> httpfetch.Fetched:
        """`GET /api/v1/targets?state=active` with this source's auth and limits (`align_ticks`)."""
        return httpfetch.request(self._http(), "GET", self.endpoint[: -len(API_PATH)] + "/api/v1/targets",
                                 timeout=self.options.timeout, max_body=self.options.max_body, what="Prometheus targets GET",
                                 headers=self._headers, auth=self._auth, params={"state": "active"})

    def _result(self, response: httpfetch.Fetched, query: str) -> QueryResult:
        status = response.status_code
        if httpfetch.is_html(response):
            raise httpfetch.html_error(response, self.where, "a Prometheus API answer")
        try:
            doc = self._decode(response)
        except SourceError as exc:
            if status >= 300 and exc.kind == "parse":
                raise self._http_error(response) from None
            raise
        if not isinstance(doc, dict) or doc.get("status") not in ("success", "error"):
            if status >= 300:
                raise self._http_error(response)
            raise SourceError(f"{self.where} answered JSON that is not a Prometheus API response "
                              f"(no \"status\"){httpfetch.body_hint(response)}", "parse")
        if doc["status"] == "error":
            raise self._api_error(doc, status)
        warnings = [str(w) for w in doc.get("warnings") or []]
        for warning in warnings:
            log.warning("source %s: Prometheus warns about %r: %s", self.name, _short(query), redact.redact(warning))
        samples = self._samples(doc.get("data"), query)
        note = f"Prometheus warnings: {'; '.join(warnings)}" if warnings else ""
        return QueryResult(samples=samples, note=redact.redact(note))

    def _decode(self, response: httpfetch.Fetched) -> Any:
        """The answer as JSON, once it is known to be within series_limit and sample_limit."""
        return jsonlimits.load_prometheus(response, self.where, self._caps)

    def _samples(self, data: Any, query: str) -> list[Sample]:
        if not isinstance(data, dict) or "resultType" not in data:
            raise SourceError(f"{self.where} answered success without data.resultType", "parse")
        kind, result = data.get("resultType"), data.get("result")
        if kind == "vector" and isinstance(result, list):
            return [self._vector_sample(item) for item in result]
        if kind == "scalar":
            return [Sample((), self._value(result))]
        if kind == "matrix":
            raise QueryError(f"source {self.name}: query {_short(query)!r} returns a range vector (matrix); a rule "
                             "needs an instant vector: wrap the range in a function, e.g. rate(x[5m])")
        if kind == "string":
            raise QueryError(f"source {self.name}: query {_short(query)!r} returns a string result, not a number")
        raise SourceError(f"{self.where} answered an unknown result type {kind!r}", "parse")

    def _vector_sample(self, item: Any) -> Sample:
        if not isinstance(item, dict) or not isinstance(item.get("metric", {}), dict):
            raise SourceError(f"{self.where} answered a vector element that is not {{metric, value}}: "
                              f"{_short(repr(item))}", "parse")
        if "value" not in item and "histogram" in item:
            raise QueryError(f"source {self.name}: the query returns native histogram samples; "
                             "wrap it in histogram_quantile(), histogram_count() or similar")
        return Sample(labels_of(item.get("metric") or {}), self._value(item.get("value")))

    def _value(self, pair: Any) -> float:
        if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], str):
            try:
                return float(pair[1])  # accepts "NaN", "+Inf", "-Inf"
            except ValueError:
                pass
        raise SourceError(f"{self.where} answered a sample that is not [timestamp, \"number\"]: "
                          f"{_short(repr(pair))}", "parse")

    def _api_error(self, doc: dict[str, Any], status: int) -> Exception:
        error_type = str(doc.get("errorType") or "")
        text = redact.redact(_short(str(doc.get("error") or "no error message"), 500))
        if error_type == "bad_data":
            return QueryError(f"source {self.name}: Prometheus rejected the query: {text}")
        kind = error_type if error_type in _KNOWN_ERRORS else "error"
        hint = f" ({_HINTS[kind]})" if kind in _HINTS else ""
        return SourceError(f"{self.where} answered HTTP {status}, error {error_type or '?'}: {text}{hint}", kind)

    def _http_error(self, response: httpfetch.Fetched) -> SourceError:
        status = response.status_code
        hint = " (check bearer_token, basic_auth or headers)" if status in (401, 403) else ""
        return SourceError(f"{self.where} answered HTTP {status}{httpfetch.body_hint(response)}{hint}",
                           httpfetch.status_kind(status))

    def _http(self) -> httpfetch.Transport:
        if self._session is None:
            self._session = httpfetch.make_session(self.options.verify_tls, self.options.ca_file)
        return self._session

    def health(self) -> SourceHealth:
        return SourceHealth(up=not self._last_error, last_success=self._last_success, last_error=self._last_error,
                            details={"url": redact.redact_url(self.options.url)})

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_RANGE = re.compile(r"\[\s*([0-9][0-9a-z.]*)\s*(?::\s*[0-9a-z.]*\s*)?\]")
_OFFSET = re.compile(r"\boffset\s+([0-9][0-9a-z.]*)", re.I)


def _window_of(query: str) -> float:
    from watchdog.promql import parse  # the subset parser knows most queries exactly

    try:
        return parse(query).max_range()
    except QueryError:
        return _scan_window(query)


def _scan_window(query: str) -> float:
    """Longest range plus longest offset, for PromQL our subset parser does not handle."""
    text = _STRINGS.sub('""', query)
    return _longest(_RANGE, text) + _longest(_OFFSET, text)


def _longest(pattern: re.Pattern[str], text: str) -> float:
    best = 0.0
    for m in pattern.finditer(text):
        raw = m.group(1)
        years = re.fullmatch(r"(\d+)y(.*)", raw)
        try:
            seconds = (int(years.group(1)) * 365 * 86400 + (parse_duration(years.group(2)) if years.group(2) else 0)
                       if years else parse_duration(raw))
        except ValueError:
            continue
        best = max(best, seconds)
    return best


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"
