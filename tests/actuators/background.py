"""An actuator's `apply` on a thread of its own, so a test can stop it midway."""

from __future__ import annotations

import threading

from watchdog.actuators.base import ActionContext, Actuator


def apply_in_background(actuator: Actuator, context: ActionContext,
                        stop: threading.Event) -> tuple[threading.Thread, list[BaseException]]:
    """The started thread running `actuator.apply(context, stop)`, and the list that receives
    what it raised (handed to the test thread)."""
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            actuator.apply(context, stop)
        except BaseException as exc:  # noqa: BLE001  (handed to the test thread)
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome
