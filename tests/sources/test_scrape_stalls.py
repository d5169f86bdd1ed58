"""Targets that stall (accept and never answer, or trickle a byte at a time) must not cost the
healthy targets of the same round their tick, however few the lanes (`concurrency`)."""

from __future__ import annotations

import os
import selectors
import socket
import threading
import time
from typing import Callable, Iterator

import pytest

from watchdog.http import scrapeloop
from watchdog.sources.scrape import ScrapeOptions, ScrapeSource

pytestmark = pytest.mark.timeout(30)

T0 = 1_700_000_000.0
HEALTHY, SILENT, TRICKLE = "healthy", "silent", "trickle"


class Servers:
    """One listening socket per mode given, all served by one thread (joined on close)."""

    def __init__(self, modes: list[str]):
        self.modes = modes
        self._selector = selectors.DefaultSelector()
        self._listeners = [socket.create_server(("127.0.0.1", 0)) for _ in modes]
        for index, listener in enumerate(self._listeners):
            listener.setblocking(False)
            self._selector.register(listener, selectors.EVENT_READ, ("listen", index))
        self._trickling: dict[socket.socket, float] = {}  # connection -> when its next byte goes
        self.requests: list[int] = []  # the servers' indices, in the order their requests arrived
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stall-servers")

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{s.getsockname()[1]}/metrics" for s in self._listeners]

    def instance(self, index: int) -> str:
        return f"127.0.0.1:{self._listeners[index].getsockname()[1]}"

    def __enter__(self) -> "Servers":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()

    def _run(self) -> None:
        buffers: dict[socket.socket, bytes] = {}
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.02):
                kind, index = key.data
                if kind == "listen":
                    conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                    conn.setblocking(False)
                    self._selector.register(conn, selectors.EVENT_READ, ("conn", index))
                    buffers[conn] = b""
                    continue
                conn = key.fileobj  # type: ignore[assignment]
                data = conn.recv(4096)
                if not data:
                    self._selector.unregister(conn)
                    self._trickling.pop(conn, None)
                    conn.close()
                    continue
                buffers[conn] += data
                if b"\r\n\r\n" in buffers[conn]:
                    buffers[conn] = b""
                    self.requests.append(index)
                    self._answer(conn, index)
            now = time.monotonic()
            for conn, due in list(self._trickling.items()):
                if now >= due:  # the status line, a byte every 0.1 s: never a whole answer in time
                    conn.send(b"H")
                    self._trickling[conn] = now + 0.1

    def _answer(self, conn: socket.socket, index: int) -> None:
        mode = self.modes[index]
        if mode == HEALTHY:
            page = f"x {index}\n".encode()
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: %d\r\n\r\n%s"
                      % (len(page), page))
        elif mode == TRICKLE:
            self._trickling[conn] = time.monotonic()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def settled(read: Callable[[], int], expected: int, within: float = 3.0) -> int:
    """`read()` once it is at most `expected` (the loop thread closes aborted sockets a moment
    later; what an earlier test left running may close one of its own meanwhile)."""
    end = time.monotonic() + within
    while (value := read()) > expected and time.monotonic() < end:
        time.sleep(0.02)
    return value


@pytest.fixture
def quiet_start() -> Iterator[None]:
    scrapeloop._LOOP.loop()  # the shared loop thread exists before we count threads and sockets
    yield


def test_stalling_targets_do_not_cost_the_healthy_ones_their_tick(quiet_start: None) -> None:
    modes = [SILENT, SILENT, SILENT, TRICKLE, TRICKLE, HEALTHY, HEALTHY, HEALTHY, HEALTHY]  # the stalling first
    fds, threads = open_fds(), threading.active_count()
    with Servers(modes) as servers:
        serving = open_fds()  # ours, and the servers' listening sockets
        source = ScrapeSource("fleet", ScrapeOptions(urls=servers.urls, timeout=1.0, concurrency=2))
        started = time.monotonic()
        error = source.begin_tick_within(T0, started + 1.5)  # fewer lanes (2) than stalling targets (5)
        elapsed = time.monotonic() - started

        healthy = {servers.instance(i): float(i) for i, mode in enumerate(modes) if mode == HEALTHY}
        assert {s.label("instance"): s.value for s in source.query("x", T0).samples} == healthy
        assert error is not None and error.kind == "timeout" and "5 of 9 targets failed" in str(error)
        targets = source.health().details["targets"]
        for i, mode in enumerate(modes):
            state = targets[servers.instance(i)]
            if mode == HEALTHY:
                assert state["up"] and not state["last_error"]
            else:
                assert not state["up"] and "timed out" in state["last_error"], state
        assert elapsed < 2.0  # the round ends with the tick's deadline (1.5 s), not after it

        # the next round starts the healthy targets first (the stalling timed out last round)
        answered: list[float] = []
        wires = [t.wire for t in source.targets if t.wire is not None]
        assert [w.slow for w in wires] == [mode != HEALTHY for mode in modes]
        before = len(servers.requests)
        began = time.monotonic()
        for index, answer in source._client.fetch_each(wires, timeout=0.5, deadline=began + 0.6, concurrency=2,
                                                        max_body=1 << 20):
            if modes[index] == HEALTHY:
                answered.append(time.monotonic() - began)
        assert len(answered) == 4 and max(answered) < 0.3, answered
        assert [modes[i] for i in servers.requests[before:before + 4]] == [HEALTHY] * 4, servers.requests
        source.close()
        # every connection closed by the client (the servers close theirs on its end of file)
        assert settled(open_fds, serving) <= serving
    assert settled(open_fds, fds) <= fds  # no socket left open
    assert settled(threading.active_count, threads) <= threads
