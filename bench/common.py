"""What the benchmarks share: ports, the daemon process and its /proc figures, the result file.

bench/ is not a package: each script puts this folder on `sys.path` and imports `common`.
"""

from __future__ import annotations

import compileall
import gc
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port}")


def get(url: str) -> tuple[int, str]:
    """(status, body) of a GET; (0, "") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return 0, ""


def compile_package(env: dict[str, str] | None = None) -> None:
    """Byte-compile the `watchdog` package the daemon will import (this tree, or PYTHONPATH's
    for `--code`), as an installed package is (`pip install .`, the Dockerfile): an editable
    install under PYTHONDONTWRITEBYTECODE=1 would compile every module from source at each start
    (≈ 0.15 s of a fleet's ready time), which no deployed daemon pays."""
    root = Path(env["PYTHONPATH"]) if env and env.get("PYTHONPATH") else HERE.parent
    if root not in _COMPILED:
        compileall.compile_dir(str(root / "watchdog"), quiet=1)
        _COMPILED.add(root)


_COMPILED: set[Path] = set()


def start_daemon(directory: Path, log: IO[str], env: dict[str, str] | None = None,
                 level: str = "warning") -> subprocess.Popen:  # type: ignore[type-arg]
    """`model-watchdog -c DIRECTORY/watchdog.yaml --log-level LEVEL run`, in DIRECTORY, output to
    `log`, its package byte-compiled first (`compile_package`)."""
    compile_package(env)
    exe = str(Path(sys.executable).with_name("model-watchdog"))
    return subprocess.Popen([exe, "-c", str(directory / "watchdog.yaml"), "--log-level", level, "run"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=directory, env=env)


def start_prometheus(directory: Path, config: str, *extra: str) -> tuple[subprocess.Popen, int]:  # type: ignore[type-arg]
    """Debian's `prometheus` on 127.0.0.1 (a free port) with CONFIG as prometheus.yml, its data
    in DIRECTORY/prom, its log in DIRECTORY/prometheus.log; returns once it listens."""
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    port = free_port()
    (directory / "prometheus.yml").write_text(config)
    log = open(directory / "prometheus.log", "w")
    proc = subprocess.Popen([binary, f"--config.file={directory / 'prometheus.yml'}",
                             f"--storage.tsdb.path={directory / 'prom'}", f"--web.listen-address=127.0.0.1:{port}",
                             *extra], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    wait_port(port)
    return proc, port


def prometheus_value(base: str, query: str) -> float | None:
    """The single value of an instant query on the Prometheus at BASE (None: no answer or no series)."""
    status, text = get(base + "/api/v1/query?" + urllib.parse.urlencode({"query": query}))
    if status != 200:
        return None
    result = json.loads(text)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def demo_config(source: str, hook_url: str, listen: int, target_extra: str = "") -> str:
    """watchdog.yaml for one `demo` target watched every second and rolled back through a webhook.
    Every trial or cycle rolls back, so the rollback limits (10/h by default) are lifted."""
    return f"""\
interval: 1s
state: state.db
max_rollbacks: {{count: 10000, window: 1h}}
listen: 127.0.0.1:{listen}
rule_files: [rules.yaml]
sources:
  model: {source}
actuators:
  hook: {{type: webhook, url: "{hook_url}"}}
alerters:
  log: {{type: log}}
targets:
  demo:
    version: {{source: model, query: model_info, label: version}}
    rollback: [hook]
    alert: [log]
    max_rollbacks: {{count: 10000, window: 1h}}
{target_extra}"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "?")
    return f"{os.cpu_count()} cores, {model}, Python {sys.version.split()[0]}"


def write_result(name: str, result: dict[str, Any]) -> Path:
    """bench/results/NAME-<timestamp>.json (not committed)."""
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    path = out / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path



class GcTimer:
    """CPU seconds spent in CPython's cyclic collector from its creation until stop(): `total`."""

    def __init__(self) -> None:
        self.total = 0.0
        self._started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:  # type: ignore[type-arg]
        if phase == "start":
            self._started = time.process_time()
        else:
            self.total += time.process_time() - self._started

    def stop(self) -> None:
        gc.callbacks.remove(self._on_gc)
