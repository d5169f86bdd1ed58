"""Operator pauses: while a target (or everything) is paused, rules evaluate and alert but
never act. Kept in the state store's meta table so every replica and the CLI see them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Callable

from watchdog.state.base import Meta

ALL = "*"


@dataclass(frozen=True)
class Pause:
    target: str  # a target name, or "*" for all
    by: str
    reason: str
    since: float
    until: float | None  # None: until resumed

    def active(self, now: float) -> bool:
        return self.until is None or now < self.until


def _key(target: str) -> str:
    return f"pause:{target}"


def set_pause(store: Meta, pause: Pause) -> None:
    store.set_meta(_key(pause.target), json.dumps(asdict(pause), sort_keys=True))


def clear_pause(store: Meta, target: str) -> Pause | None:
    pause = get_pause(store, target)
    if pause is not None:
        store.set_meta(_key(target), "")
    return pause


def get_pause(store: Meta, target: str) -> Pause | None:
    raw = store.get_meta(_key(target))
    return Pause(**json.loads(raw)) if raw else None


def active_pause(store: Meta, target: str, now: float,
                 seen: Callable[[float, float], float] | None = None) -> Pause | None:
    """The pause that applies to `target` now: its own, else a pause of everything. `seen`
    (`watchdog.clock.StepBack.seen`): a pause for a duration begun before the wall clock
    stepped back ends that duration after its start as seen on the new clock."""
    for key in (target, ALL):
        pause = get_pause(store, key)
        if pause is not None and pause.until is not None and seen is not None:
            pause = replace(pause, until=pause.until + seen(pause.since, now) - pause.since)
        if pause is not None and pause.active(now):
            return pause
    return None
