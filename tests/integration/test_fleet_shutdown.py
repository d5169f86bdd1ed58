"""SIGTERM in the middle of a fleet tick: the real `model-watchdog run`, 200 scraped targets
(one server on 200 loopback addresses) that accept the scrape and never answer. The tick is
abandoned, the process exits promptly and cleanly, and nothing of the tick is written."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

TARGETS = 200


def addresses(count: int) -> list[str]:
    return [f"127.0.{1 + i // 254}.{1 + i % 254}" for i in range(count)]


class HangingFleet:
    """Accepts every scrape, reads the request, never answers."""

    def __init__(self, count: int):
        self.port = free_port()
        self.requests = 0
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(count, started), daemon=True)
        self.thread.start()
        assert started.wait(10)

    def _run(self, count: int, started: threading.Event) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.readuntil(b"\r\n\r\n")
                self.requests += 1
                await reader.read()  # until the client gives up
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
                pass
            writer.close()

        async def main() -> None:
            self.server = await asyncio.start_server(handle, host=addresses(count), port=self.port)
            started.set()
            await self.server.serve_forever()

        try:
            self.loop.run_until_complete(main())
        except asyncio.CancelledError:
            pass

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(self.loop)])
        self.thread.join(5)


def write_config(directory: Path, port: int) -> None:
    addrs = addresses(TARGETS)
    urls = ", ".join(f"http://{a}:{port}/metrics" for a in addrs)
    lines = ["interval: 60s", "state: state.db", f"listen: 127.0.0.1:{free_port()}", "rule_files: [rules.yaml]",
             "sources:", f"  fleet: {{type: scrape, timeout: 40s, urls: [{urls}]}}",
             "alerters:", "  log: {type: log}", "targets:"]
    lines += [f"  m{i}: {{alert: [log], variables: {{instance: '{a}:{port}'}}}}" for i, a in enumerate(addrs)]
    (directory / "watchdog.yaml").write_text("\n".join(lines) + "\n")
    names = ", ".join(f"m{i}" for i in range(TARGETS))
    (directory / "rules.yaml").write_text(
        f"targets: [{names}]\nrules:\n  - name: up\n    source: fleet\n"
        "    query: 'up{instance=\"{{instance}}\"}'\n    below: 1\n")


def test_sigterm_mid_tick_with_a_fleet_exits_promptly_and_writes_nothing_of_the_tick(tmp_path):
    fleet = HangingFleet(TARGETS)
    write_config(tmp_path, fleet.port)
    exe = str(Path(sys.executable).with_name("model-watchdog"))
    log = open(tmp_path / "daemon.log", "w")
    daemon = subprocess.Popen([exe, "-c", str(tmp_path / "watchdog.yaml"), "run"], stdout=log,
                              stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while fleet.requests < 32 and time.monotonic() < deadline and daemon.poll() is None:
            time.sleep(0.05)
        assert fleet.requests >= 32, (tmp_path / "daemon.log").read_text()[-2000:]  # the tick is scraping
        sent = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=30)
        took = time.monotonic() - sent
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        log.close()
        fleet.close()
    output = (tmp_path / "daemon.log").read_text()
    assert code == 0, output[-2000:]
    assert took < 10, f"SIGTERM took {took:.1f}s\n{output[-2000:]}"  # the scrapes alone would hold it 40 s
    assert "abandoned" in output
    with sqlite3.connect(tmp_path / "state.db") as db:
        assert db.execute("SELECT count(*) FROM rule_states").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM history WHERE kind != 'reload'").fetchone() == (0,)
