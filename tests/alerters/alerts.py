"""Alerts for the vendor alerter tests: one incident, firing and then resolved."""

from __future__ import annotations

import logging

import pytest

from watchdog.alerters.base import Alert


def make_alert(**changes: object) -> Alert:
    base = dict(status="firing", kind="rule", dedup_key="fraud-model/p99-latency/abc", target="fraud-model",
                rule="p99-latency", severity="critical", summary="p99 latency 0.93 > 0.5", at="2026-01-02T03:04:05Z",
                value=0.93, threshold={"above": 0.5}, labels={"env": "prod"}, decision_id="dec-42", version="v7",
                runbook_url="https://runbooks.example.com/fraud/p99", description="Latency of the fraud model is high.")
    base.update(changes)
    return Alert(**base)  # type: ignore[arg-type]


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Everything logged during the test, as people would see it."""
    return "\n".join(record.getMessage() for record in caplog.records if record.levelno >= logging.DEBUG)
