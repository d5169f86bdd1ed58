"""Shared helpers for the actuator tests: a decision context, and the fake API server's
fixtures (`kube`, `kubeconfig`; registered for this folder by its conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.fakes.kube_api import FakeKube
from watchdog.actuators.base import ActionContext

TOKEN = "fake-sa-token-0123456789abcdef"


def make_context(to_version: str | None = "v6", **changes: Any) -> ActionContext:
    extra = {"component": "scorer", "from_version": "v7"}
    if to_version is not None:
        extra["to_version"] = to_version
    base: dict[str, Any] = dict(decision_id="dec-42", target="fraud-model", rule="p99-latency", action="rollback",
                                value=0.93, threshold={"above": 0.5}, labels={"env": "prod"}, version="v7",
                                previous_version=None, fired_at="2026-01-02T03:04:05Z",
                                reason="p99 above 0.5 for 5m", extra=extra)
    base.update(changes)
    return ActionContext(**base)


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube(token=TOKEN) as fake:
        yield fake


@pytest.fixture
def kubeconfig(kube: FakeKube, tmp_path: Path) -> str:
    return str(kube.kubeconfig(tmp_path, namespace="ml"))
