"""The one HTTP transport: a urllib3 pool per origin, kept alive, every answer read bounded.

Used by the sources (`http.fetch`), the webhook client (`http.client`) and the actuators'
REST client (`http.rest`). `Transport.send` sends one request and reads its answer whole:

- one wall-clock deadline for connect, headers and body (`http.body.Deadline`);
- at most `max_body` bytes of body *after* decompression (gzip/deflate are decoded by
  `http.body`, never by urllib3), or its first `max_body` bytes with `truncate=True`;
- TLS verified by default (certifi's bundle, `ca_file`, or `REQUESTS_CA_BUNDLE` when the
  environment is trusted), redirects never followed (a 3xx is returned to the caller), no
  retries here (the callers retry with `watchdog.retrying`);
- `trust_env`: HTTP(S)_PROXY / NO_PROXY from the environment (not for scrapes, as Prometheus).

No `requests` on this path: a scrape through requests cost ~1.4 ms of CPU of which the
Session machinery (hooks, cookies, environment merging, adapters) was a large part.

Every failure is an `HttpFailure` whose `kind` is one of:

    timeout      no complete answer within the deadline
    too_large    a body over `max_body` after decompression
    connection   refused, reset, DNS, a connection that broke mid-body
    tls          certificate or handshake problems
    parse        an unknown or broken Content-Encoding
    http         anything else (an invalid URL, a body that cannot be encoded)

Its message never carries header values; URLs are shown redacted by the callers, and
`scrub` masks a URL's query and password and every registered secret in any text.
"""

from __future__ import annotations

import base64
import builtins
import json
import os
import re
import threading
import urllib.request
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import unquote, urlencode, urlsplit

import certifi
import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError, ProtocolError, SSLError, TimeoutError

from watchdog import __version__, redact
from watchdog.errors import WatchdogError
from watchdog.http import body
from watchdog.http.body import ACCEPT_ENCODING, MAX_BODY

EXCERPT = 200  # characters of a body shown in a message


class HttpFailure(WatchdogError):
    """One failed exchange, described for people (redacted); `kind` as in the module docstring."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind

    @property
    def transient(self) -> bool:
        """Worth another attempt: the network or the server's slowness, not the request."""
        return self.kind in ("timeout", "connection")


@dataclass(frozen=True)
class Fetched:
    """An answer read whole, within the limits: status, headers and the decompressed body."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes
    reason: str = ""


class Transport:
    """Connections to any number of origins, each kept alive in a small pool; thread-safe."""

    def __init__(self, *, verify: bool | str = True, cert: tuple[str, str] | None = None,
                 trust_env: bool = True, maxsize: int = 4):
        self.trust_env = trust_env
        if verify is False:
            tls: dict[str, Any] = {"cert_reqs": "CERT_NONE"}
        else:
            ca = verify if isinstance(verify, str) else _default_ca(trust_env)
            tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": ca}
        if cert is not None:
            tls["cert_file"], tls["key_file"] = cert
        self._pool_kwargs = {**tls, "maxsize": maxsize, "block": False, "retries": False}
        self._direct = self._manager(urllib3.PoolManager)
        self._proxies: dict[str, urllib3.ProxyManager] = {}
        self._lock = threading.Lock()
        if verify is False:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

    def _manager(self, cls: Any, *args: Any) -> Any:
        manager = cls(*args, num_pools=64, **self._pool_kwargs)
        manager.pool_classes_by_scheme = {"http": body.Pool, "https": body.TLSPool}
        return manager

    def _for(self, url: str) -> urllib3.PoolManager:
        if not self.trust_env:
            return self._direct
        parts = urlsplit(url)
        proxy = urllib.request.getproxies_environment().get(parts.scheme)
        if not proxy or urllib.request.proxy_bypass_environment(parts.hostname or ""):
            return self._direct
        with self._lock:
            manager = self._proxies.get(proxy)
            if manager is None:
                manager = self._proxies[proxy] = self._manager(urllib3.ProxyManager, proxy)
            return manager

    def send(self, method: str, url: str, *, timeout: float, headers: Mapping[str, str] | None = None,
             params: Mapping[str, str] | None = None, data: bytes | Mapping[str, str] | None = None,
             json_body: Any = None, auth: tuple[str, str] | None = None, max_body: int = MAX_BODY,
             excerpt_only: bool = False) -> Fetched:
        """One request and its whole answer within `timeout` seconds and `max_body` bytes.
        Raises HttpFailure.

        `excerpt_only` (deliveries, whose answer is only judged by its status): a 2xx body is
        not read, another is read up to `max_body` bytes, and a failure while reading it
        leaves the content empty instead of failing the exchange."""
        sent = {"User-Agent": f"model-watchdog/{__version__}", "Accept": "*/*",
                "Accept-Encoding": ACCEPT_ENCODING, **(headers or {})}
        try:
            payload = _payload(sent, data, json_body)
        except ValueError as exc:
            raise HttpFailure(f"the request body cannot be encoded: {exc}", "http") from None
        parts = urlsplit(url)
        if parts.username is not None:  # user:password@ in the URL is Basic auth, as requests does
            auth = auth or (unquote(parts.username), unquote(parts.password or ""))
            url = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
        if auth is not None:
            sent["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        if params:
            url = f"{url}{'&' if urlsplit(url).query else '?'}{urlencode(params)}"
        with body.Deadline(timeout) as deadline:
            try:
                response = self._for(url).urlopen(
                    method, url, body=payload, headers=sent, redirect=False, retries=False,
                    preload_content=False, decode_content=False, assert_same_host=False,
                    timeout=urllib3.Timeout(connect=timeout, read=timeout))
                content = self._content(response, max_body, deadline, excerpt_only)
            except body.BodyError as exc:
                kind = "timeout" if deadline.passed() else exc.kind
                raise HttpFailure(str(exc) if kind == exc.kind else _timed_out(timeout), kind) from None
            except (HTTPError, OSError) as exc:
                raise _failure(exc, url, timeout, deadline.passed()) from None
        return Fetched(response.status, response.headers, content, response.reason or "")

    @staticmethod
    def _content(response: urllib3.HTTPResponse, max_body: int, deadline: body.Deadline, excerpt_only: bool) -> bytes:
        if not excerpt_only:
            return body.read_all(response, max_body, deadline)
        if 200 <= response.status < 300:
            response.close()
            return b""
        try:
            return body.read_all(response, max_body, deadline, truncate=True)
        except body.BodyError:  # the body only decorates the message; its failure is not the news
            return b""

    def close(self) -> None:
        self._direct.clear()
        with self._lock:
            for manager in self._proxies.values():
                manager.clear()
            self._proxies.clear()


def _default_ca(trust_env: bool) -> str:
    if trust_env:  # what requests honoured, so deployments that set it keep working
        return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
    return certifi.where()


def _payload(headers: dict[str, str], data: bytes | Mapping[str, str] | None, json_body: Any) -> bytes | None:
    if json_body is not None:
        headers.setdefault("Content-Type", "application/json")
        return json.dumps(json_body, allow_nan=False).encode()
    if isinstance(data, Mapping):
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        return urlencode(data).encode()
    return data


def _timed_out(timeout: float) -> str:
    return f"timed out: no complete answer within {timeout:g}s"


def _failure(exc: BaseException, url: str, timeout: float, late: bool) -> HttpFailure:
    if late:  # whatever broke, the deadline's reaper broke it
        return HttpFailure(_timed_out(timeout), "timeout")
    if isinstance(exc, SSLError):
        return HttpFailure(f"TLS error: {reason(exc, url)}; if the server uses a private CA, "
                           "set ca_file to its PEM bundle", "tls")
    if isinstance(exc, NewConnectionError):  # a subclass of urllib3's TimeoutError: before it
        return HttpFailure(f"cannot connect: {reason(exc, url)}", "connection")
    if isinstance(exc, (TimeoutError, builtins.TimeoutError)):
        return HttpFailure(_timed_out(timeout), "timeout")
    if isinstance(exc, (ProtocolError, OSError)):
        return HttpFailure(f"cannot connect: {reason(exc, url)}", "connection")
    return HttpFailure(f"request failed: {reason(exc, url)}", "http")


_POOL_PREFIX = re.compile(r"^\w+\(host=[^)]*\):\s*|^<[^>]*>:\s*")


def reason(exc: BaseException, url: str) -> str:
    """The innermost cause of a urllib3/socket error, without the pool's URL-bearing wrapper."""
    current: BaseException = exc
    for _ in range(10):
        inner = getattr(current, "reason", None)
        if not isinstance(inner, BaseException) and current.args and isinstance(current.args[0], BaseException):
            inner = current.args[0]
        if not isinstance(inner, BaseException) or inner is current:
            break
        current = inner
    text = _POOL_PREFIX.sub("", str(current)) or type(current).__name__
    return scrub(text, url)


def scrub(text: str, url: str) -> str:
    """Mask the URL's query and password (often credentials) and every registered secret."""
    parts = urlsplit(url)
    for raw in (parts.query, parts.password):
        if raw and len(raw) >= 4:
            text = text.replace(raw, redact.MASK)
    return redact.redact(text)


def excerpt(raw: bytes, url: str = "") -> str:
    """The start of a body for a message: scrubbed and redacted before it is cut, so a cut
    cannot leave half a secret readable."""
    text = raw[:EXCERPT * 4].decode("utf-8", errors="replace")
    return redact.excerpt(scrub(text, url) if url else text, EXCERPT)
