"""Real servers for integration tests, started on 127.0.0.1 in temporary folders.

`.ci/run` installs Debian's `postgresql`, `prometheus` and `prometheus-alertmanager`. On a
developer machine without them the tests that need them are skipped; under CI (CI=true) a
missing server is a failure, so a broken set-up cannot pass silently.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import requests

import pytest

from tests.needs import missing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require(binary: str | None, what: str) -> str:
    if binary and os.path.exists(binary):
        return binary
    missing(f"{what} is not installed (apt-get install -y {what}); .ci/run installs it")


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"server did not listen on {port} within {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")


def _as_postgres_user(argv: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; CI runs as root.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class PostgresServer:
    port: int
    user: str
    proc: subprocess.Popen[bytes]
    directory: Path

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        psql = _pg_bin("psql")
        subprocess.run([psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", "postgres",
                        "-v", "ON_ERROR_STOP=1", "-c", f'CREATE DATABASE "{name}"'], check=True, capture_output=True)
        return self.dsn(name)

    def stop(self) -> None:
        _stop(self.proc)


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else ""


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole test session, trust auth, superuser `watchdog`."""
    initdb = require(_pg_bin("initdb"), "postgresql")
    postgres_bin = _pg_bin("postgres")
    directory = Path(tempfile.mkdtemp(prefix="mw-pg-"))
    data, sockets = directory / "data", directory / "sock"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
        shutil.chown(sockets, "postgres")
    subprocess.run(_as_postgres_user([initdb, "-D", str(data), "-A", "trust", "-U", "watchdog", "--no-sync"]),
                   check=True, capture_output=True)
    port = free_port()
    log = directory / "postgres.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(_as_postgres_user([
            postgres_bin, "-D", str(data), "-p", str(port), "-k", str(sockets),
            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=100"]),
            stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, 60, log)
        yield PostgresServer(port=port, user="watchdog", proc=proc, directory=directory)
    finally:
        _stop(proc)
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class PrometheusServer:
    url: str
    proc: subprocess.Popen[bytes]
    directory: Path

    def stop(self) -> None:
        _stop(self.proc)


def start_prometheus(scrape_targets: list[str], scrape_interval: str = "1s") -> PrometheusServer:
    """A Prometheus scraping `host:port` targets (paths /metrics) every `scrape_interval`."""
    binary = require(shutil.which("prometheus") or "/usr/bin/prometheus", "prometheus")
    directory = Path(tempfile.mkdtemp(prefix="mw-prom-"))
    config = directory / "prometheus.yml"
    targets = ", ".join(f'"{t}"' for t in scrape_targets)
    config.write_text(f"""global:
  scrape_interval: {scrape_interval}
  evaluation_interval: {scrape_interval}
scrape_configs:
  - job_name: model
    static_configs:
      - targets: [{targets}]
""")
    port = free_port()
    log = directory / "prometheus.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{port}"], stdout=out, stderr=subprocess.STDOUT)
    wait_for_port(port, proc, 60, log)
    return PrometheusServer(url=f"http://127.0.0.1:{port}", proc=proc, directory=directory)


@contextmanager
def backfilled_prometheus(openmetrics: str, prefix: str = "mw-backfill-",
                          timeout: float = 240) -> Iterator[PrometheusServer]:
    """A Prometheus serving `openmetrics` (text ending in `# EOF`), backfilled with `promtool tsdb
    create-blocks-from openmetrics` into a fresh data directory; ready (`/-/ready`) when yielded,
    stopped and removed after. Keep the samples within the last 30 days (the retention)."""
    binary = require(shutil.which("prometheus") or "/usr/bin/prometheus", "prometheus")
    promtool = require(shutil.which("promtool") or "/usr/bin/promtool", "prometheus")
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        (directory / "history.om").write_text(openmetrics)
        subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(directory / "history.om"),
                        str(directory / "data")], check=True, capture_output=True, timeout=timeout)
        (directory / "prometheus.yml").write_text("global: {}\n")
        port = free_port()
        log = directory / "prometheus.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([binary, f"--config.file={directory / 'prometheus.yml'}",
                                     f"--storage.tsdb.path={directory / 'data'}",
                                     f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=30d"],
                                    stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, proc, 60, log)
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while requests.get(f"{url}/-/ready", timeout=5).status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Prometheus not ready within 60s:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)
            yield PrometheusServer(url=url, proc=proc, directory=directory)
        finally:
            _stop(proc)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class AlertmanagerServer:
    url: str
    proc: subprocess.Popen[bytes]
    directory: Path

    def stop(self) -> None:
        _stop(self.proc)


def start_alertmanager() -> AlertmanagerServer:
    binary = require(shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager",
                     "prometheus-alertmanager")
    directory = Path(tempfile.mkdtemp(prefix="mw-am-"))
    config = directory / "alertmanager.yml"
    config.write_text("route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n")
    port = free_port()
    log = directory / "alertmanager.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.path={directory / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                                stdout=out, stderr=subprocess.STDOUT)
    wait_for_port(port, proc, 60, log)
    return AlertmanagerServer(url=f"http://127.0.0.1:{port}", proc=proc, directory=directory)


# -- a real MLflow tracking server (the `mlflow` package, a test dependency) -------------------

def _mlflow_executable() -> str | None:
    beside = Path(sys.executable).parent / "mlflow"
    return str(beside) if beside.exists() else shutil.which("mlflow")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    executable = _mlflow_executable()
    if executable is None:
        missing("mlflow is not installed (pip install -e '.[test]')")
    folder = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = open(folder / "server.log", "wb")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(
        [executable, "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--default-artifact-root", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {proc.returncode}:\n{(folder / 'server.log').read_text()[-3000:]}")
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not up within 120s:\n{(folder / 'server.log').read_text()[-3000:]}")
            time.sleep(0.25)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
