"""The PromQL parser's LALR tables, built once at development time and shipped as JSON.

Building the parser from `grammar.lark` (lark's grammar analysis and LALR construction) cost
≈ 75 ms of CPU at every start; loading the tables lark built from `grammar.tables.json` costs
≈ 6 ms. The file is plain JSON (lark's own `memo_serialize` output, tuples and dicts with
non-string keys tagged), read with `json.loads` and turned into the parser by lark's
deserializer, which instantiates only its own classes: no pickle, and nothing from outside the
package (lark's `cache=True` would load a pickle from the temporary directory: not used).

The file records the lark version and the SHA-256 of the grammar it was built from; when
either differs (another lark installed, the grammar edited) or the file cannot be read, the
parser is built from the grammar as before. Regenerate after editing the grammar or
upgrading lark (tests/promql/test_grammar_tables.py fails until then):

    .venv/bin/python -m watchdog.promql.grammar_tables
"""

from __future__ import annotations

import hashlib
import json
import logging
from importlib import resources
from pathlib import Path
from typing import Any

import lark
from lark import Lark
from lark.grammar import Rule
from lark.lexer import TerminalDef

log = logging.getLogger(__name__)

TABLES = "grammar.tables.json"
OPTIONS: dict[str, Any] = {"parser": "lalr", "lexer": "contextual", "maybe_placeholders": True}
_TUPLE, _PAIRS = "\x00tuple", "\x00pairs"  # tags no key of lark's data has


def build(grammar: str) -> Lark:
    """The parser built from the grammar's text (the reference)."""
    return Lark(grammar, **OPTIONS)


def load(grammar: str) -> Lark | None:
    """The parser from the shipped tables, if they were built from `grammar` by this lark."""
    try:
        text = resources.files(__package__).joinpath(TABLES).read_text(encoding="utf-8")
        tables = json.loads(text, object_hook=_decode)
        if tables["lark"] != lark.__version__ or tables["grammar_sha256"] != _digest(grammar):
            log.debug("%s was built from another grammar or lark version: building the parser", TABLES)
            return None
        return Lark._load_from_dict(tables["data"], tables["memo"])
    except Exception as exc:  # noqa: BLE001 — any failure only costs the build from the grammar
        log.debug("cannot load %s (%s): building the parser", TABLES, exc)
        return None


def dump(grammar: str) -> str:
    """The JSON text of `grammar.tables.json` for `grammar` and the installed lark."""
    data, memo = build(grammar).memo_serialize([TerminalDef, Rule])
    tables = {"lark": lark.__version__, "grammar_sha256": _digest(grammar), "options": OPTIONS,
              "data": _encode(data), "memo": _encode(memo)}
    return json.dumps(tables, separators=(",", ":")) + "\n"


def _digest(grammar: str) -> str:
    return hashlib.sha256(grammar.encode("utf-8")).hexdigest()


def _encode(value: Any) -> Any:
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: _encode(v) for k, v in value.items()}
        return {_PAIRS: [[_encode(k), _encode(v)] for k, v in value.items()]}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"lark's serialized parser holds a {type(value).__name__}, which the tables cannot keep")


def _decode(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        if _TUPLE in obj:
            return tuple(obj[_TUPLE])
        if _PAIRS in obj:
            return dict(obj[_PAIRS])
    return obj


def main() -> None:
    here = Path(__file__).resolve().parent
    grammar = (here / "grammar.lark").read_text(encoding="utf-8")
    (here / TABLES).write_text(dump(grammar), encoding="utf-8")
    print(f"wrote {here / TABLES}")


if __name__ == "__main__":
    main()
