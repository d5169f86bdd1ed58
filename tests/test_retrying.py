"""watchdog/retrying.py: a retried call leaves nothing to the cyclic collector (tests/cycles.py)."""

from __future__ import annotations

import threading

import pytest

from tests.cycles import cyclic_garbage
from watchdog.retrying import call_with_retries


class Transient(Exception):
    pass


def calls(failures: int, attempts: int = 3) -> None:
    """`call_with_retries` on a function that fails `failures` times, then answers."""
    left = [failures]

    def fn() -> str:
        if left[0]:
            left[0] -= 1
            raise Transient("try again")
        return "ok"

    for _ in range(5):
        left[0] = failures
        try:
            assert call_with_retries(fn, attempts=attempts, initial_wait=0, max_wait=0, stop=threading.Event(),
                                     retry_on=lambda exc: isinstance(exc, Transient), describe="test") == "ok"
        except Transient:
            assert failures >= attempts


@pytest.mark.parametrize("failures", [0, 1, 3], ids=["first-try", "retried", "gave-up"])
def test_a_retried_call_leaves_no_reference_cycles(failures: int) -> None:
    """On a long-lived thread (the rollback executor's, the alert sender's): tenacity's state of
    the last attempt was a cycle, ≈ 30 objects a call (the old code failed "first-try")."""
    assert cyclic_garbage(lambda: calls(failures)) == {}
