"""The real daemon under a fake systemd: a datagram socket at $NOTIFY_SOCKET receives READY,
WATCHDOG keep-alives, RELOADING/READY around SIGHUP and STOPPING on SIGTERM
(sd_notify(3), sd_watchdog_enabled(3): ping every WATCHDOG_USEC/2)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from watchdog.demo.model_server import SimulatedModelServer

from tests.integration.daemon_process import ERROR_RATE_RULE, DaemonProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def collect(sock: socket.socket, seconds: float) -> list[str]:
    messages, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            messages.append(sock.recv(4096).decode())
        except socket.timeout:
            break
    return messages


def test_the_daemon_speaks_systemds_notify_protocol(tmp_path):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, SimulatedModelServer() as model:
        sock.bind(path)
        daemon = DaemonProcess(tmp_path, model.url, model.url + "/alerts-go-nowhere", ERROR_RATE_RULE)
        env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "watchdog.cli", "run", "-c", str(daemon.config)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            first = collect(sock, 6)
            assert first and first[0].startswith("READY=1\nSTATUS=guarding 1 targets")
            assert first.count("WATCHDOG=1") >= 5  # every 0.5 s for WatchdogSec=1s
            proc.send_signal(signal.SIGHUP)
            reload_messages = collect(sock, 3)
            reloading = next(i for i, m in enumerate(reload_messages) if m.startswith("RELOADING=1\nMONOTONIC_USEC="))
            assert any(m.startswith("READY=1") for m in reload_messages[reloading:])
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
            assert "STOPPING=1" in collect(sock, 1)
        finally:
            proc.kill()
            proc.wait()
