"""A simulated model server: Prometheus `/metrics`, a control API and a rollback webhook.

It stands in for a real model deployment in `model-watchdog demo` and in end-to-end tests that
start the real daemon against it. A background ticker adds `rps * 0.1` requests every 0.1 s.
Errors and latency buckets are apportioned deterministically (every running total stays within
one request of its exact share) rather than sampled, so a rule on the error ratio is never
borderline; the seeded random generator only spreads latencies inside their bucket (for
`_sum`), jitters accuracy by ±0.002 and writes the `garbage` body.

Endpoints (JSON unless noted):
  GET  /metrics     Prometheus text 0.0.4, or a fault, depending on the mode
  GET  /control     {"mode", "version", "previous_versions", "rollback_delay"}
  POST /control     {"mode"?, "rollback_delay"?, "reset_counters"?} -> same as GET /control
  POST /rollback    (or PUT) webhook actuator call (`decision_id`, `previous_version`, header
                    `Idempotency-Key`); the first call per key switches version, repeats are no-ops
  GET  /rollbacks   [{"idempotency_key", "body", "effective", "at"}]
  POST /deploy      {"version"} -> new version, mode healthy

Modes: `healthy` (1 % errors) and `degraded` (20 % errors, or `--degraded-error-percent`) are
traffic profiles. `down`, `html`, `garbage` and `slow` break
only `/metrics`; traffic keeps the last profile, as a scrape outage does not heal a model.
`nan` reports accuracy NaN and freezes the request counters, so rates become 0/0.
"""

from __future__ import annotations

import argparse
import enum
import json
import math
import random
import signal
import string
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from watchdog.errors import WatchdogError
from watchdog.clock import SystemClock, rfc3339

__all__ = ["Mode", "SimulatedModelServer", "main"]

TICK_SECONDS = 0.1
SLOW_SECONDS = 10.0
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, math.inf)


class Mode(enum.StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    DOWN = "down"
    HTML = "html"
    GARBAGE = "garbage"
    NAN = "nan"
    SLOW = "slow"


@dataclass(frozen=True)
class TrafficProfile:
    error_fraction: Fraction
    accuracy: float
    # Share of requests per bucket of BUCKETS (same index, non-cumulative); sums to 1.
    latency_shares: tuple[Fraction, ...]


def _latency_shares(by_upper_bound: Mapping[float, str]) -> tuple[Fraction, ...]:
    shares = tuple(Fraction(by_upper_bound.get(bound, "0")) for bound in BUCKETS)
    assert sum(shares) == 1, by_upper_bound
    return shares


PROFILES: dict[Mode, TrafficProfile] = {
    # Mostly 20–80 ms; histogram_quantile(0.99) ≈ 0.099 s, far below a 0.2 s threshold.
    Mode.HEALTHY: TrafficProfile(
        error_fraction=Fraction(1, 100),
        accuracy=0.95,
        latency_shares=_latency_shares({0.025: "0.10", 0.05: "0.45", 0.1: "0.445", 0.25: "0.005"}),
    ),
    # histogram_quantile(0.99) = 0.5 + (0.99 - 0.975) / 0.025 * 0.5 = 0.8 s.
    Mode.DEGRADED: TrafficProfile(
        error_fraction=Fraction(20, 100),
        accuracy=0.80,
        latency_shares=_latency_shares(
            {0.05: "0.10", 0.1: "0.20", 0.25: "0.35", 0.5: "0.325", 1.0: "0.025"}
        ),
    ),
}


class _Apportioner:
    """Hands out requests one by one to the category furthest behind its share.

    Sampling would let a 1% error ratio wander by ±0.3% over a few seconds; this keeps every
    running total within one request of exact, and counts only ever grow (unlike re-rounding
    cumulative totals, which can take a request back).
    """

    def __init__(self, shares: Sequence[Fraction]):
        denominator = math.lcm(*(share.denominator for share in shares))
        self._denominator = denominator
        self._weights = [int(share * denominator) for share in shares]
        self._given = [0] * len(shares)
        self._total = 0

    def split(self, n: int) -> list[int]:
        counts = [0] * len(self._weights)
        for _ in range(n):
            self._total += 1
            index = max(range(len(self._weights)), key=self._deficit)
            self._given[index] += 1
            counts[index] += 1
        return counts

    def _deficit(self, index: int) -> int:
        return self._total * self._weights[index] - self._given[index] * self._denominator


@dataclass(frozen=True)
class _Snapshot:
    version: str
    ok: int
    errors: int
    bucket_counts: tuple[int, ...]
    latency_sum: float
    accuracy: float


class _Traffic:
    """Cumulative request counters; they only grow, except on an explicit reset."""

    def __init__(self, rng: random.Random):
        self._rng = rng
        self._profile = PROFILES[Mode.HEALTHY]
        self._start_profile(self._profile)
        self.reset()

    def reset(self) -> None:
        self.ok = 0
        self.errors = 0
        self.bucket_counts = [0] * len(BUCKETS)
        self.latency_sum = 0.0

    def add(self, n: int, profile: TrafficProfile) -> None:
        if profile is not self._profile:
            self._start_profile(profile)
        ok, errors = self._outcomes.split(n)
        self.ok += ok
        self.errors += errors
        for index, count in enumerate(self._latencies.split(n)):
            self.bucket_counts[index] += count
            low, high = _bucket_band(index)
            self.latency_sum += sum(self._rng.uniform(low, high) for _ in range(count))

    def _start_profile(self, profile: TrafficProfile) -> None:
        self._profile = profile
        self._outcomes = _Apportioner((1 - profile.error_fraction, profile.error_fraction))
        self._latencies = _Apportioner(profile.latency_shares)


def _bucket_band(index: int) -> tuple[float, float]:
    low = BUCKETS[index - 1] if index else 0.001
    high = BUCKETS[index] if math.isfinite(BUCKETS[index]) else 2 * low
    return low, high


class _ModelCollector:
    """Builds every family itself, so nothing (such as `_created` series) appears unasked."""

    def __init__(self, snapshot: Callable[[], _Snapshot]):
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self._snapshot()
        requests = CounterMetricFamily("requests_total", "Requests served, by outcome.", labels=["status"])
        requests.add_metric(["ok"], s.ok)
        requests.add_metric(["error"], s.errors)
        yield requests
        cumulative = [sum(s.bucket_counts[: i + 1]) for i in range(len(BUCKETS))]
        buckets = [(floatToGoString(b), float(c)) for b, c in zip(BUCKETS, cumulative)]
        yield HistogramMetricFamily(
            "request_latency_seconds", "Request latency.", buckets=buckets, sum_value=s.latency_sum
        )
        yield GaugeMetricFamily("model_accuracy", "Online accuracy of the model.", value=s.accuracy)
        info = GaugeMetricFamily("model_info", "The model version being served.", labels=["version"])
        info.add_metric([s.version], 1)
        yield info


class ClientError(WatchdogError):
    """A request the server refuses; carries the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


_CONTROL_KEYS = ("mode", "rollback_delay", "reset_counters")
# No '{' or '#' (they change how a parser reads a line) and every line starts with '%',
# which no metric name may, so no Prometheus parser can accept the body by luck.
_GARBAGE_ALPHABET = string.ascii_letters + string.digits + " !$%&()*+-./:;<=>?@[]^_|~"
_HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head>\n"
    b"<body><h1>Service Unavailable</h1><p>upstream model server is not ready</p></body></html>\n"
)


class SimulatedModelServer:
    """A controllable stand-in for a model server; see the module docstring for the API."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        version: str = "v2",
        previous_versions: Sequence[str] = ("v1",),
        rps: float = 200.0,
        seed: int = 0,
        mode: Mode | str = Mode.HEALTHY,
        degraded_error_percent: float | None = None,
    ):
        # The demo degrades to 20 % errors; issue 13's standard latency scenario uses 30 %, and
        # how far above a rule's threshold the errors go decides how soon a rate crosses it.
        self._profiles = dict(PROFILES)
        if degraded_error_percent is not None:
            if not 0 <= degraded_error_percent <= 100:
                raise ValueError(f"degraded_error_percent must be within 0..100, got {degraded_error_percent!r}")
            self._profiles[Mode.DEGRADED] = replace(
                PROFILES[Mode.DEGRADED], error_fraction=Fraction(str(degraded_error_percent)) / 100
            )
        self._host = host
        self._port = port
        self._per_tick = Fraction(str(rps)) * Fraction(str(TICK_SECONDS))
        self._pending = Fraction(0)
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        # A separate generator so scrapes in `garbage` mode do not shift the traffic sequence.
        self._garbage_rng = random.Random(seed + 1)
        self._clock = SystemClock()
        self._traffic = _Traffic(self._rng)
        self._version = version
        self._previous_versions = list(previous_versions)
        self._mode = Mode.HEALTHY
        self._profile_mode = Mode.HEALTHY
        self._accuracy = PROFILES[Mode.HEALTHY].accuracy
        self._rollback_delay = 0.0
        self._rollbacks: list[dict[str, Any]] = []
        self._seen_keys: set[str] = set()
        self._registry = CollectorRegistry()
        self._registry.register(_ModelCollector(self._snapshot))
        self._stopping = threading.Event()
        self._httpd: _HttpServer | None = None
        self._threads: list[threading.Thread] = []
        self.set_mode(mode)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> SimulatedModelServer:
        if self._httpd is not None or self._stopping.is_set():
            raise RuntimeError("SimulatedModelServer starts once; create a new one to start again")
        self._httpd = _HttpServer((self._host, self._port), _Handler)
        self._httpd.model = self
        self._threads = [
            threading.Thread(
                target=self._httpd.serve_forever, args=(0.1,), name="model-server-http", daemon=True
            ),
            threading.Thread(target=self._run_ticker, name="model-server-traffic", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; safe to call twice. Wakes up `slow` and delayed rollback answers."""
        self._stopping.set()
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> SimulatedModelServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("SimulatedModelServer is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        # A wildcard bind is reachable on loopback; clients cannot connect to 0.0.0.0 itself.
        host = "127.0.0.1" if self._host in ("", "0.0.0.0") else self._host
        return f"http://{host}:{self.port}"

    # -- simulation ------------------------------------------------------------------------

    def _run_ticker(self) -> None:
        while not self._stopping.wait(TICK_SECONDS):
            self.tick()

    def tick(self) -> None:
        """Advance the simulated traffic by one 0.1 s step (the ticker calls this)."""
        with self._lock:
            self._pending += self._per_tick
            n = int(self._pending)
            self._pending -= n
            if self._mode is Mode.NAN:
                return  # the model stopped answering: counters freeze
            profile = self._profiles[self._profile_mode]
            self._traffic.add(n, profile)
            self._accuracy = profile.accuracy + self._rng.uniform(-0.002, 0.002)

    def _snapshot(self) -> _Snapshot:
        with self._lock:
            return _Snapshot(
                version=self._version,
                ok=self._traffic.ok,
                errors=self._traffic.errors,
                bucket_counts=tuple(self._traffic.bucket_counts),
                latency_sum=self._traffic.latency_sum,
                accuracy=math.nan if self._mode is Mode.NAN else self._accuracy,
            )

    def metrics_text(self) -> bytes:
        """The healthy `/metrics` body, whatever the mode."""
        return generate_latest(self._registry)

    def garbage_text(self) -> bytes:
        with self._lock:
            rng = self._garbage_rng
            lines = [
                "%" + "".join(rng.choice(_GARBAGE_ALPHABET) for _ in range(rng.randint(10, 60)))
                for _ in range(rng.randint(3, 8))
            ]
        return ("\n".join(lines) + "\n").encode()

    # -- control ---------------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def version(self) -> str:
        return self._version

    def set_mode(self, mode: Mode | str) -> None:
        parsed = _parse_mode(mode)
        with self._lock:
            self._set_mode_locked(parsed)

    def _set_mode_locked(self, mode: Mode) -> None:
        self._mode = mode
        if mode in self._profiles:
            self._profile_mode = mode
            # The gauge follows the profile at once (the traffic counters follow tick by tick).
            self._accuracy = self._profiles[mode].accuracy

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "mode": str(self._mode),
                "version": self._version,
                "previous_versions": list(self._previous_versions),
                "rollback_delay": self._rollback_delay,
            }

    def control(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a `POST /control` body; validates everything before changing anything."""
        unknown = sorted(set(body) - set(_CONTROL_KEYS))
        if unknown:
            raise ClientError(400, f"unknown control key(s) {unknown}; allowed: {list(_CONTROL_KEYS)}")
        mode = _parse_mode(body["mode"]) if "mode" in body else None
        delay = _parse_delay(body["rollback_delay"]) if "rollback_delay" in body else None
        reset = body.get("reset_counters", False)
        if not isinstance(reset, bool):
            raise ClientError(400, "reset_counters must be true or false")
        with self._lock:
            if mode is not None:
                self._set_mode_locked(mode)
            if delay is not None:
                self._rollback_delay = delay
            if reset:
                # What a restarted process looks like to a scraper: counters back at zero.
                self._traffic.reset()
        return self.status()

    def deploy(self, version: str) -> dict[str, Any]:
        if not isinstance(version, str) or not version:
            raise ClientError(400, 'deploy needs {"version": "<non-empty string>"}')
        with self._lock:
            if version != self._version:
                self._previous_versions.append(self._version)
            self._version = version
            self._set_mode_locked(Mode.HEALTHY)
        return self.status()

    def rollback(self, idempotency_key: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
        """Record a webhook actuator call; only the first call per key changes anything."""
        key = idempotency_key or body.get("decision_id")
        if not isinstance(key, str) or not key:
            raise ClientError(400, "rollback needs an Idempotency-Key header or a decision_id")
        target = body.get("previous_version")
        if target is not None and not isinstance(target, str):
            raise ClientError(400, "previous_version must be a string or null")
        with self._lock:
            effective = key not in self._seen_keys
            if effective:
                self._switch_back_locked(target)
                self._seen_keys.add(key)
            record = {"idempotency_key": key, "body": dict(body), "effective": effective}
            self._rollbacks.append({**record, "at": rfc3339(self._clock.now())})
            return {"effective": effective, "version": self._version, "mode": str(self._mode)}

    def _switch_back_locked(self, target: str | None) -> None:
        if not target:
            if not self._previous_versions:
                raise ClientError(409, "no previous_version given and no previous version known")
            target = self._previous_versions[-1]
        self._version = target
        self._set_mode_locked(Mode.HEALTHY)

    def rollbacks(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(record) for record in self._rollbacks]

    def rollback_delay(self) -> float:
        with self._lock:
            return self._rollback_delay

    def wait_or_stop(self, seconds: float) -> bool:
        """Sleep for a fault; return True if the server is stopping meanwhile."""
        return self._stopping.wait(seconds)


def _parse_mode(mode: Any) -> Mode:
    try:
        return Mode(mode)
    except ValueError:
        raise ClientError(400, f"unknown mode {mode!r}; choose one of {[m.value for m in Mode]}") from None


def _parse_delay(delay: Any) -> float:
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay < math.inf:
        raise ClientError(400, "rollback_delay must be a number of seconds >= 0")
    return float(delay)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    # A `slow` scrape or a delayed rollback answer must not hold up stop().
    block_on_close = False
    model: SimulatedModelServer


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    server_version = "SimulatedModelServer/1"

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep demo output and test logs readable

    def _route(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        handler = _ROUTES.get((method, path))
        try:
            if handler is None:
                routes = sorted(f"{m} {p}" for m, p in _ROUTES)
                raise ClientError(404, f"no route {method} {path}; routes: {routes}")
            handler(self, self.server.model)
        except ClientError as exc:
            self._send_json(exc.status, {"error": str(exc)})

    def _read_json(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ClientError(400, f"body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ClientError(400, "body must be a JSON object")
        return body

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, payload: Any) -> None:
        self._send(status, "application/json", json.dumps(payload).encode())


def _get_metrics(handler: _Handler, model: SimulatedModelServer) -> None:
    mode = model.mode
    if mode is Mode.DOWN:
        # No status line at all: what a crashed process behind a still-open port looks like.
        handler.close_connection = True
        return
    if mode is Mode.SLOW and model.wait_or_stop(SLOW_SECONDS):
        handler.close_connection = True
        return
    if mode is Mode.HTML:
        handler._send(503, "text/html; charset=utf-8", _HTML_PAGE)
    elif mode is Mode.GARBAGE:
        # Claims to be Prometheus text, so only parsing can tell it is not.
        handler._send(200, CONTENT_TYPE_PLAIN_0_0_4, model.garbage_text())
    else:
        handler._send(200, CONTENT_TYPE_PLAIN_0_0_4, model.metrics_text())


def _get_control(handler: _Handler, model: SimulatedModelServer) -> None:
    handler._send_json(200, model.status())


def _post_control(handler: _Handler, model: SimulatedModelServer) -> None:
    handler._send_json(200, model.control(handler._read_json()))


def _post_deploy(handler: _Handler, model: SimulatedModelServer) -> None:
    handler._send_json(200, model.deploy(handler._read_json().get("version")))


def _post_rollback(handler: _Handler, model: SimulatedModelServer) -> None:
    answer = model.rollback(handler.headers.get("Idempotency-Key"), handler._read_json())
    # The switch has already happened: a client that gives up while waiting has still rolled
    # back, which is exactly the case crash tests need to exercise.
    if model.wait_or_stop(model.rollback_delay()):
        handler.close_connection = True
        return
    handler._send_json(200, answer)


def _get_rollbacks(handler: _Handler, model: SimulatedModelServer) -> None:
    handler._send_json(200, model.rollbacks())


_ROUTES: dict[tuple[str, str], Callable[[_Handler, SimulatedModelServer], None]] = {
    ("GET", "/metrics"): _get_metrics,
    ("GET", "/control"): _get_control,
    ("POST", "/control"): _post_control,
    ("POST", "/deploy"): _post_deploy,
    ("POST", "/rollback"): _post_rollback,
    # The webhook actuator may be configured with `method: PUT`.
    ("PUT", "/rollback"): _post_rollback,
    ("GET", "/rollbacks"): _get_rollbacks,
}


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m watchdog.demo.model_server", description="A simulated model server."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--version", default="v2", help="model version served at start")
    parser.add_argument("--previous-versions", default="v1", help="comma-separated, oldest first")
    parser.add_argument("--mode", default=Mode.HEALTHY.value, choices=[m.value for m in Mode])
    parser.add_argument("--rps", type=float, default=200.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--degraded-error-percent", type=float, default=None,
                        help="errors in `degraded` mode (default 20)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server = SimulatedModelServer(
        host=args.host,
        port=args.port,
        version=args.version,
        previous_versions=[v for v in args.previous_versions.split(",") if v],
        rps=args.rps,
        seed=args.seed,
        mode=args.mode,
        degraded_error_percent=args.degraded_error_percent,
    )
    with server:
        print(f"listening on {server.url}", flush=True)
        # Short waits keep the main thread responsive to the signal handler on every platform.
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
