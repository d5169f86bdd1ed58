"""The daemon still works inside the systemd unit's sandbox.

systemd itself cannot run here (it is not PID 1), so the test applies the unit's kernel-level
restrictions the way systemd does and runs the real daemon in them:
- `ProtectSystem=strict` + `StateDirectory=` + `PrivateTmp=`: a private mount namespace with
  `/` read-only, the state folder writable and a fresh tmpfs for temporary files;
- `CapabilityBoundingSet=` + `NoNewPrivileges=`: `setpriv` drops every capability;
- `SystemCallFilter=` / `SystemCallErrorNumber=` / `SystemCallArchitectures=`,
  `RestrictAddressFamilies=` and `MemoryDenyWriteExecute=`: read from the unit file and
  applied as seccomp and `PR_SET_MDWE` by tests/deploy/unit_sandbox.py;
- `UMask=0077`; `Type=notify` + `WatchdogSec=`: $NOTIFY_SOCKET and $WATCHDOG_USEC.
Inside, the daemon becomes ready, pings the watchdog, rolls a breach back through a webhook
and a `command` actuator (a child process under the same filter), and records it all.

Needs root (mount namespace, setpriv), systemd-analyze and Debian's python3-seccomp; skipped
without them, a failure under CI=true."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from watchdog.demo.model_server import SimulatedModelServer

from tests.http_receiver import Receiver
from tests.needs import missing, require_executable
from tests.integration.daemon_process import ERROR_RATE_RULE, DaemonProcess, wait_until

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "model-watchdog.service"
SANDBOX = Path(__file__).with_name("unit_sandbox.py")
SYSTEM_PYTHON = "/usr/bin/python3"

MOUNTS = ('umask 0077; mount --bind "$1" "$1"; mount -t tmpfs -o size=16m,mode=1777 tmpfs "$2"; '
          'mount -o remount,bind,ro /; shift 2; exec "$@"')


def sandboxed(argv: list[str], state: Path, tmp: Path) -> list[str]:
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-ec", MOUNTS, "sh", str(state), str(tmp),
            "setpriv", "--no-new-privs", "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all", "--",
            SYSTEM_PYTHON, str(SANDBOX), str(UNIT), "--", *argv]


@pytest.fixture
def sandbox_ready(tmp_path):
    if os.geteuid() != 0:
        missing("the unit's sandbox needs root here (mount namespace, setpriv); CI runs as root")
    for tool, package in (("systemd-analyze", "systemd"), ("unshare", "util-linux"), ("setpriv", "util-linux")):
        require_executable(tool, f"apt-get install {package}")
    if subprocess.run([SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True).returncode != 0:
        missing("libseccomp's Python binding is not installed (apt-get install python3-seccomp); .ci/run installs it")
    state, tmp = tmp_path / "probe-state", tmp_path / "probe-tmp"
    state.mkdir()
    tmp.mkdir()
    return subprocess.run(sandboxed([sys.executable, "-c", PROBE], state, tmp), capture_output=True, text=True, timeout=60)


PROBE = """\
import mmap, os, socket
def attempt(f):
    try:
        f()
        return "allowed"
    except OSError as e:
        return e.errno
print(attempt(lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)),
      attempt(lambda: os.sched_setaffinity(0, {0})),
      attempt(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)),
      attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()),
      attempt(lambda: os.setuid(1)),
      attempt(lambda: open("/etc/model-watchdog-probe", "w")),
      open("/proc/self/status").read().split("CapEff:")[1].split()[0])
"""


def test_the_sandbox_is_really_applied(sandbox_ready):
    """The emulation is not blind: what the unit forbids fails inside it."""
    assert sandbox_ready.returncode == 0, sandbox_ready.stderr
    wx, affinity, netlink, inet, setuid, write, caps = sandbox_ready.stdout.split()
    assert wx in ("13", "1")  # MemoryDenyWriteExecute: EACCES (PR_SET_MDWE) or EPERM (seccomp, kernels < 6.3)
    assert affinity == "1"  # EPERM: @resources removed from the filter
    assert netlink == "1"  # RestrictAddressFamilies
    assert inet == "allowed"
    assert setuid == "1"  # no capabilities
    assert write == "30"  # EROFS: ProtectSystem=strict
    assert int(caps, 16) == 0


class SandboxedDaemon(DaemonProcess):
    def __init__(self, directory: Path, *args: object):
        super().__init__(directory, *args)  # type: ignore[arg-type]
        self.state, self.tmp = directory / "state", directory / "tmp"
        self.state.mkdir()
        self.tmp.mkdir()
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.state / "notify"))
        self.notify.settimeout(20)

    def start(self) -> "SandboxedDaemon":
        self._log_file = open(self.log, "a")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(self.state),
               "TMPDIR": str(self.tmp), "NOTIFY_SOCKET": str(self.state / "notify"), "WATCHDOG_USEC": "2000000"}
        self.proc = subprocess.Popen(sandboxed([sys.executable, "-m", "watchdog.cli", "run", "-c", str(self.config)],
                                               self.state, self.tmp),
                                     stdout=self._log_file, stderr=subprocess.STDOUT, text=True, env=env)
        wait_until(self._ready, 40, what="the sandboxed daemon to become ready")
        return self

    def notifications(self, until: str) -> list[str]:
        seen: list[str] = []
        while not any(until in m for m in seen):
            seen.append(self.notify.recv(4096).decode())
        return seen

    def close(self) -> None:
        super().close()
        self.notify.close()


COMMAND_ACTUATOR = """\
  marker: {{type: command, argv: ["{python}", "-c", "import sys; open(sys.argv[1], 'w').write(sys.argv[2])", "{path}", "{{{{decision_id}}}}"]}}
"""


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_the_daemon_works_inside_the_unit_s_sandbox(tmp_path, sandbox_ready):
    assert sandbox_ready.returncode == 0, sandbox_ready.stderr
    with SimulatedModelServer(version="v2", previous_versions=("v1",)) as model:
        receiver = Receiver()
        receiver.start()
        daemon = SandboxedDaemon(tmp_path, model.url, receiver.url("/alert"), ERROR_RATE_RULE)
        marker = daemon.state / "marker"
        daemon.config.write_text(
            daemon.config.read_text()
            .replace("state: state.db", f"state: {daemon.state}/state.db")
            .replace("actuators:\n", "actuators:\n" + COMMAND_ACTUATOR.format(python=sys.executable, path=marker))
            .replace("rollback: [rollback-hook]", "rollback: [rollback-hook, marker]"))
        try:
            daemon.start()
            # Type=notify and WatchdogSec=: READY, then keep-alive pings while evaluations complete.
            seen = daemon.notifications(until="WATCHDOG=1")
            assert any(m.startswith("READY=1") for m in seen), seen

            requests.post(model.url + "/control", json={"mode": "degraded"}, timeout=5).raise_for_status()
            wait_until(lambda: requests.get(model.url + "/rollbacks", timeout=5).json(), 40, what="the webhook rollback")
            wait_until(marker.exists, 30, what="the command actuator")
            wait_until(lambda: not daemon.status()["targets"]["fraud-model"]["held"], 30, what="the hold to lift")
            assert len(marker.read_text()) == 32  # the decision id, passed as an argument
            assert 'model_watchdog_decisions_total{outcome="succeeded",target="fraud-model"} 1.0' in daemon.metrics()
            assert any(r.json and r.json["kind"] == "rollback_completed" for r in receiver.requests)

            code, _ = daemon.terminate()
            assert code == 0
            log = daemon.log.read_text()
            assert "Traceback" not in log and "Operation not permitted" not in log and "Read-only" not in log, log
            # UMask=0077: the state is private.
            assert stat.S_IMODE((daemon.state / "state.db").stat().st_mode) == 0o600
        finally:
            daemon.close()
            receiver.close()
