"""Operator subcommands of `model-watchdog`: pause, resume, approve, reject, rollback,
versions and reload. Parsing and printing only; the work is in watchdog.rollback.manual."""

from __future__ import annotations

import argparse
import getpass
import json
import os
from typing import Any, Callable, TextIO

from watchdog.rollback import manual
from watchdog.clock import rfc3339
from watchdog.config.loader import LoadedConfig, default_config_path, load
from watchdog.durations import parse_duration
from watchdog.rollback.pauses import ALL
from watchdog.text.printable import one_line
from watchdog.redact import redact

Out = TextIO


def register(sub: Any, common: argparse.ArgumentParser) -> dict[str, Callable[[argparse.Namespace, Out, Out], int]]:
    p = sub.add_parser("pause", parents=[common], help="rules keep evaluating and alerting but never act")
    p.add_argument("target", nargs="?", help="the target to pause (or --all)")
    p.add_argument("--all", action="store_true", help="pause every target")
    p.add_argument("--reason", required=True, help="recorded in the history")
    p.add_argument("--for", dest="duration", help="pause for this long (e.g. 2h); default until resumed")
    r = sub.add_parser("resume", parents=[common], help="lift a pause and/or the hold on a target after a rollback")
    r.add_argument("target", nargs="?")
    r.add_argument("--all", action="store_true", help="lift the pause of all targets")
    r.add_argument("--reason", default="", help="recorded in the history")
    a = sub.add_parser("approve", parents=[common], help="approve a rollback that waits for a human")
    a.add_argument("decision_id")
    j = sub.add_parser("reject", parents=[common], help="dismiss a rollback that waits for a human")
    j.add_argument("decision_id")
    j.add_argument("--reason", default="")
    b = sub.add_parser("rollback", parents=[common], help="roll a target back by hand, through the same journal and guards")
    b.add_argument("target")
    b.add_argument("--to", dest="to_version", help="the version to roll back to (default: the last good one)")
    b.add_argument("--reason", required=True)
    b.add_argument("--force", action="store_true", help="override cooldown, rate limits, bad marks and holds")
    b.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long for the daemon to carry it out and report the outcome")
    v = sub.add_parser("versions", parents=[common], help="versions seen for a target, with bad marks")
    v.add_argument("target")
    v.add_argument("--json", action="store_true")
    reload = sub.add_parser("reload", parents=[common], help="tell the running daemon to re-read its config and rule files")
    reload.add_argument("--timeout", type=float, default=ANSWER_TIMEOUT, metavar="SECONDS",
                        help=f"wait at most this long for the daemon's answer (default {ANSWER_TIMEOUT:g})")
    rel = sub.add_parser("release", parents=[common], help="record what was deployed together (from CI/CD)")
    rel.add_argument("target")
    rel.add_argument("--component", action="append", default=[], metavar="NAME=VERSION", required=True,
                     help="a deployed component and its version; repeat for each")
    rel.add_argument("--note", default="")
    drill = sub.add_parser("drill", parents=[common], help="rehearse a rollback: plan, guards and actuator reachability, "
                                                          "without acting")
    drill.add_argument("target")
    drill.add_argument("--json", action="store_true")
    rels = sub.add_parser("releases", parents=[common], help="a target's releases: current, healthy, bad, unknown")
    rels.add_argument("target")
    rels.add_argument("--limit", type=int, default=20)
    rels.add_argument("--json", action="store_true")
    return {"drill": cmd_drill, "release": cmd_release, "releases": cmd_releases, "reload": cmd_reload, "pause": cmd_pause, "resume": cmd_resume, "approve": cmd_approve, "reject": cmd_reject,
            "rollback": cmd_rollback, "versions": cmd_versions}


def operator_name() -> str:
    for variable in ("MODEL_WATCHDOG_OPERATOR", "SUDO_USER"):
        if os.environ.get(variable):
            return os.environ[variable]
    try:
        return getpass.getuser()
    except Exception:  # no user database entry in some containers
        return "unknown"


def _refuse_on_lost_state(loaded: LoadedConfig) -> None:
    """A daemon noticed its SQLite state file deleted or replaced and has not been restarted
    since (it left `<state file>.lost`): a write here would go into a file it never reads."""
    path = loaded.state_path
    if path.startswith("sqlite:///"):
        path = path[len("sqlite:///"):]  # as watchdog.state.open_store reads it
    if "://" in path:
        return
    marker = os.path.abspath(path) + ".lost"
    if not os.path.isfile(marker):
        return
    try:
        with open(marker, "rb") as f:
            reason = str(json.loads(f.read(65536)).get("reason", ""))[:500]
    except (OSError, ValueError, RecursionError, AttributeError):
        reason = ""
    raise manual.OperatorError(
        f"refused, nothing was changed: the daemon on {os.path.abspath(path)} lost that file"
        f"{f' ({reason})' if reason else ''}; it does not read what this command would write. Restore the "
        f"file and restart the daemon first ({marker} is removed when it starts)")


def _with_store(args: argparse.Namespace, work: Callable[[LoadedConfig, Any], manual.Done], out: Out) -> int:
    from watchdog.state import open_store
    loaded = load(default_config_path(getattr(args, "config", None)))
    _refuse_on_lost_state(loaded)
    store = open_store(loaded.state_path)
    try:
        done = work(loaded, store)
    finally:
        store.close()
    print(one_line(done.message), file=out)
    return 0


def _target(args: argparse.Namespace) -> str:
    if args.all == bool(args.target):
        raise manual.OperatorError("name a target or give --all (not both)")
    return ALL if args.all else args.target


def cmd_pause(args: argparse.Namespace, out: Out, err: Out) -> int:
    duration = parse_duration(args.duration) if args.duration else None
    return _with_store(args, lambda loaded, store: manual.pause(
        loaded, store, _target(args), operator_name(), args.reason, args.clock.now(), duration), out)


def cmd_resume(args: argparse.Namespace, out: Out, err: Out) -> int:
    return _with_store(args, lambda loaded, store: manual.resume(
        loaded, store, _target(args), operator_name(), args.reason, args.clock.now()), out)


def cmd_approve(args: argparse.Namespace, out: Out, err: Out) -> int:
    return _with_store(args, lambda loaded, store: manual.approve(loaded, store, args.decision_id, operator_name(), args.clock.now()), out)


def cmd_reject(args: argparse.Namespace, out: Out, err: Out) -> int:
    return _with_store(args, lambda loaded, store: manual.reject(
        loaded, store, args.decision_id, operator_name(), args.reason, args.clock.now()), out)


def cmd_rollback(args: argparse.Namespace, out: Out, err: Out) -> int:
    from watchdog.state import open_store
    code = _with_store(args, lambda loaded, store: _remember(args, manual.manual_rollback(
        loaded, store, args.target, operator_name(), args.reason, args.clock.now(), args.to_version, args.force)), out)
    if code or not args.wait:
        return code
    loaded = load(default_config_path(getattr(args, "config", None)))
    deadline = args.clock.monotonic() + args.wait
    while args.clock.monotonic() < deadline:
        store = open_store(loaded.state_path)
        try:
            decision = store.get_decision(args.decision_id)
        finally:
            store.close()
        if decision is not None and decision.status in ("succeeded", "failed", "skipped"):
            print(f"rollback {decision.id}: {decision.status}", file=out)
            return 0 if decision.status == "succeeded" else 2
        args.clock.sleep(0.5)
    print(f"rollback {args.decision_id} not finished after {args.wait:g}s (is the daemon running?)", file=err)
    return 2


def _remember(args: argparse.Namespace, done: manual.Done) -> manual.Done:
    args.decision_id = done.decision_id
    return done


def cmd_versions(args: argparse.Namespace, out: Out, err: Out) -> int:
    from watchdog.state import open_store
    loaded = load(default_config_path(getattr(args, "config", None)))
    if args.target not in loaded.config.targets:
        raise manual.OperatorError(f"unknown target '{args.target}' (targets: {', '.join(loaded.config.targets)})")
    store = open_store(loaded.state_path)
    try:
        records = store.versions(args.target)
    finally:
        store.close()
    if args.json:
        print(json.dumps([{"version": v.version, "first_seen": rfc3339(v.first_seen), "last_seen": rfc3339(v.last_seen),
                           "bad": v.bad, "bad_reason": v.bad_reason} for v in records], indent=2), file=out)
        return 0
    for i, v in enumerate(records):
        mark = "BAD " if v.bad else ("current" if i == 0 else "good")
        why = f"  ({v.bad_reason})" if v.bad else ""
        print(one_line(f"{v.version:<20} {mark:<8} first seen {rfc3339(v.first_seen)}, last seen {rfc3339(v.last_seen)}{why}"),
              file=out)
    return 0


#: the most of the daemon's answer `reload` reads, and how long it waits for all of it
MAX_ANSWER = 64 * 1024
ANSWER_TIMEOUT = 30.0


def cmd_reload(args: argparse.Namespace, out: Out, err: Out) -> int:
    """POST /api/v1/reload on the running daemon (same as `kill -HUP`), with the API token.
    Whatever listens on the port is a peer like any other: its answer is read within one
    deadline and a size cap, and shown redacted (it never echoes our token to the terminal)."""
    from watchdog.web.apitokens import read_tokens
    from watchdog.web.server import parse_listen

    loaded = load(default_config_path(getattr(args, "config", None)))
    host, port = parse_listen(loaded.config.listen)
    token = read_tokens(loaded).first()
    if token is None:
        raise manual.OperatorError("reload over the API needs a readable api.tokens or api.token_file; "
                                     "or send SIGHUP to the daemon (systemctl reload model-watchdog)")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # a wildcard listen: ask locally
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    status, body = _post_to_daemon(where, "/api/v1/reload", token, args.timeout)
    message = body.get("message") or body.get("error")
    if status != 200:
        print(redact(str(message or f"the daemon at {where} answered HTTP {status}")), file=err)
        return 1
    print(redact(str(message or "reloaded")), file=out)
    return 0


def _post_to_daemon(where: str, path: str, token: str, timeout: float) -> tuple[int, dict[str, Any]]:
    """(status, JSON object) of a POST to the daemon's API at `where` (host:port), read within
    `timeout` seconds in all and at most MAX_ANSWER bytes; OperatorError for anything else."""
    from watchdog.http.transport import HttpFailure, Transport

    url = f"http://{where}{path}"
    transport = Transport(trust_env=False)  # the daemon is local: no proxy from the environment
    try:
        answer = transport.send("POST", url, timeout=timeout, data=b"{}", max_body=MAX_ANSWER,
                                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    except HttpFailure as exc:
        if exc.kind == "too_large":
            raise manual.OperatorError(f"the answer from {where} is larger than {MAX_ANSWER} bytes: "
                                         "is it the model-watchdog daemon?") from None
        if exc.kind == "timeout":
            raise manual.OperatorError(f"no complete answer from {where} within {timeout:g}s "
                                         "(--timeout); the reload may still happen") from None
        raise manual.OperatorError(f"cannot reach the daemon at {where}: {redact(str(exc))}") from None
    finally:
        transport.close()
    raw = answer.content
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise manual.OperatorError(f"the answer from {where} (HTTP {answer.status_code}) is not a JSON object: "
                                     "is it the model-watchdog daemon?")
    return answer.status_code, body


def cmd_release(args: argparse.Namespace, out: Out, err: Out) -> int:
    components = {}
    for item in args.component:
        name, sep, version = item.partition("=")
        if not sep or not name or not version:
            raise manual.OperatorError(f"--component takes NAME=VERSION, got {item!r}")
        components[name.strip()] = version.strip()
    return _with_store(args, lambda loaded, store: manual.record_release(
        loaded, store, args.target, components, operator_name(), args.note, args.clock.now()), out)


def cmd_releases(args: argparse.Namespace, out: Out, err: Out) -> int:
    from watchdog.state import open_store
    loaded = load(default_config_path(getattr(args, "config", None)))
    if args.target not in loaded.config.targets:
        raise manual.OperatorError(f"unknown target '{args.target}' (targets: {', '.join(loaded.config.targets)})")
    store = open_store(loaded.state_path)
    try:
        releases = store.releases(args.target, limit=args.limit)
    finally:
        store.close()
    rows = [{"id": r.id, "state": r.state, "current": i == 0,
             "recorded": rfc3339(r.created_at), "origin": r.origin, "components": r.components, "note": r.note}
            for i, r in enumerate(releases)]
    if args.json:
        print(json.dumps(rows, indent=2), file=out)
        return 0
    for row in rows:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(row["components"].items()))
        state = f"current, {row['state']}" if row["current"] else row["state"]
        note = f": {row['note']}" if row["note"] else ""
        print(one_line(f"#{row['id']:<5} {state:<17} {row['recorded']}  {shown}  ({row['origin']}{note})"), file=out)
    return 0


def cmd_drill(args: argparse.Namespace, out: Out, err: Out) -> int:
    from watchdog.rollback.drill import run_drill, unknown_version
    from watchdog.state import open_store
    loaded = load(default_config_path(getattr(args, "config", None)))
    _refuse_on_lost_state(loaded)
    store = open_store(loaded.state_path)
    try:
        problem = unknown_version(store, args.target) if args.target in loaded.config.targets else None
        drill = run_drill(loaded, store, args.target, args.clock.now(), operator_name(), problem)
    finally:
        store.close()
    if args.json:
        print(json.dumps(drill.as_json(), indent=2), file=out)
        return 0 if drill.ready else 1
    print(one_line(f"rollback drill for {drill.target} at {drill.at}: running {drill.version or 'unknown'}, "
                   f"would go to {drill.to or 'the previous version (unknown here)'}"), file=out)
    if drill.blocked:
        print(f"  blocked: {one_line(drill.blocked)}", file=out)
    print(f"  guards now: {one_line(drill.guard)}", file=out)
    if drill.deferred:
        print(f"deferred: {one_line(drill.deferred)} (a rollback is deferred too; nothing was read)", file=out)
        return 1
    for i, step in enumerate(drill.steps, 1):
        what = f"{step.component} {step.from_version or '?'}→{step.to_version} via {step.actuator}" if step.component \
            else step.actuator
        print(f"  step {i}: {one_line(what)}", file=out)
        print(f"    plan: {one_line(step.plan or '-')}", file=out)
        print(f"    sees: {one_line(step.sees) if step.sees is not None else 'cannot read the running version'}", file=out)
        if step.problem:
            print(f"    PROBLEM: {one_line(step.problem)}", file=out)
    print("ready: a rollback now would run these steps" if drill.ready else "NOT ready: fix the problems above", file=out)
    return 0 if drill.ready else 1
