"""What a test needs from its environment, and what happens when it is missing.

Outside CI a missing server or Python test dependency skips the test with the command that
installs it. Under CI (`CI=true`, which `.ci/run` sets itself) it fails instead: every
declared test dependency is required, so a broken `test` extra or set-up cannot go green.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def missing(message: str) -> NoReturn:
    """Skip with `message` (which says how to install the thing), or fail under CI."""
    if in_ci():
        pytest.fail(f"{message} [required under CI=true]", pytrace=False)
    pytest.skip(message, allow_module_level=True)
    raise AssertionError("unreachable")


def require_module(name: str, install: str = "-e '.[test]'") -> ModuleType:
    """`import name`, or skip (fail under CI) saying `pip install <install>`."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing(f"{name} is not importable ({exc}); pip install {install}")


def require_executable(name: str, install: str) -> str:
    """The path of executable `name` — beside this Python first (a console script of the test
    extra), then on PATH — or skip (fail under CI) saying `install`."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    missing(f"{name} is not installed ({install})")
