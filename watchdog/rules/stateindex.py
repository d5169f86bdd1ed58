"""The engine's rule states, indexed by (target, rule) and by target.

A plain `dict[(target, rule, series key)] -> SeriesState` answers "the series of this rule"
only by scanning every state: with 10,000 rules that scan, once per rule per tick, was the
tick (O(rules²)). `StateIndex` is that dict (a MutableMapping, so callers keep indexing it by
key) plus two secondary indexes kept in step on every write, so a rule's or a target's
series are found in time proportional to their own number.

Most rules have one series: the by-rule index (target → rule → …) holds that series' key
itself, and an ordered set (a dict) only for a rule with several; it is nested by target, so
no (target, rule) tuple is kept per rule (10,000 one-entry dicts and 10,000 pairs as keys were
≈ 2.8 MB at the fleet).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping

from watchdog.rules.state import SeriesState

StateKey = tuple[str, str, str]  # (target, rule, series key)


class StateIndex(MutableMapping[StateKey, SeriesState]):
    def __init__(self, items: Iterable[tuple[StateKey, SeriesState]] = ()) -> None:
        self._states: dict[StateKey, SeriesState] = {}
        self._by_rule: dict[str, dict[str, StateKey | dict[StateKey, None]]] = {}  # a key, or an ordered set
        self._by_target: dict[str, dict[StateKey, None]] = {}
        for key, state in items:
            self[key] = state

    def __getitem__(self, key: StateKey) -> SeriesState:
        return self._states[key]

    def __setitem__(self, key: StateKey, state: SeriesState) -> None:
        if key not in self._states:
            rules = self._by_rule.get(key[0])
            if rules is None:
                rules = self._by_rule[key[0]] = {}
            members = rules.get(key[1])
            if members is None:
                rules[key[1]] = key
            elif isinstance(members, dict):
                members[key] = None
            else:
                rules[key[1]] = {members: None, key: None}
            self._by_target.setdefault(key[0], {})[key] = None
        self._states[key] = state

    def __delitem__(self, key: StateKey) -> None:
        del self._states[key]
        rules = self._by_rule.get(key[0], {})
        members = rules.get(key[1])
        if isinstance(members, dict):
            _discard(rules, key[1], key)
        elif members == key:
            del rules[key[1]]
        if not rules:
            self._by_rule.pop(key[0], None)
        _discard(self._by_target, key[0], key)

    def __iter__(self) -> Iterator[StateKey]:
        return iter(self._states)

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, key: object) -> bool:
        return key in self._states

    def get(self, key: StateKey, default: SeriesState | None = None) -> SeriesState | None:  # type: ignore[override]
        return self._states.get(key, default)  # Mapping.get goes through __getitem__ and a KeyError

    def count_of_rule(self, target: str, rule: str) -> int:
        members = self._by_rule.get(target, {}).get(rule)
        return 0 if members is None else len(members) if isinstance(members, dict) else 1

    def keys_of_rule(self, target: str, rule: str) -> list[StateKey]:
        members = self._by_rule.get(target, {}).get(rule)
        return [] if members is None else list(members) if isinstance(members, dict) else [members]

    def keys_of_target(self, target: str) -> list[StateKey]:
        return list(self._by_target.get(target, ()))

    def of_target(self, target: str, rules: Iterable[str] | None = None) -> dict[StateKey, SeriesState]:
        """The target's series (of `rules` only, when given), in insertion order."""
        wanted = None if rules is None else set(rules)
        return {k: self._states[k] for k in self._by_target.get(target, ()) if wanted is None or k[1] in wanted}


def _discard(index: dict, group: object, key: StateKey) -> None:  # type: ignore[type-arg]
    members = index.get(group)
    if members is not None:
        members.pop(key, None)
        if not members:
            del index[group]
