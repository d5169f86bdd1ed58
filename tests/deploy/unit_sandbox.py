"""Run a program inside the kernel restrictions the systemd unit asks for, without systemd.

    /usr/bin/python3 unit_sandbox.py UNIT -- PROGRAM ARGS...

Reads from UNIT (systemd/model-watchdog.service) `SystemCallFilter=`, `SystemCallErrorNumber=`,
`RestrictAddressFamilies=` and `MemoryDenyWriteExecute=`, and applies them the way systemd
does — a seccomp filter that allows the listed system calls (groups expanded with
`systemd-analyze syscall-filter`, the `~` lists removed) for the native architecture only and
fails every other call with the errno; `socket()` only for the listed families; the kernel's
memory-deny-write-execute (`PR_SET_MDWE`; before Linux 6.3, seccomp rules on mmap/mprotect
like systemd 252's) — and then execs PROGRAM. Capabilities and the
read-only file system are set up by the caller (setpriv, a mount namespace).

Runs on the system's Python: it needs libseccomp's binding (Debian's `python3-seccomp`).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import socket
import subprocess
import sys

import seccomp  # type: ignore[import-not-found]

PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1


def service_settings(unit: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    section = ""
    with open(unit, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("["):
                section = line
            elif section == "[Service]" and "=" in line and not line.startswith("#"):
                key, _, value = line.partition("=")
                values.setdefault(key, []).append(value)
    return values


def expand(name: str, seen: set[str] | None = None) -> set[str]:
    """A system call or `@group` as system call names (groups recursively)."""
    if not name.startswith("@"):
        return {name}
    seen = seen if seen is not None else set()
    if name in seen:
        return set()
    seen.add(name)
    listing = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True, text=True, check=True)
    out: set[str] = set()
    for line in listing.stdout.splitlines()[1:]:
        entry = line.strip()
        if entry and not entry.startswith("#"):
            out |= expand(entry, seen)
    return out


def allowed_syscalls(settings: dict[str, list[str]]) -> set[str]:
    allowed: set[str] = set()
    for value in settings.get("SystemCallFilter", []):
        if value.startswith("~"):
            for name in value[1:].split():
                allowed -= expand(name)
        else:
            for name in value.split():
                allowed |= expand(name)
    return allowed


def kernel_mdwe() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) == 0


def seccomp_mdwe(rules: "seccomp.SyscallFilter", allowed: set[str]) -> set[str]:
    """No writable+executable mappings and no making memory executable later (systemd 252's rules)."""
    wx = mmap.PROT_WRITE | mmap.PROT_EXEC
    for name in ("mmap", "mmap2"):
        if name in allowed:
            for value in (0, mmap.PROT_WRITE, mmap.PROT_EXEC):
                try:
                    rules.add_rule(seccomp.ALLOW, name, seccomp.Arg(2, seccomp.MASKED_EQ, wx, value))
                except (RuntimeError, ValueError, OSError):
                    pass
    for name in ("mprotect", "pkey_mprotect"):
        if name in allowed:
            rules.add_rule(seccomp.ALLOW, name, seccomp.Arg(2, seccomp.MASKED_EQ, mmap.PROT_EXEC, 0))
    return {"mmap", "mmap2", "mprotect", "pkey_mprotect", "shmat"}


def apply(unit: str) -> None:
    settings = service_settings(unit)
    error = getattr(errno, settings.get("SystemCallErrorNumber", ["EPERM"])[0])
    rules = seccomp.SyscallFilter(defaction=seccomp.ERRNO(error))  # native architecture only
    allowed = allowed_syscalls(settings)
    handled: set[str] = set()
    if settings.get("MemoryDenyWriteExecute") == ["yes"] and not kernel_mdwe():
        handled = seccomp_mdwe(rules, allowed)
    families = [getattr(socket, f) for f in " ".join(settings.get("RestrictAddressFamilies", [])).split()]
    for name in sorted(allowed):
        if name in handled or (name == "socket" and families):
            continue
        try:
            rules.add_rule(seccomp.ALLOW, name)
        except (RuntimeError, ValueError, OSError):
            pass  # not a system call on this architecture
    for family in families:
        rules.add_rule(seccomp.ALLOW, "socket", seccomp.Arg(0, seccomp.EQ, int(family)))
    rules.load()  # sets no_new_privs first (libseccomp's default)


if __name__ == "__main__":
    unit, separator, *program = sys.argv[1:]
    assert separator == "--" and program, __doc__
    apply(unit)
    os.execv(program[0], program)
