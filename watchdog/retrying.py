"""Retries with exponential backoff and jitter that end at once on shutdown.

Every plugin that talks to another system over a network retries the same way, through
`call_with_retries`: tenacity does the bookkeeping; this module fixes the policy (which
errors are retried, how long to wait, when to give up) in one place.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, TypeVar

import tenacity
from tenacity import RetryCallState

from watchdog.errors import WatchdogError

T = TypeVar("T")
log = logging.getLogger(__name__)


class Interrupted(WatchdogError):
    """Retrying gave up because `stop` was set; `last_error` is the failure before that."""

    def __init__(self, describe: str, last_error: BaseException | None):
        self.last_error = last_error
        detail = f" (last error: {last_error})" if last_error is not None else " before the first attempt"
        super().__init__(f"{describe}: interrupted by shutdown{detail}")


class _stop_at_deadline(tenacity.stop.stop_base):
    """Stop when the next attempt would start after `deadline` (a `time.monotonic()` value)."""

    def __init__(self, deadline: float):
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return time.monotonic() + retry_state.upcoming_sleep >= self.deadline


class _wait_with_hint(tenacity.wait.wait_base):
    """Exponential backoff with jitter, stretched to a server's `retry_after` hint (capped)."""

    def __init__(self, initial: float, maximum: float):
        # Composed rather than wait_exponential_jitter, whose arguments differ across tenacity 8/9.
        self.backoff = tenacity.wait_exponential(multiplier=initial, max=maximum) + tenacity.wait_random(0, initial)
        self.maximum = maximum

    def __call__(self, retry_state: RetryCallState) -> float:
        wait = min(self.backoff(retry_state), self.maximum)
        outcome = retry_state.outcome
        hint = getattr(outcome.exception(), "retry_after", None) if outcome and outcome.failed else None
        if isinstance(hint, (int, float)) and hint > wait:
            wait = min(float(hint), self.maximum)
        return wait


def call_with_retries(fn: Callable[[], T], *, attempts: int, initial_wait: float, max_wait: float,
                      stop: threading.Event, retry_on: Callable[[BaseException], bool],
                      describe: str, deadline: float | None = None) -> T:
    """Call `fn` up to `attempts` times while `retry_on(error)` says the error is transient.

    Waits grow exponentially from `initial_wait` (plus up to `initial_wait` of jitter, so
    many watchdogs do not retry in step) and never exceed `max_wait`. `deadline` is a
    `time.monotonic()` instant after which no new attempt starts. Setting `stop` ends a wait
    at once and raises `Interrupted`; otherwise the last error is re-raised unchanged.
    `describe` names the operation in log lines and must already be redacted.
    """
    last: list[BaseException] = []

    def guarded() -> T:
        # tenacity starts the next attempt after a sleep cut short; shutdown must not.
        if stop.is_set():
            raise Interrupted(describe, last[-1] if last else None)
        try:
            return fn()
        except Exception as exc:
            last.append(exc)
            raise

    stops = tenacity.stop_after_attempt(max(1, attempts)) | tenacity.stop_when_event_set(stop)
    if deadline is not None:
        stops = stops | _stop_at_deadline(deadline)
    retrying = tenacity.Retrying(
        stop=stops,
        wait=_wait_with_hint(initial_wait, max(max_wait, initial_wait)),
        retry=tenacity.retry_if_exception(lambda exc: not isinstance(exc, Interrupted) and retry_on(exc)),
        sleep=tenacity.sleep_using_event(stop),
        before_sleep=lambda state: _log_retry(describe, attempts, state),
        reraise=True,
    )
    try:
        return retrying(guarded)
    except Interrupted:
        raise
    except Exception as exc:
        # stop_when_event_set ends retrying with the attempt's own error; say why we gave up.
        if stop.is_set() and retry_on(exc):
            raise Interrupted(describe, exc) from exc
        raise
    finally:
        # tenacity keeps the last attempt's actions (bound methods of `retrying`) in a
        # thread-local of `retrying`: a reference cycle per call on a long-lived thread (the
        # rollback executor's), ≈ 30 objects that only the cyclic collector frees, and the
        # daemon's runs rarely (runtime/gctune.py).
        state = getattr(retrying, "iter_state", None)  # tenacity ≥ 8.3
        if state is not None:
            state.reset()


def _log_retry(describe: str, attempts: int, state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.upcoming_sleep
    log.warning("%s failed (attempt %d of %d): %s; retrying in %.1fs",
                describe, state.attempt_number, attempts, error, wait)
