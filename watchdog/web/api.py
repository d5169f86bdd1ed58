"""The HTTP API's routes: each one a thin adapter from a request to the daemon or the
operator functions. Mutating routes are marked so the server demands the bearer token.

The operator recorded in the history is the *name of the token* that authenticated the
request; the body's `by` (or an `X-Operator` header) is only a note next to the reason."""

from __future__ import annotations

from typing import Any, Protocol

from prometheus_client.exposition import CONTENT_TYPE_LATEST

from watchdog.errors import WatchdogError
from watchdog.config.loader import LoadedConfig
from watchdog.durations import parse_duration
from watchdog.clock import Clock
from watchdog.metrics import DaemonMetrics
from watchdog.rollback import manual
from watchdog.rollback.drill import Drill
from watchdog.state.base import StateStore
from watchdog.web.server import Request, Response, Route

MAX_LIMIT = 1000  # the most history events / releases one request returns


class BadLimit(WatchdogError, ValueError):
    pass


def parse_limit(query: dict[str, str], default: int = 50) -> int:
    """`?limit=` as a count in 0..MAX_LIMIT (larger is clamped); anything else is a 400."""
    raw = query.get("limit")
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise BadLimit(f"limit must be a whole number from 0 to {MAX_LIMIT}, got {raw[:40]!r}")
    return min(int(raw), MAX_LIMIT)


def _limit_or_400(req: Request) -> int | Response:
    try:
        return parse_limit(req.query)
    except BadLimit as exc:
        return Response(400, {"error": str(exc)})

class GuardingDaemon(Protocol):
    """What the routes ask of the running daemon (watchdog.daemon.Daemon, which builds the
    routes and so is not imported here)."""

    metrics: DaemonMetrics
    clock: Clock
    loaded: LoadedConfig
    store: StateStore

    def status(self) -> dict[str, Any]: ...
    def drill_now(self, target: str, by: str) -> Drill: ...
    def reload(self) -> tuple[bool, str]: ...
    def health(self) -> tuple[bool, str]: ...
    def ready(self) -> tuple[bool, str]: ...


def routes(daemon: GuardingDaemon) -> list[Route]:
    def metrics(_: Request) -> Response:
        # Text format only, whatever the Accept header asks (no OpenMetrics negotiation),
        # written piece by piece as it is formatted (DaemonMetrics.chunks): never whole in memory.
        return Response(200, daemon.metrics.chunks(), CONTENT_TYPE_LATEST)

    def probe(check):  # type: ignore[no-untyped-def]
        def handler(_: Request) -> Response:
            ok, reason = check()
            return Response(200 if ok else 503, reason + "\n", "text/plain; charset=utf-8")
        return handler

    def status(_: Request) -> Response:
        return Response(200, daemon.status())

    def page(_: Request) -> Response:
        from watchdog.web.statuspage import render
        from watchdog.rollback.timeline import with_plots
        thresholds = {(lr.target, lr.rule.name): lr.rule.threshold() for lr in daemon.loaded.rules}
        incidents = with_plots(daemon.store, thresholds, daemon.clock.now())
        return Response(200, render(daemon.status(), incidents=incidents), "text/html; charset=utf-8")

    def history(req: Request) -> Response:
        limit = _limit_or_400(req)
        if isinstance(limit, Response):
            return limit
        events = daemon.store.history(target=req.query.get("target"), limit=limit)
        return Response(200, [{"id": e.id, "at": e.at, "target": e.target, "rule": e.rule, "series": e.series,
                               "kind": e.kind, "message": e.message, "data": e.data} for e in events])

    def who(req: Request) -> str:
        return req.operator or "api"

    def why(req: Request, field: str = "reason") -> str:
        """The body's free text, with what the client *claims* about its operator as a note."""
        text = str(req.body.get(field, ""))
        claimed = req.body.get("by") or req.headers.get("x-operator")
        if claimed and str(claimed) != req.operator:
            shown = "".join(c if c.isprintable() else "?" for c in str(claimed)[:200])
            text = (text + " " if text else "") + f"(note: by {shown})"
        return text

    def pause(req: Request) -> Response:
        try:
            duration = parse_duration(str(req.body["for"])) if req.body.get("for") else None
        except ValueError as exc:
            return Response(400, {"error": f'"for": {exc}'})
        done = manual.pause(daemon.loaded, daemon.store, req.params["target"], who(req),
                              why(req), daemon.clock.now(), duration)
        return Response(200, {"message": done.message})

    def resume(req: Request) -> Response:
        done = manual.resume(daemon.loaded, daemon.store, req.params["target"], who(req),
                               why(req), daemon.clock.now())
        return Response(200, {"message": done.message})

    def rollback(req: Request) -> Response:
        if not isinstance(req.body.get("to"), (str, type(None))):
            return Response(400, {"error": '"to" must be a version string'})
        done = manual.manual_rollback(daemon.loaded, daemon.store, req.params["target"], who(req),
                                        why(req), daemon.clock.now(),
                                        req.body.get("to"), bool(req.body.get("force", False)))
        return Response(202, {"message": done.message, "decision_id": done.decision_id})

    def approve(req: Request) -> Response:
        done = manual.approve(daemon.loaded, daemon.store, req.params["decision"], who(req), daemon.clock.now())
        return Response(200, {"message": done.message})

    def reject(req: Request) -> Response:
        done = manual.reject(daemon.loaded, daemon.store, req.params["decision"], who(req), why(req), daemon.clock.now())
        return Response(200, {"message": done.message})

    def release(req: Request) -> Response:
        components = req.body.get("components")
        if not isinstance(components, dict) or not all(isinstance(v, (str, int)) for v in components.values()):
            return Response(400, {"error": 'body needs "components": {"name": "version", ...}'})
        done = manual.record_release(daemon.loaded, daemon.store, req.params["target"],
                                       {str(k): str(v) for k, v in components.items()}, who(req),
                                       why(req, "note"), daemon.clock.now(), origin="api")
        return Response(201, {"message": done.message})

    def releases(req: Request) -> Response:
        limit = _limit_or_400(req)
        if isinstance(limit, Response):
            return limit
        return Response(200, [{"id": r.id, "state": r.state, "created_at": r.created_at, "components": r.components,
                               "note": r.note, "origin": r.origin}
                              for r in daemon.store.releases(req.params["target"], limit=limit)])

    def drill(req: Request) -> Response:
        done = daemon.drill_now(req.params["target"], who(req))
        return Response(200, done.as_json())

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
        Route("POST", "/api/v1/targets/{target}/drill", drill, mutating=True),
        Route("POST", "/api/v1/decisions/{decision}/approve", approve, mutating=True),
        Route("POST", "/api/v1/decisions/{decision}/reject", reject, mutating=True),
        Route("POST", "/api/v1/reload", reload, mutating=True),
        Route("GET", "/api/v1/targets/{target}/releases", releases),
        Route("POST", "/api/v1/targets/{target}/releases", release, mutating=True),
    ]
