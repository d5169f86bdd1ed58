"""The HTTP API's bearer tokens: read from `api.token_file` and `api.tokens[].token_file`.

A token file must exist, be readable, hold at least 16 characters and be private to its owner:
a file that group or others can read (or write) is refused, unless
`api.allow_insecure_token_file: true` turns the refusal into a loud warning. `validate` runs
the same checks as the daemon's start-up, so a bad token file is found before a deployment.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from watchdog.config.loader import LoadedConfig
from watchdog.errors import ConfigError, Problem
from watchdog.redact import register_secret
from watchdog.web.server import SINGLE_TOKEN_NAME

log = logging.getLogger("watchdog.apitokens")

MIN_LENGTH = 16
MAX_FILE = 64 * 1024  # a token file is read up to this many bytes (never /dev/zero to the end)


@dataclass
class Tokens:
    single: str | None = None  # `api.token_file`
    named: list[tuple[str, str]] = field(default_factory=list)  # (name, token) from `api.tokens`
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def first(self) -> str | None:
        """Any one usable token (for the CLI talking to its own daemon)."""
        return self.single or (self.named[0][1] if self.named else None)


def read_tokens(loaded: LoadedConfig) -> Tokens:
    """Every configured token, with a problem for each file that is missing, unreadable, too
    short or too open (a warning instead, with `allow_insecure_token_file`)."""
    api, cfg = loaded.config.api, str(loaded.path)
    out = Tokens()
    if api.token_file:
        out.single = _read(loaded, "api.token_file", api.token_file, api.marks.get("@token_file"), out)
    seen: dict[str, str] = {}
    for i, entry in enumerate(api.tokens):
        where = f"api.tokens[{i}] ({entry.name})"
        token = _read(loaded, where + ".token_file", entry.token_file, entry.marks.get("@token_file"), out)
        if token is None:
            continue
        if token in seen.values() or token == out.single:
            other = next((n for n, t in seen.items() if t == token), SINGLE_TOKEN_NAME)
            out.problems.append(_problem(cfg, entry.marks.get(""), f"{where}: the same token as '{other}'; "
                                         "each operator needs a token of its own"))
            continue
        seen[entry.name] = token
        out.named.append((entry.name, token))
    return out


def require_tokens(loaded: LoadedConfig) -> Tokens:
    """`read_tokens`, raising ConfigError on problems and logging each warning loudly."""
    tokens = read_tokens(loaded)
    if tokens.problems:
        raise ConfigError(tokens.problems)
    for warning in tokens.warnings:
        log.warning("INSECURE: %s", warning)
    return tokens


def _read(loaded: LoadedConfig, what: str, name: str, mark: tuple[int, int] | None, out: Tokens) -> str | None:
    cfg = str(loaded.path)
    path = Path(name)
    if not path.is_absolute():
        path = loaded.path.resolve().parent / path
    try:
        mode = os.stat(path).st_mode  # before opening: opening a FIFO would block
        if not stat.S_ISREG(mode):
            out.problems.append(_problem(cfg, mark, f"{what}: {path} is not a regular file"))
            return None
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE + 1)
    except OSError as exc:
        out.problems.append(_problem(cfg, mark, f"{what}: cannot read {path}: {exc.strerror or exc}"))
        return None
    if len(raw) > MAX_FILE:
        out.problems.append(_problem(cfg, mark, f"{what}: {path} is larger than {MAX_FILE} bytes; not a token file"))
        return None
    try:
        token = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        out.problems.append(_problem(cfg, mark, f"{what}: {path} is not UTF-8 text"))
        return None
    if len(token) < MIN_LENGTH:
        out.problems.append(_problem(cfg, mark, f"{what}: the token in {path} is shorter than {MIN_LENGTH} characters"))
        return None
    register_secret(token)
    if mode & (stat.S_IRWXG | stat.S_IRWXO) & ~(stat.S_IXGRP | stat.S_IXOTH):
        _too_open(loaded, what, path, mode, mark, out)
    return token


def _too_open(loaded: LoadedConfig, what: str, path: Path, mode: int, mark: tuple[int, int] | None, out: Tokens) -> None:
    message = (f"{what}: {path} can be read or written by group or others (mode {stat.S_IMODE(mode):04o}); "
               f"anyone who reads it can act as this operator: chmod 600 {path}")
    if loaded.config.api.allow_insecure_token_file:
        out.warnings.append(_problem(str(loaded.path), mark, message + " (allowed by api.allow_insecure_token_file)"))
    else:
        out.problems.append(_problem(str(loaded.path), mark, message + ", or set api.allow_insecure_token_file: true"))


def _problem(cfg: str, mark: tuple[int, int] | None, message: str) -> Problem:
    line, col = mark or (0, 0)
    return Problem(cfg, line, col, message)
