"""After a rollback: did it restore health? The rules that fired must recover within the
target's `verify_window`; if not, escalate — and roll back further only while `max_depth`
allows. Pending verifications live in the state store's meta table (one per target), so a
restart or another replica carries on with them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from watchdog.state.base import StateStore


@dataclass(frozen=True)
class Verification:
    target: str
    decision_id: str
    rule: str
    until: float
    depth: int  # 1 for the first rollback of an incident


def _key(target: str) -> str:
    return f"verify:{target}"


def start(store: StateStore, verification: Verification) -> None:
    store.set_meta(_key(verification.target), json.dumps(asdict(verification), sort_keys=True))


def pending(store: StateStore, target: str) -> Verification | None:
    raw = store.get_meta(_key(target))
    return Verification(**json.loads(raw)) if raw else None


def finish(store: StateStore, target: str) -> None:
    store.set_meta(_key(target), "")
