"""Time is injected: the daemon's clock drives the API, the CLI commands and the tick budget,
and nothing else in the package reads the time except to bound real I/O."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import watchdog
from watchdog.web.api import routes
from watchdog.clock import FakeClock
from watchdog.cli import main
from watchdog.config.loader import load
from watchdog.daemon import Daemon
from watchdog.rollback.pauses import get_pause
from watchdog.web.server import Request
from watchdog.state.sqlite import SQLiteStateStore

from tests.fixtures.rules import ERROR_RULE
from tests.harness import Harness

LONG_AGO = 1_000_000_000.0  # 2001: far from any real "now"


def _route(daemon: Daemon, method: str, path: str):  # type: ignore[no-untyped-def]
    return next(r.handler for r in routes(daemon) if r.method == method and r.pattern == path)


def test_the_api_reads_the_time_from_the_daemons_clock(tmp_path) -> None:
    Harness(tmp_path, ERROR_RULE)  # writes the config
    clock = FakeClock(LONG_AGO)
    daemon = Daemon(load(tmp_path / "watchdog.yaml"), clock=clock, store=SQLiteStateStore(str(tmp_path / "api.db")))
    try:
        pause = _route(daemon, "POST", "/api/v1/targets/{target}/pause")
        response = pause(Request("POST", "/api/v1/targets/fraud-model/pause", {"target": "fraud-model"}, {},
                                 {"for": "1h", "reason": "load test"}, operator="sre"))
        assert response.status == 200
        paused = get_pause(daemon.store, "fraud-model")
        assert paused is not None and (paused.since, paused.until) == (LONG_AGO, LONG_AGO + 3600)
        assert [e.at for e in daemon.store.history(kinds=["pause"])] == [LONG_AGO]
    finally:
        daemon.close()


def test_cli_commands_read_the_time_from_the_clock_they_are_given(tmp_path) -> None:
    Harness(tmp_path, ERROR_RULE)
    out, err = io.StringIO(), io.StringIO()
    code = main(["pause", "fraud-model", "--for", "30m", "--reason", "migration", "-c", str(tmp_path / "watchdog.yaml")],
                out, err, clock=FakeClock(LONG_AGO))
    assert code == 0, err.getvalue()
    store = SQLiteStateStore(str(tmp_path / "state.db"))
    try:
        paused = get_pause(store, "fraud-model")
        assert paused is not None and (paused.since, paused.until) == (LONG_AGO, LONG_AGO + 1800)
    finally:
        store.close()


def test_the_tick_budget_is_measured_on_the_engines_clock(tmp_path) -> None:
    rules = ERROR_RULE + """\
- name: latency
  source: model
  query: p99
  above: 0.5
  severity: warning
"""
    h = Harness(tmp_path, rules)
    budget = h.engine.tick_budget

    def slow(now: float) -> float:
        h.clock.advance(budget + 1)  # the first query takes longer than the whole budget (on the clock)
        return 0.01

    h.source.set("error_ratio", 0.01)
    h.source.set("p99", 0.1)
    h.tick()  # the first tick adopts the target
    h.source.set("error_ratio", slow)
    h.tick()
    states = {rule: s for (_, rule, _), s in h.engine.states.items()}
    assert states["error-rate"].value == 0.01  # answered, late
    # still queued when the budget ran out (on the clock, not in real time): abandoned
    assert "query failed: source model: query 'p99' did not finish" in states["latency"].reason


# -- what may still read the time directly -------------------------------------------------------

# Module (file name) → the reads it may make, and why: each bounds a real wait on real I/O that
# no fake clock could shorten, in code that is handed deadlines rather than a clock.
ALLOWED = {
    "clock.py": {"*"},  # the one place that reads the time
    "retrying.py": {"time.monotonic"},  # tenacity's stop: no attempt starts after a real deadline
    "client.py": {"time.monotonic", "time.time"},  # http/client.py: socket timeouts; Retry-After dates are wall-clock dates
    "body.py": {"time.monotonic"},  # http/body.py: reading a body: real socket deadlines
    "rest.py": {"time.monotonic"},  # an actuator's HTTP call within its real deadline
    "scrape.py": {"time.monotonic"},  # a scrape's socket timeout within the tick's (real) deadline
    "scrapeloop.py": {"time.monotonic"},  # http/scrapeloop.py: each scrape's socket deadline (min of timeout and the tick's real deadline)
    "sql.py": {"time.monotonic"},  # SQLite's progress handler interrupts a query at a real deadline
    "command.py": {"time.monotonic", "time.sleep"},  # waiting for a child process to exit
    "kubernetes.py": {"time.monotonic"},  # waiting for a rollout (a watch with real timeouts)
    "kserve.py": {"time.monotonic"},  # waiting for a rollout
    "argo.py": {"time.monotonic"},  # waiting for a rollout
    "processes.py": {"time.monotonic", "time.sleep"},  # waiting for a left-over process group to exit
    "server.py": {"time.monotonic"},  # throttling a log line about open connections (asyncio loop time)
}
READS = {("time", "time"), ("time", "monotonic"), ("time", "perf_counter"), ("time", "sleep"), ("time", "time_ns"),
         ("time", "monotonic_ns"), ("datetime", "now"), ("datetime", "utcnow"), ("date", "today")}


def _reads(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
            if (node.func.value.id, node.func.attr) in READS:
                found.append(f"{node.func.value.id}.{node.func.attr}")
        if isinstance(node, ast.ImportFrom) and node.module in ("time", "datetime"):
            found += [f"{node.module}.{a.name}" for a in node.names if (node.module, a.name) in READS]
    return found


def test_nothing_outside_clock_py_reads_the_time_except_to_bound_real_io() -> None:
    package = Path(watchdog.__file__).parent
    unexpected = [f"{path.relative_to(package)}: {read}" for path in sorted(package.rglob("*.py"))
                  for read in _reads(path) if not ALLOWED.get(path.name, set()) & {"*", read}]
    assert unexpected == []
