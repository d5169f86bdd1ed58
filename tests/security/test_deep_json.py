"""JSON nested a megabyte deep ("[[[[…") from any peer: Python's parser stops with a
RecursionError, which is not a ValueError. Each reader turns it into its ordinary "not JSON"
answer instead of a server error, a traceback per tick, or a crashed command."""

from __future__ import annotations

import pytest

from watchdog.http import rest
from watchdog.errors import SourceError
from watchdog.web.server import ApiServer, AuthPolicy, Response, Route
from watchdog.http import fetch as httpfetch

DEEP = b"[" * 200_000
TOKEN = "deep-json-token-0123456789"


def test_the_api_answers_400_to_a_body_nested_too_deeply():
    routes = [Route("GET", "/status", lambda _req: Response(200, {})),
              Route("POST", "/echo", lambda req: Response(200, req.body), mutating=True)]
    server = ApiServer("127.0.0.1:0", routes, AuthPolicy(tokens=(("ci", TOKEN),)))
    try:
        for method, path, headers in (("GET", "/status", {}), ("POST", "/echo", {"authorization": f"Bearer {TOKEN}"})):
            answer = server.dispatch(method, path, headers, DEEP)
            assert answer.status == 400 and "nested too deeply" in answer.body["error"], (method, answer)
    finally:
        server.stop()


def test_a_source_answer_nested_too_deeply_is_a_parse_error():
    with pytest.raises(SourceError) as failed:
        httpfetch.decode_json(httpfetch.Fetched(200, {}, DEEP), "registry http://127.0.0.1:1/v1")
    assert failed.value.kind == "parse" and "nested too deeply" in str(failed.value)


def test_an_actuator_answer_nested_too_deeply_is_no_document():
    assert rest._json(DEEP) is None
