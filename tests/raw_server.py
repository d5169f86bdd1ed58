"""A raw TCP server on 127.0.0.1 for hostile-peer tests: each connection is handed to
`talk(conn, closing)` on a thread of its own; the peer hanging up (OSError) is what such
tests want, so it ends the conversation quietly. `closing` is set by `close()`."""

from __future__ import annotations

import socket
import threading
from typing import Callable

Talk = Callable[[socket.socket, threading.Event], None]


class RawServer:
    def __init__(self, talk: Talk):
        self.talk = talk
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.closing = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.closing.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            try:
                self.talk(conn, self.closing)
            except OSError:  # the client hung up
                pass

    def close(self) -> None:
        self.closing.set()
        self.sock.close()

    def __enter__(self) -> "RawServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_head(conn: socket.socket) -> bytes | None:
    """An HTTP request's head (up to the blank line), or None when the client hung up first."""
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        request += chunk
    return request
