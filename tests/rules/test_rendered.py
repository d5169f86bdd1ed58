"""`Rendered`: a target's queries rendered once, each placeholder's escaped value filled in
once for all of them (`render(..., filled)`), the same texts and errors as `render` alone."""

from __future__ import annotations

import random

from watchdog.config.templating import TemplateError, render
from watchdog.errors import WatchdogError
from watchdog.rules.verdict import Rendered

PARTS = ['up{instance="', '{{instance}}', '"}', " + x{job='", "{{job}}", "'}", " # {{target}}\n", "`{{version}}`",
         ' y{v="{{version}}"}', " {{previous_version}}", " {{nosuch}}", " z", '"\\"{{instance}}"', " {{ job }}"]
VALUES = ["10.0.0.1:9100", "a\"b", "a'b", "back\\slash", "tick`", "ctl\x01", "1.2.3", "", "rm -rf /", None]


def outcome(f):  # type: ignore[no-untyped-def]
    try:
        return f()
    except TemplateError as exc:
        return ("error", str(exc))


def test_rendered_texts_are_those_render_gives_each_query_alone() -> None:
    rng = random.Random(5)
    for _ in range(300):
        variables = {"target": rng.choice(["m1", "x'y"]), "instance": rng.choice(VALUES), "job": rng.choice(VALUES),
                     "version": rng.choice(VALUES), "previous_version": rng.choice(VALUES)}
        if rng.random() < 0.2:
            del variables["job"]
        rendered = Rendered.of(variables)
        filled: dict[tuple[str, str | None], str] = {}
        for _ in range(12):
            query = "".join(rng.choice(PARTS) for _ in range(rng.randint(1, 6)))
            alone = outcome(lambda: render(query, variables))
            assert outcome(lambda: render(query, variables, filled)) == alone, query
            text = rendered.text(query)
            if isinstance(alone, tuple):
                assert isinstance(text, WatchdogError) and str(text) == f"cannot fill in the query: {alone[1]}"
            else:
                assert text == alone
