"""The `email` alerter against an SMTP server that never finishes a reply: one attempt ends
within `timeout` × CONVERSATION_STEPS however the server paces its lines, and reads at most
MAX_REPLIES bytes of them. (The alerts of every target wait behind a delivery in progress.)
A raw socket server on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
import tracemalloc

import pytest

from tests.alerters.alerts import make_alert
from tests.raw_server import RawServer
from watchdog.alerters.smtp import CONVERSATION_STEPS, MAX_REPLIES, EmailAlerter
from watchdog.errors import AlerterError

pytestmark = pytest.mark.timeout(60)


def alerter(port: int, timeout: float) -> EmailAlerter:
    return EmailAlerter("mail", EmailAlerter.Options(host="127.0.0.1", port=port, from_="watchdog@example.com",
                                                     to=["oncall@example.com"], starttls=False, timeout=timeout,
                                                     retries=0))


def test_a_greeting_trickled_line_by_line_is_cut_off_at_the_conversation_deadline():
    def trickle(conn: socket.socket, closing: threading.Event) -> None:
        for _ in range(300):  # a line every 0.1 s for 30 s: never silent for `timeout`, never done
            conn.sendall(b"220-still saying hello\r\n")
            if closing.wait(0.1):
                return

    with RawServer(trickle) as server:
        started = time.monotonic()
        with pytest.raises(AlerterError) as failed:
            alerter(server.port, timeout=0.3).send(make_alert(), threading.Event())
        took = time.monotonic() - started
    assert took < 0.3 * CONVERSATION_STEPS + 2, took
    assert f"no complete SMTP conversation within {0.3 * CONVERSATION_STEPS:g}s" in str(failed.value)


def test_an_endless_multi_line_reply_is_refused_past_the_budget():
    def flood(conn: socket.socket, closing: threading.Event) -> None:
        line = b"220-" + b"x" * 8000 + b"\r\n"
        for _ in range(5000):  # 40 MB of one reply
            if closing.is_set():
                return
            conn.sendall(line)

    with RawServer(flood) as server:
        tracemalloc.start()
        try:
            with pytest.raises(AlerterError) as failed:
                alerter(server.port, timeout=5).send(make_alert(), threading.Event())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert f"replies passed {MAX_REPLIES} bytes" in str(failed.value)
    assert peak < 4 * 1024 * 1024, peak
