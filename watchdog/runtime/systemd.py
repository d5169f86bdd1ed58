"""systemd's notify protocol, without a dependency: READY, STATUS, WATCHDOG, RELOADING, STOPPING.

Upstream endorses standalone implementations (sd_notify(3), "Standalone Implementations");
this is that ~15-line datagram send. Without $NOTIFY_SOCKET every call is a no-op.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import time

log = logging.getLogger("watchdog.systemd")


def notify(message: str) -> bool:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address[0] == "@":
        address = "\0" + address[1:]
    elif address[0] != "/":
        log.warning("NOTIFY_SOCKET %r is not a path or abstract socket; not notifying", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            log.warning("cannot notify systemd: %s", exc)
        return False
    return True


def ready(status: str = "") -> bool:
    return notify("READY=1" + (f"\nSTATUS={status}" if status else ""))


def status(text: str) -> bool:
    return notify(f"STATUS={text}")


def reloading() -> bool:
    return notify(f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")


def stopping() -> bool:
    return notify("STOPPING=1")


def watchdog_interval() -> float | None:
    """Seconds between keep-alive pings (half of WatchdogSec=), or None when not enabled."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1_000_000 / 2
    except ValueError:
        return None


def ping() -> bool:
    return notify("WATCHDOG=1")
