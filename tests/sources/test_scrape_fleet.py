"""A fleet scrape: concurrency sized by `concurrency`, every scrape within the tick's deadline."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from watchdog.sources.scrape import ScrapeOptions, ScrapeSource


class _Slow(BaseHTTPRequestHandler):
    in_flight = 0
    most = 0
    lock = threading.Lock()

    def do_GET(self) -> None:  # noqa: N802
        with _Slow.lock:
            _Slow.in_flight += 1
            _Slow.most = max(_Slow.most, _Slow.in_flight)
        time.sleep(0.2)
        with _Slow.lock:
            _Slow.in_flight -= 1
        body = b"up_metric 1\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_fleet():  # type: ignore[no-untyped-def]
    servers = []
    for _ in range(40):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        servers.append(server)
    _Slow.most = 0
    yield [f"http://127.0.0.1:{s.server_address[1]}/metrics" for s in servers]
    for server in servers:
        server.shutdown()
        server.server_close()


def test_forty_slow_targets_are_scraped_at_once_by_default(slow_fleet):
    source = ScrapeSource("fleet", ScrapeOptions(urls=slow_fleet))
    started = time.monotonic()
    assert source.begin_tick(1000.0) is None
    assert time.monotonic() - started < 2.0  # 8 at a time took 5 rounds of 0.2 s at least
    assert _Slow.most > 8
    source.close()


def test_concurrency_bounds_the_scrapes_in_flight(slow_fleet):
    source = ScrapeSource("fleet", ScrapeOptions(urls=slow_fleet[:12], concurrency=3))
    assert source.begin_tick(1000.0) is None
    assert _Slow.most <= 3
    source.close()


def test_scrapes_end_by_the_ticks_deadline(slow_fleet):
    source = ScrapeSource("fleet", ScrapeOptions(urls=slow_fleet, concurrency=4, timeout=10.0))
    started = time.monotonic()
    error = source.begin_tick_within(1000.0, time.monotonic() + 0.3)
    assert time.monotonic() - started < 1.5  # 10 rounds of 0.2 s would take 2 s; the deadline cuts them
    assert error is not None and error.kind == "timeout"
    assert "ran out" in source.health().last_error or "timed out" in source.health().last_error
    source.close()


def test_concurrency_must_be_positive():
    with pytest.raises(ValueError, match="concurrency"):
        ScrapeSource("fleet", ScrapeOptions(urls=["http://127.0.0.1:9/m", "http://127.0.0.1:10/m"], concurrency=0))


def test_a_round_still_running_holds_the_next_one_off_its_connections(slow_fleet):
    # The runner may give up on a begin_tick and start the next while it runs: the second
    # round must not send on the first one's connections (or parse with its readers).
    source = ScrapeSource("fleet", ScrapeOptions(urls=slow_fleet[:2], timeout=5.0))
    first = threading.Thread(target=source.begin_tick, args=(1000.0,))
    first.start()
    time.sleep(0.05)
    started = time.monotonic()
    error = source.begin_tick_within(1001.0, time.monotonic() + 0.1)
    assert time.monotonic() - started < 1.0
    assert error is not None and error.kind == "timeout" and "still running" in str(error)
    first.join()
    assert source.begin_tick(1002.0) is None
    source.close()


def test_a_fleet_source_splits_each_url_once(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`ScrapeSource()` of a thousand URLs split each three times (urlsplit's cache holds 128):
    ≈ 0.02 s of a fleet's start-up. Now once, and the targets are what they were."""
    from urllib.parse import urlsplit as real

    from watchdog.http import scrapeloop
    from watchdog.sources import scrape

    calls: list[str] = []

    def counted(url: str, *args: object) -> object:
        calls.append(url)
        return real(url, *args)

    monkeypatch.setattr(scrape, "urlsplit", counted)
    monkeypatch.setattr(scrapeloop, "urlsplit", counted)
    urls = [f"http://127.0.{1 + i // 254}.{1 + i % 254}:9100/metrics" for i in range(300)]
    source = scrape.ScrapeSource("fleet", scrape.ScrapeOptions(urls=urls))
    assert sorted(calls) == sorted(urls)
    assert [t.instance for t in source.targets] == [u.split("/")[2] for u in urls]
    assert [t.wire.request for t in source.targets if t.wire] == [
        scrapeloop.ScrapeClient(accept=scrape.ACCEPT).target(u).request for u in urls]
