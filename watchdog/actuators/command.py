"""Roll back by running a program (kubectl, helm, a deploy script), never through a shell.

Each argv element may contain `{{name}}` placeholders filled from the decision
(`{{previous_version}}`, `{{decision_id}}`, …). Values are substituted into single argv
elements, so a `;` or `$(…)` in a value is passed literally; an element that is (or begins
with) a placeholder, like `"{{previous_version}}"`, and renders to something starting with `-`
is refused, as the program would read it as an option (`--to={{previous_version}}` is safe). The same values are
in the environment as `WATCHDOG_<NAME>` (e.g. `WATCHDOG_DECISION_ID`, which the program can
use to act once per decision: the same decision may be applied again after a restart).

The program runs in its own process group; on timeout or shutdown the whole group gets
SIGTERM and, 2 seconds later, SIGKILL, so helpers it started do not outlive it. The group is
recorded in the action journal while it runs (`watchdog.state.processes`): if the daemon is
killed meanwhile, the restarted daemon ends that group before it runs the step again.

Optional read-back, with the same placeholders, environment, timeout and process handling:
`verify_argv` — exit 0 means the rollback took effect; `current_argv` — prints the running
version (the last non-empty line of its stdout; empty output means unknown).
"""

from __future__ import annotations

import collections
import os
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import IO, Iterable

from watchdog import redact
from watchdog.actuators.base import ActionContext, Actuator
from watchdog.actuators.templating import KNOWN_PLACEHOLDERS, PLACEHOLDER, placeholder_names, render
from watchdog.actuators.templating import unknown_placeholder as _unknown
from watchdog.actuators.templating import values as _values
from watchdog.config.fields import option
from watchdog.errors import ActuatorError
from watchdog.state import processes
from watchdog.text.versions import shown

__all__ = ["CommandActuator", "CommandActuatorOptions", "KNOWN_PLACEHOLDERS", "PLACEHOLDER",
           "placeholder_names", "render_argv"]
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL
_POLL = 0.05  # how often a running command is checked against the timeout and `stop`
_TAIL_LINES = 20
_TAIL_LINE_BYTES = 16 * 1024  # a longer line is kept as pieces of this size (output without newlines stays bounded)


@dataclass(frozen=True)
class CommandActuatorOptions:
    argv: list[str] = option(help="program and arguments; {{name}} placeholders are filled from the decision")
    timeout: float = option(30.0, duration=True, help="kill the command (and its children) after this long")
    env: dict[str, str] = option(default_factory=dict, help="extra environment variables")
    cwd: str | None = option(None, help="working directory (default: the daemon's)")
    verify_argv: list[str] | None = option(None, help="read-back command: exit 0 = the rollback took effect")
    current_argv: list[str] | None = option(None, help="prints the running version (last non-empty stdout line)")


class CommandActuator(Actuator):
    Options = CommandActuatorOptions

    def __init__(self, name: str, options: CommandActuatorOptions):
        self.check(options)
        super().__init__(name, options)

    @staticmethod
    def check(options: CommandActuatorOptions) -> None:
        """Raise ValueError for options that can never run (for the config loader)."""
        if not options.argv or not options.argv[0].strip():
            raise ValueError("argv must name a program: give a non-empty list like [kubectl, rollout, undo, …]")
        if options.timeout <= 0:
            raise ValueError("timeout must be greater than 0")
        for key in ("argv", "verify_argv", "current_argv"):
            argv = getattr(options, key)
            if argv is None:
                continue
            if not argv or not argv[0].strip():
                raise ValueError(f"{key} must name a program: give a non-empty list")
            for i, arg in enumerate(argv):
                for name in placeholder_names(arg):
                    if name not in KNOWN_PLACEHOLDERS:
                        raise ValueError(f"{key}[{i}]: {_unknown(name, KNOWN_PLACEHOLDERS)}")

    def plan(self, context: ActionContext) -> str:
        planned = f"run {redact.redact(shlex.join(render_argv(self.options.argv, context)))}"
        if self.options.verify_argv is not None:
            planned += f"; verify with {redact.redact(shlex.join(render_argv(self.options.verify_argv, context)))}"
        return planned

    def apply(self, context: ActionContext, stop: threading.Event) -> str:
        shown, took, _ = self._run(self.options.argv, context, stop)
        return f"ran {shown} → exit 0 in {took:.1f}s"

    def verify(self, context: ActionContext, stop: threading.Event) -> str:
        if self.options.verify_argv is None:
            return super().verify(context, stop)
        try:
            shown, took, _ = self._run(self.options.verify_argv, context, stop)
        except ActuatorError as exc:
            raise ActuatorError(f"not verified: {exc}") from None
        return f"verified by {shown} → exit 0 in {took:.1f}s"

    def current_version(self, context: ActionContext) -> str | None:
        if self.options.current_argv is None:
            return None
        _, _, tails = self._run(self.options.current_argv, context, threading.Event())
        lines = [line.strip() for line in tails.stdout if line.strip()]
        return lines[-1] if lines else None

    def _run(self, template: list[str], context: ActionContext, stop: threading.Event) -> tuple[str, float, "_Tails"]:
        """Run one argv to completion; (shown command, seconds, output tails) on exit 0, else ActuatorError."""
        argv = render_argv(template, context)
        shown = redact.redact(shlex.join(argv))
        if stop.is_set():
            raise ActuatorError(f"interrupted by shutdown: {shown} was not started")
        proc = self._start(argv, context)
        processes.child_started(proc.pid)  # in the journal: a restarted daemon ends it before re-running
        started = time.monotonic()
        try:
            with _Tails(proc) as tails:
                outcome = _wait(proc, stop, started + self.options.timeout)
                if outcome != "exited":
                    _kill_group(proc)
                code = proc.wait()
        finally:
            processes.child_ended(proc.pid)
        took = time.monotonic() - started
        if outcome == "stopped":
            raise ActuatorError(f"interrupted by shutdown: {shown} was terminated after {took:.1f}s")
        if outcome == "timeout":
            raise ActuatorError(f"{shown} timed out after {self.options.timeout:g}s and was killed "
                                f"(raise timeout if it needs longer){tails.excerpt()}")
        if code != 0:
            raise ActuatorError(f"{shown} failed: {_describe_exit(code)}{tails.excerpt()}")
        return shown, took, tails

    def _start(self, argv: list[str], context: ActionContext) -> subprocess.Popen[bytes]:
        cwd = self.options.cwd
        if cwd is not None and not os.path.isdir(cwd):
            raise ActuatorError(f"cwd {cwd} is not a directory")
        try:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    cwd=cwd, env=self._environment(context), start_new_session=True)
        except FileNotFoundError:
            where = "" if os.sep in argv[0] else " (not on PATH; give an absolute path)"
            raise ActuatorError(f"command not found: {argv[0]}{where}") from None
        except PermissionError:
            raise ActuatorError(f"command not executable: {argv[0]} (check its permissions)") from None
        except OSError as exc:
            raise ActuatorError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None

    def _environment(self, context: ActionContext) -> dict[str, str]:
        env = {**os.environ, **self.options.env}
        # Context last: the program must be able to trust WATCHDOG_* to describe this decision.
        env.update({f"WATCHDOG_{name.upper()}": value for name, value in _values(context).items()})
        return env


def render_argv(argv: Iterable[str], context: ActionContext) -> list[str]:
    """Fill `{{name}}` placeholders; ActuatorError for a name the context cannot fill, and for
    an element that begins with a placeholder (or is one) and renders to something starting
    with `-` (the program would take it for an option: a version `--help` made a deploy script
    print its help and exit 0)."""
    out = []
    for i, arg in enumerate(argv):
        value = render(arg, context)
        if PLACEHOLDER.match(arg) is not None and value.startswith("-"):
            raise ActuatorError(f"argv[{i}] {arg} would be {shown(value)}, which starts with '-' and would be read as "
                                f"an option; refusing to run (write --option={arg}, or put '--' before it, if the "
                                "program takes such values)")
        out.append(value)
    return out


def _wait(proc: subprocess.Popen[bytes], stop: threading.Event, deadline: float) -> str:
    """Wait for the process; 'exited', 'timeout' or 'stopped' (shutdown)."""
    while proc.poll() is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "timeout"
        if stop.wait(min(_POLL, remaining)):
            return "stopped" if proc.poll() is None else "exited"
    return "exited"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL whatever is left after KILL_GRACE seconds."""
    pgid = proc.pid  # start_new_session made the child the leader of its own group
    _signal_group(pgid, signal.SIGTERM)
    end = time.monotonic() + KILL_GRACE
    while time.monotonic() < end:
        proc.poll()  # reap the leader so an exited group is seen as gone
        if not _group_alive(pgid):
            return
        time.sleep(_POLL)
    _signal_group(pgid, signal.SIGKILL)


def _signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to the group; False when no process of it is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # only a process we no longer own can answer so; nothing to do
        return False
    return True


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs. Zombies do not count: without an init that
    reaps them (common in containers) they linger, and waiting for them would always take
    the full grace period."""
    if not os.path.isdir("/proc/self"):
        return _signal_group(pgid, 0)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # the command name may hold spaces
        except (OSError, IndexError):
            continue  # exited while we looked
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            return True
    return False


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class _Tails:
    """Drain stdout and stderr in the background (a full pipe would block the child) and keep
    their last lines for error messages: at most _TAIL_LINES pieces of _TAIL_LINE_BYTES each,
    however much the program writes."""

    def __init__(self, proc: subprocess.Popen[bytes]):
        self.stdout: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self.stderr: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self.threads = [self._drain(proc.stdout, self.stdout), self._drain(proc.stderr, self.stderr)]

    def __enter__(self) -> "_Tails":
        return self

    def __exit__(self, *exc: object) -> None:
        # A daemonised grandchild may keep a pipe open forever; do not wait for it.
        for thread in self.threads:
            thread.join(timeout=1.0)

    @staticmethod
    def _drain(pipe: IO[bytes] | None, lines: collections.deque[str]) -> threading.Thread:
        def run() -> None:
            assert pipe is not None
            with pipe:
                while raw := pipe.readline(_TAIL_LINE_BYTES):
                    lines.append(raw.decode("utf-8", errors="replace").rstrip())

        thread = threading.Thread(target=run, name="command-actuator-output", daemon=True)
        thread.start()
        return thread

    def excerpt(self) -> str:
        """The last lines of stderr (of stdout when stderr is empty), redacted."""
        lines, which = (self.stderr, "stderr") if any(self.stderr) else (self.stdout, "stdout")
        text = "\n".join(line for line in lines if line)
        if not text:
            return ""
        return f"; last lines of {which}:\n{redact.redact(text)}"
