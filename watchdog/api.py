"""The HTTP API's routes: each one a thin adapter from a request to the daemon or the
operator functions. Mutating routes are marked so the server demands the bearer token."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from watchdog import operator
from watchdog.durations import parse_duration
from watchdog.server import Request, Response, Route

if TYPE_CHECKING:
    from watchdog.daemon import Daemon


def routes(daemon: "Daemon") -> list[Route]:
    def metrics(_: Request) -> Response:
        return Response(200, generate_latest(daemon.metrics.registry), CONTENT_TYPE_LATEST)

    def probe(check):  # type: ignore[no-untyped-def]
        def handler(_: Request) -> Response:
            ok, reason = check()
            return Response(200 if ok else 503, reason + "\n", "text/plain; charset=utf-8")
        return handler

    def status(_: Request) -> Response:
        return Response(200, daemon.status())

    def page(_: Request) -> Response:
        from watchdog.statuspage import render
        return Response(200, render(daemon.status()), "text/html; charset=utf-8")

    def history(req: Request) -> Response:
        events = daemon.store.history(target=req.query.get("target"), limit=int(req.query.get("limit", "50")))
        return Response(200, [{"id": e.id, "at": e.at, "target": e.target, "rule": e.rule, "series": e.series,
                               "kind": e.kind, "message": e.message, "data": e.data} for e in events])

    def who(req: Request) -> str:
        return str(req.body.get("by") or req.headers.get("x-operator") or "api")

    def pause(req: Request) -> Response:
        duration = parse_duration(req.body["for"]) if req.body.get("for") else None
        done = operator.pause(daemon.loaded, daemon.store, req.params["target"], who(req),
                              str(req.body.get("reason", "")), time.time(), duration)
        return Response(200, {"message": done.message})

    def resume(req: Request) -> Response:
        done = operator.resume(daemon.loaded, daemon.store, req.params["target"], who(req),
                               str(req.body.get("reason", "")), time.time())
        return Response(200, {"message": done.message})

    def rollback(req: Request) -> Response:
        done = operator.manual_rollback(daemon.loaded, daemon.store, req.params["target"], who(req),
                                        str(req.body.get("reason", "")), time.time(),
                                        req.body.get("to"), bool(req.body.get("force", False)))
        return Response(202, {"message": done.message, "decision_id": done.decision_id})

    def approve(req: Request) -> Response:
        done = operator.approve(daemon.loaded, daemon.store, req.params["decision"], who(req), time.time())
        return Response(200, {"message": done.message})

    def reject(req: Request) -> Response:
        done = operator.reject(daemon.loaded, daemon.store, req.params["decision"], who(req), str(req.body.get("reason", "")), time.time())
        return Response(200, {"message": done.message})

    def release(req: Request) -> Response:
        components = req.body.get("components")
        if not isinstance(components, dict) or not all(isinstance(v, (str, int)) for v in components.values()):
            return Response(400, {"error": 'body needs "components": {"name": "version", ...}'})
        done = operator.record_release(daemon.loaded, daemon.store, req.params["target"],
                                       {str(k): str(v) for k, v in components.items()}, who(req),
                                       str(req.body.get("note", "")), time.time(), origin="api")
        return Response(201, {"message": done.message})

    def releases(req: Request) -> Response:
        return Response(200, [{"id": r.id, "state": r.state, "created_at": r.created_at, "components": r.components,
                               "note": r.note, "origin": r.origin}
                              for r in daemon.store.releases(req.params["target"], limit=int(req.query.get("limit", "50")))])

    def reload(_: Request) -> Response:
        ok, message = daemon.reload()
        return Response(200 if ok else 422, {"reloaded": ok, "message": message})

    return [
        Route("GET", "/", page),
        Route("GET", "/metrics", metrics),
        Route("GET", "/healthz", probe(daemon.health)),
        Route("GET", "/readyz", probe(daemon.ready)),
        Route("GET", "/api/v1/status", status),
        Route("GET", "/api/v1/history", history),
        Route("POST", "/api/v1/targets/{target}/pause", pause, mutating=True),
        Route("POST", "/api/v1/targets/{target}/resume", resume, mutating=True),
        Route("POST", "/api/v1/targets/{target}/rollback", rollback, mutating=True),
        Route("POST", "/api/v1/decisions/{decision}/approve", approve, mutating=True),
        Route("POST", "/api/v1/decisions/{decision}/reject", reject, mutating=True),
        Route("POST", "/api/v1/reload", reload, mutating=True),
        Route("GET", "/api/v1/targets/{target}/releases", releases),
        Route("POST", "/api/v1/targets/{target}/releases", release, mutating=True),
    ]
