"""The state store under hostile conditions, against the real daemon process: a second daemon on
the same SQLite file, the file deleted under a running daemon, and `kill -9` while a rollback
command runs (its process group must be ended before the step runs again)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from watchdog.demo.model_server import SimulatedModelServer

from tests.http_receiver import Receiver
from tests.integration.daemon_process import ACCURACY_RULE as RULE, decisions, DaemonProcess, free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]



def test_a_second_daemon_on_the_same_sqlite_file_exits_3_and_points_to_postgresql(tmp_path):
    with SimulatedModelServer() as model, Receiver() as alerts:
        first = DaemonProcess(tmp_path, model.url, alerts.url("/alert"), RULE, with_version=False)
        second_config = tmp_path / "second.yaml"  # same state file, its own port
        second_config.write_text(first.config.read_text().replace(f":{first.port}", f":{free_port()}"))
        try:
            first.start()
            second = subprocess.Popen([sys.executable, "-m", "watchdog.cli", "run", "-c", str(second_config)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                out, err = second.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                second.kill()
                second.communicate()
                pytest.fail("a second daemon on the same SQLite state file kept running")
            assert second.returncode == 3, err
            assert "another model-watchdog daemon" in err and "PostgreSQL" in err
            assert first.proc is not None and first.proc.poll() is None  # the first one guards on
            assert requests.get(first.url + "/healthz", timeout=5).status_code == 200
            first.kill()  # the lock dies with its holder, even by SIGKILL: the next daemon starts
            first.start()
        finally:
            first.close()


def test_deleting_the_state_file_fails_healthz_alerts_once_and_stops_acting(tmp_path):
    with SimulatedModelServer() as model, Receiver() as alerts:
        daemon = DaemonProcess(tmp_path, model.url, alerts.url("/alert"), RULE, with_version=False)
        try:
            daemon.start()
            os.unlink(tmp_path / "state.db")

            def failing_health() -> str:
                answer = requests.get(daemon.url + "/healthz", timeout=5)
                return answer.text if answer.status_code == 503 else ""

            reason = wait_until(failing_health, 20, what="/healthz to fail")
            assert "state.db was deleted" in reason
            wait_until(lambda: _lost_alerts(alerts), 20, what="the state_lost alert")
            # The model now degrades: a daemon whose store is gone must not decide or act. The
            # rule needs 2s of breach; give it several ticks (a bounded wait: nothing to await).
            requests.post(model.url + "/control", json={"mode": "degraded"}, timeout=5)
            time.sleep(6)
            assert requests.get(model.url + "/rollbacks", timeout=5).json() == []
            (alert,) = _lost_alerts(alerts)  # once, though many ticks saw the file gone
            assert alert["dedup_key"] == "fraud-model/state_lost" and alert["severity"] == "critical"
            assert requests.get(daemon.url + "/healthz", timeout=5).status_code == 503
        finally:
            daemon.close()


def _lost_alerts(alerts: Receiver) -> list[dict]:
    return [r.json for r in alerts.requests if r.json and r.json.get("kind") == "state_lost"]


# A rollback command that is not idempotent and starts a helper in its own process group; the
# helper ignores SIGTERM, so ending the group takes SIGTERM and then SIGKILL. Each run records its
# pid and that of its helper, and whether any process of an earlier run was still alive.
SCRIPT = """\
import os, signal, subprocess, sys, time
work = sys.argv[1]
alive = []
for line in open(os.path.join(work, "pids")).read().split() if os.path.exists(os.path.join(work, "pids")) else []:
    try:
        with open(f"/proc/{line}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                alive.append(line)
    except OSError:
        pass
helper = subprocess.Popen([sys.executable, "-c",
                           "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"])
with open(os.path.join(work, "pids"), "a") as f:
    f.write(f"{os.getpid()} {helper.pid}\\n")
with open(os.path.join(work, "runs"), "a") as f:
    f.write(f"{os.getpgrp()} alive-before-me={','.join(alive) or 'none'}\\n")
time.sleep(float(open(os.path.join(work, "sleep")).read()))
with open(os.path.join(work, "effects"), "a") as f:   # the effect, at the end: not idempotent
    f.write("rolled back\\n")
helper.kill()
"""


def test_kill_9_mid_command_ends_the_old_process_group_before_the_step_runs_again(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "sleep").write_text("60")
    (tmp_path / "rollback.py").write_text(SCRIPT)
    with SimulatedModelServer() as model, Receiver() as alerts:
        daemon = DaemonProcess(tmp_path, model.url, alerts.url("/alert"), RULE, with_version=False)
        daemon.roll_back_by_command([sys.executable, str(tmp_path / "rollback.py"), str(work)])
        old_pids: list[int] = []
        try:
            daemon.start()
            requests.post(model.url + "/control", json={"mode": "degraded"}, timeout=5)
            wait_until(lambda: (work / "pids").exists() and (work / "pids").read_text().strip(), 30,
                       what="the rollback command to start")
            old_pids = [int(p) for p in (work / "pids").read_text().split()]
            daemon.kill()  # SIGKILL: the command and its helper are orphaned, still running
            assert all(_alive(pid) for pid in old_pids)
            (work / "sleep").write_text("0")
            daemon.start()
            wait_until(lambda: decisions(tmp_path / "state.db")[0][1] == "succeeded", 60, what="the resumed rollback")
            first, second = (work / "runs").read_text().splitlines()
            assert second.endswith("alive-before-me=none"), "the old process group still ran when the step restarted"
            assert not any(_alive(pid) for pid in old_pids)
            assert (work / "effects").read_text().splitlines() == ["rolled back"]  # exactly one effective run
            history = daemon.cli("history", "--limit", "100").stdout
            assert f"process group {first.split()[0]} left by daemon pid" in history
            assert "killed (SIGKILL) before the step was started again" in history  # the helper ignored SIGTERM
        finally:
            daemon.close()
            for pid in old_pids:  # only what this test started, by pid
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_a_state_file_replaced_under_the_store_is_noticed(tmp_path):
    from watchdog.state import SQLiteStateStore

    store = SQLiteStateStore(str(tmp_path / "state.db"))
    try:
        store.lock_for_daemon()
        assert store.lost() == ""
        other = SQLiteStateStore(str(tmp_path / "other.db"))
        other.close()
        os.replace(tmp_path / "other.db", tmp_path / "state.db")  # e.g. a restore over a running daemon
        assert "was replaced by another file" in store.lost()
    finally:
        store.close()


def _session(seconds: int = 60) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"], start_new_session=True)


def test_a_recorded_group_whose_number_now_belongs_to_another_process_is_left_alone(tmp_path):
    """Process numbers are reused: a record must only ever end the group it recorded."""
    from dataclasses import replace

    from watchdog.state import SQLiteStateStore
    from watchdog.state.processes import ProcessJournal, _start_ticks

    unrelated = _session()
    store = SQLiteStateStore(str(tmp_path / "state.db"))
    try:
        journal = ProcessJournal(store, grace=0.5)
        journal.record("d1", 0, unrelated.pid)
        genuine = journal.recorded("d1", 0)
        assert genuine is not None and genuine.start_ticks == _start_ticks(unrelated.pid)
        for forged in (replace(genuine, start_ticks=genuine.start_ticks - 1),  # the number was reused
                       replace(genuine, boot_id="another-boot"), replace(genuine, host="elsewhere")):
            store.set_meta("step_process:d1:0", json.dumps(forged.__dict__))
            journal.end_leftover("d1", 0)
            assert unrelated.poll() is None, forged
        store.set_meta("step_process:d1:0", json.dumps(genuine.__dict__))
        assert "ended with SIGTERM" in journal.end_leftover("d1", 0)
        assert unrelated.wait(5) == -signal.SIGTERM
        assert journal.recorded("d1", 0) is None  # cleared once handled
    finally:
        if unrelated.poll() is None:
            unrelated.kill()
        unrelated.wait()
        store.close()


def test_the_state_lost_alert_goes_straight_to_the_alerters_not_into_the_lost_store(tmp_path):
    """Alerts are queued in the store; the one saying the store is gone cannot be."""
    from watchdog.config.loader import load
    from watchdog.daemon import Daemon
    from watchdog.errors import StateError
    from watchdog.testing import FakeAlerter

    from tests.harness import Harness
    from tests.fixtures.rules import ERROR_RULE

    h = Harness(tmp_path, ERROR_RULE)
    h.source.set("error_ratio", 0.01)
    h.store.close()
    daemon = Daemon(load(tmp_path / "watchdog.yaml"), clock=h.clock)
    try:
        alerter = FakeAlerter("ops")
        daemon.notifier.replace_alerters({"ops": alerter})
        daemon.engine.sources["model"] = daemon.sources["model"] = h.source
        assert daemon.run_once() is not None
        daemon.notifier.drain(timeout=0)
        os.replace(tmp_path / "state.db", tmp_path / "moved.db")  # the daemon's connection still reads it
        queue = {name: getattr(daemon.store, name) for name in ("enqueue_alert", "claim_alerts", "delete_alert")}

        def refuse(*args, **kwargs):  # a lost store's queue may fail outright (e.g. disk I/O error)
            raise StateError("disk I/O error")

        for name in queue:
            setattr(daemon.store, name, refuse)
        for _ in range(3):
            h.clock.advance(10)
            assert daemon.run_once() is None
        daemon.notifier.drain(timeout=0)
        (alert,) = [a for a in alerter.sent if a.kind == "state_lost"]
        assert alert.dedup_key == "fraud-model/state_lost" and alert.severity == "critical"
        assert daemon.health() == (False, daemon.store_lost) and "was deleted" in daemon.store_lost
        assert daemon.reload()[0] is False
        # The daemon's connection still reads the moved file: nothing was queued or recorded there.
        assert queue["claim_alerts"]("probe", h.clock.now()) == []
        assert not [e for e in daemon.store.history(limit=1000)
                    if "state_lost" in e.message or "stopped guarding" in e.message or e.kind == "reload"]
    finally:
        daemon.close()
