"""The process groups an actuator step started, in the journal: none outlives a crash unseen.

A command actuator runs its program as the leader of a new session and process group. When
the daemon is killed (SIGKILL, OOM, power to the container cut) that group keeps running,
and the restarted daemon resumes the step and starts the program again: two copies of a
deploy script at once. So, around each step:

    with journal.step(decision_id, index):   # first ends a group an earlier daemon left
        actuator.apply(...)                   # the actuator calls child_started / child_ended

`child_started(pgid)` records the group with what identifies it beyond its number (host,
boot id, the leader's start time): a number alone may have been reused by an unrelated
process after a reboot or a long time. `end_leftover` ends a recorded group with SIGTERM
and, after `grace` seconds, SIGKILL — only if it is on this host and boot, is still a
session of its own (`setsid`), and none of its processes is older than the recorded
leader. A group on another host (a replica took the decision over) cannot be ended from
here; that is reported, not hidden.

Records live in the store's `meta` table under `step_process:<decision>:<index>`, written
(and committed) as soon as the child exists and removed when it has ended. The window
between `fork` and that commit is not covered.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from watchdog.clock import Clock, SystemClock
from watchdog.errors import StateError
from watchdog.state.base import HistoryEvent, StateStore

log = logging.getLogger("watchdog.state.processes")

GRACE = 5.0  # seconds between SIGTERM and SIGKILL for a group left by an earlier daemon
_POLL = 0.05
_PREFIX = "step_process"


@dataclass(frozen=True)
class GroupRecord:
    """A process group started by a step; enough to recognise it after a restart."""

    pgid: int
    host: str
    boot_id: str
    start_ticks: int  # the leader's start time, in clock ticks since boot (/proc/PID/stat field 22)
    daemon_pid: int


@dataclass(frozen=True)
class _Step:
    journal: "ProcessJournal"
    decision_id: str
    index: int


_current: contextvars.ContextVar[_Step | None] = contextvars.ContextVar("watchdog_step", default=None)


def child_started(pgid: int) -> None:
    """Called by an actuator right after it started a process group; recorded if a step runs."""
    step = _current.get()
    if step is not None:
        step.journal.record(step.decision_id, step.index, pgid)


def child_ended(pgid: int) -> None:
    """Called by an actuator once the group it started has ended (or was killed)."""
    step = _current.get()
    if step is not None:
        step.journal.forget(step.decision_id, step.index, pgid)


class ProcessJournal:
    """Records step process groups in `store` and ends the ones a dead daemon left behind."""

    def __init__(self, store: StateStore, *, grace: float = GRACE, clock: Clock | None = None):
        self._store = store
        self._clock = clock or SystemClock()  # the history's times (the grace is real waiting: real time)
        self.grace = grace

    @contextmanager
    def step(self, decision_id: str, index: int) -> Iterator[str]:
        """Run one step: first end a group left by an earlier daemon (yields what was done,
        also recorded in the history)."""
        done = self.end_leftover(decision_id, index)
        if done:
            self._history(decision_id, index, done)
        token = _current.set(_Step(self, decision_id, index))
        try:
            yield done
        finally:
            _current.reset(token)

    def record(self, decision_id: str, index: int, pgid: int) -> None:
        record = GroupRecord(pgid, socket.gethostname(), _boot_id(), _start_ticks(pgid) or 0, os.getpid())
        try:
            self._store.set_meta(_key(decision_id, index), json.dumps(asdict(record), sort_keys=True))
        except StateError as exc:  # the step goes on; a crash now would leave the group unrecorded
            log.error("cannot record process group %d of decision %s: %s", pgid, decision_id, exc)

    def forget(self, decision_id: str, index: int, pgid: int) -> None:
        found = self.recorded(decision_id, index)
        if found is not None and found.pgid == pgid:
            self._clear(decision_id, index)

    def recorded(self, decision_id: str, index: int) -> GroupRecord | None:
        text = self._store.get_meta(_key(decision_id, index))
        if not text:
            return None
        try:
            return GroupRecord(**json.loads(text))
        except (TypeError, ValueError):
            log.warning("ignoring an unreadable process record of decision %s step %d", decision_id, index + 1)
            return None

    def end_leftover(self, decision_id: str, index: int) -> str:
        """End the group recorded for this step, if it still runs; returns what was done ("" if nothing)."""
        record = self.recorded(decision_id, index)
        if record is None:
            return ""
        outcome = self._end(record)
        self._clear(decision_id, index)
        if outcome:
            log.warning("decision %s step %d: %s", decision_id, index + 1, outcome)
        return outcome

    def _end(self, record: GroupRecord) -> str:
        what = f"process group {record.pgid} left by daemon pid {record.daemon_pid}"
        if record.host != socket.gethostname():
            return f"{what} runs on host {record.host}, where it cannot be ended from here; it may still run"
        if not os.path.isdir("/proc/self"):
            return f"{what} cannot be checked without /proc (not Linux?); it may still run"
        if record.boot_id != _boot_id():
            return ""  # the machine restarted since: the group is gone
        members = _members(record)
        if not members:
            return ""
        _signal(record.pgid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline:
            if not _members(record):
                return f"{what} was still running: ended with SIGTERM before the step was started again"
            time.sleep(_POLL)
        _signal(record.pgid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while _members(record) and time.monotonic() < deadline:
            time.sleep(_POLL)
        if _members(record):
            return f"{what} survived SIGKILL (uninterruptible?); the step is started again anyway"
        return (f"{what} was still running and ignored SIGTERM for {self.grace:g}s: killed (SIGKILL) "
                "before the step was started again")

    def _history(self, decision_id: str, index: int, message: str) -> None:
        decision = self._store.get_decision(decision_id)
        if decision is None:
            return
        self._store.append(HistoryEvent(None, self._clock.now(), decision.target, decision.rule, {}, "step",
                                        f"step {index + 1}: {message}", {"decision_id": decision_id, "index": index}))

    def _clear(self, decision_id: str, index: int) -> None:
        try:
            self._store.set_meta(_key(decision_id, index), "")
        except StateError as exc:
            log.error("cannot clear the process record of decision %s: %s", decision_id, exc)


def _key(decision_id: str, index: int) -> str:
    return f"{_PREFIX}:{decision_id}:{index}"


def _signal(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # gone, or no longer ours: nothing this daemon may do


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def _stat(pid: str) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state is [0], pgrp [2], session [3])."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_ticks(pid: int) -> int | None:
    fields = _stat(str(pid))
    return int(fields[19]) if fields and len(fields) > 19 else None


def _members(record: GroupRecord) -> list[int]:
    """Live (non-zombie) processes of the recorded group that can be the ones it started.

    A member must be in a session led by the group's number (the leader called setsid) and
    must not have started before the recorded leader, and a living leader must be the one
    recorded: a reused number fails one or the other.
    """
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat(entry.name)
        if fields is None or len(fields) <= 19:
            continue
        state, pgrp, session, started = fields[0], int(fields[2]), int(fields[3]), int(fields[19])
        if pgrp != record.pgid or session != record.pgid or state in ("Z", "X"):
            continue
        if int(entry.name) == record.pgid and record.start_ticks and started != record.start_ticks:
            return []  # the number now leads another group
        if started >= record.start_ticks:
            found.append(int(entry.name))
    return found
