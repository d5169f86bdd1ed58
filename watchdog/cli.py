"""The `model-watchdog` command: argv → one command; every line of output is written here.

`main(argv)` returns the exit code: 0 success, 1 invalid configuration or a failed check,
2 usage or runtime error, 3 unusable state store.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
from typing import Any, Callable, TextIO

from watchdog import __version__
from watchdog.clock import Clock, SystemClock, rfc3339
from watchdog.config.loader import LoadedConfig, default_config_path, load
from watchdog.errors import ConfigError, WatchdogError
from watchdog.text.printable import SafeWriter, one_line
from watchdog.redact import RedactingFilter, Redactor, collecting, install, redact, uninstall
from watchdog.samples import format_labels

Out = TextIO


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", default=argparse.SUPPRESS,
                        help="config file (default: $MODEL_WATCHDOG_CONFIG, else ./watchdog.yaml)")
    common.add_argument("--log-level", default=argparse.SUPPRESS, choices=["debug", "info", "warning", "error"])
    parser = argparse.ArgumentParser(prog="model-watchdog", parents=[common],
                                     description="Guard ML models in production: evaluate trigger rules, roll back, alert.")
    parser.add_argument("--version", action="version", version=f"model-watchdog {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("run", parents=[common], help="run the daemon")
    sub.add_parser("validate", parents=[common], help="check the config, every rule file and the API token files; exit 1 on problems")
    check = sub.add_parser("check", parents=[common], help="evaluate every rule once against live sources, without acting")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.add_argument("--gap", type=float, default=2.0,
                       help="seconds between the two scrapes that give rates something to work with (default 2)")
    status = sub.add_parser("status", parents=[common], help="targets, holds and rule states from the state store")
    status.add_argument("--json", action="store_true")
    history = sub.add_parser("history", parents=[common], help="why each decision was taken, with values")
    history.add_argument("--target", help="only this target")
    history.add_argument("--limit", type=int, default=50, help="newest N events (default 50)")
    history.add_argument("--json", action="store_true")
    demo = sub.add_parser("demo", parents=[common], help="run the bundled demo: a simulated model degrades and is rolled back")
    demo.add_argument("--quiet", action="store_true", help="print only the summary")
    test = sub.add_parser("test", parents=[common], help="run rule unit tests (YAML files, like promtool test rules)")
    test.add_argument("files", nargs="+", metavar="FILE", help="rule-test files, e.g. rules/tests/*.yaml")
    test.add_argument("--run", metavar="REGEX", help="only the tests whose name matches")
    schema = sub.add_parser("schema", parents=[common], help="print the JSON Schema of the config file (or of rule files)")
    schema.add_argument("--rules", action="store_true", help="the schema of rule files instead")
    explain = sub.add_parser("explain", parents=[common],
                             help="evaluate one rule now, step by step, without acting or writing state")
    explain.add_argument("target")
    explain.add_argument("rule")
    explain.add_argument("--json", action="store_true", help="machine-readable output")
    explain.add_argument("--gap", type=float, default=2.0,
                         help="seconds between the two fetches that give rates something to work with (default 2)")
    backtest = sub.add_parser("backtest", parents=[common],
                              help="replay the rules over the sources' history: what would have fired, and when")
    backtest.add_argument("targets", nargs="*", metavar="TARGET", help="only these targets (default: all)")
    backtest.add_argument("--from", dest="start", required=True, metavar="TIME",
                          help="RFC 3339, 'now', or relative to now: --from -6h, --from -7d")
    backtest.add_argument("--to", dest="end", default="now", metavar="TIME", help="as --from (default: now)")
    backtest.add_argument("--step", metavar="DURATION", help="time between evaluations (default: the config's interval)")
    backtest.add_argument("--rules", nargs="+", metavar="GLOB", default=(),
                          help="rule files to try instead of the config's rule_files (e.g. not deployed yet)")
    backtest.add_argument("--incidents", metavar="FILE",
                          help="YAML list of known bad periods {start, end, name, target, rules}: detection delay, "
                               "false positives, a suggested threshold")
    backtest.add_argument("--json", action="store_true", help="machine-readable output")
    incidents = sub.add_parser("incidents", parents=[common],
                               help="rollback incidents as timelines: breach, fired, acted, recovered")
    incidents.add_argument("target", nargs="?", help="only this target")
    incidents.add_argument("--limit", type=int, default=20, help="newest N incidents (default 20)")
    incidents.add_argument("--json", action="store_true", help="machine-readable output")
    from watchdog.commands.manual import register
    COMMANDS.update(register(sub, common))
    return parser


def main(argv: list[str] | None = None, out: Out | None = None, err: Out | None = None, clock: Clock | None = None) -> int:
    """`clock`: what every command reads the time from (the daemon's, for `run`); tests pass a FakeClock."""
    # Whatever is printed, data from outside cannot send escape sequences to the terminal.
    out = SafeWriter(out or sys.stdout)  # type: ignore[assignment]
    err = SafeWriter(err or sys.stderr)  # type: ignore[assignment]
    args = _parser().parse_args(_dash_values(sys.argv[1:] if argv is None else argv))
    args.clock = clock or SystemClock()
    # This run's secrets, and only they, are masked in what it prints and logs (the daemon's, for `run`).
    args.redactor = Redactor()
    previous = install(args.redactor)
    try:
        with collecting(args.redactor):  # the configuration's secrets, the API tokens', the plugins'
            return _run(args, out, err)
    finally:
        uninstall(args.redactor, previous)


def _run(args: argparse.Namespace, out: Out, err: Out) -> int:
    _setup_logging(getattr(args, "log_level", "info" if args.command == "run" else "warning"), err, args.redactor)
    command: Callable[[argparse.Namespace, Out, Out], int] = COMMANDS[args.command]
    try:
        return command(args, out, err)
    except ConfigError as exc:
        for problem in exc.problems:
            print(redact(str(problem)), file=err)
        print(f"{len(exc.problems)} problem(s) found", file=err)
        return exc.exit_code
    except WatchdogError as exc:
        print(f"model-watchdog: error: {redact(str(exc))}", file=err)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


_TIME_OPTIONS = ("--from", "--to")


def _dash_values(argv: list[str]) -> list[str]:
    """`--from -6h` as typed: a relative time after a time option is its value, not an option."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if i > 0 and argv[i - 1] in _TIME_OPTIONS and arg[:2].startswith("-") and arg[1:2].isdigit():
            out[-1] = f"{argv[i - 1]}={arg}"
            continue
        out.append(arg)
    return out


def _setup_logging(level: str, err: Out, redactor: Redactor) -> None:
    handler = logging.StreamHandler(err)
    handler.setFormatter(_OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(redactor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class _OneLineFormatter(logging.Formatter):
    """One record, one line: a newline inside a message (a label value, an echoed answer) is
    written as `\\n` and cannot forge a record. Tracebacks keep their lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = one_line(record.message)
        return super().formatMessage(record)


def _load(args: argparse.Namespace) -> LoadedConfig:
    return load(default_config_path(getattr(args, "config", None)))


def _open_store(loaded: LoadedConfig) -> Any:
    from watchdog.state import open_store
    return open_store(loaded.state_path)


# -- commands -------------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace, out: Out, err: Out) -> int:
    from watchdog.runtime import gctune, memory
    memory.limit_arenas()  # before any thread allocates: at most 2 glibc malloc arenas
    # Loading builds a large long-lived heap: the serving thresholds already (no collection of
    # the older generations every few thousand objects); Daemon.start settles (collects) once.
    gc.set_threshold(*gctune.THRESHOLD)
    from watchdog.daemon import Daemon
    return Daemon(_load(args), clock=args.clock, redactor=args.redactor).serve()


def cmd_validate(args: argparse.Namespace, out: Out, err: Out) -> int:
    from watchdog.web.apitokens import read_tokens
    loaded = _load(args)
    tokens = read_tokens(loaded)  # the checks the daemon makes at start-up: exists, readable, private
    for warning in tokens.warnings:
        print(f"warning: {redact(str(warning))}", file=err)
    if tokens.problems:
        raise ConfigError(tokens.problems)
    print(f"{loaded.path}: OK — {len(loaded.rules)} rules for {len(loaded.config.targets)} targets "
          f"in {len(loaded.rule_files)} rule files", file=out)
    _explain_splits(loaded, out)
    return 0


def _explain_splits(loaded: LoadedConfig, out: Out) -> None:
    """For each `split_by` rule file: which target a series goes to."""
    from watchdog.rules.split import explain
    files: dict[tuple[str, str], dict[str, None]] = {}
    for lr in loaded.rules:
        if lr.split_by is not None:
            files.setdefault((lr.file, lr.split_by), {})[lr.target] = None
    for (file, label), targets in files.items():
        routed = [(t, loaded.config.targets[t].variables) for t in targets if t in loaded.config.targets]
        print(f"{file}: split_by {label}: {explain(label, routed)}", file=out)


def cmd_check(args: argparse.Namespace, out: Out, err: Out) -> int:
    from watchdog.commands.check import run_check
    rows = run_check(_load(args), gap=args.gap, clock=args.clock)
    if args.json:
        print(json.dumps(rows, indent=2, default=str), file=out)
    else:
        _table(out, ["target", "rule", "series", "value", "threshold", "verdict"],
               [[r["target"], r["rule"], _series(r["labels"]), _num(r["value"]), r["threshold"],
                 r["verdict"] + (f" ({r['reason']})" if r["verdict"] not in ("ok", "breach") else "")] for r in rows])
    return 1 if any(r["verdict"] == "breach" for r in rows) else 0


def cmd_status(args: argparse.Namespace, out: Out, err: Out) -> int:
    from watchdog.web.status import store_snapshot
    loaded = _load(args)
    store = _open_store(loaded)
    try:
        snap = store_snapshot(loaded, store)
    finally:
        store.close()
    if args.json:
        print(json.dumps(snap, indent=2), file=out)
        return 0
    for name, t in snap["targets"].items():
        held = f"HELD since {t['hold']['since']} ({t['hold']['reason']}; decision {t['hold']['decision_id']})" if t["held"] else "guarding"
        print(one_line(f"target {name}: version {t['version'] or 'unknown'} — {held}"), file=out)
        rows = []
        for r in t["rules"]:
            for s in r["series"] or [{"labels": {}, "state": "inactive", "value": None, "reason": "not evaluated yet"}]:
                rows.append([r["rule"], _series(s["labels"]), s["state"], _num(s["value"]), s.get("reason") or ""])
        _table(out, ["rule", "series", "state", "value", "why"], rows, indent="  ")
        for d in t["decisions"]:
            print(one_line(f"  decision {d['id']} ({d['rule']}): {d['status']} at {d['created_at']}"), file=out)
    return 0


def cmd_history(args: argparse.Namespace, out: Out, err: Out) -> int:
    loaded = _load(args)
    store = _open_store(loaded)
    try:
        events = store.history(target=args.target, limit=args.limit)
    finally:
        store.close()
    if args.json:
        print(json.dumps([{"id": e.id, "at": rfc3339(e.at), "target": e.target, "rule": e.rule, "series": e.series,
                           "kind": e.kind, "message": e.message, "data": e.data} for e in events], indent=2), file=out)
        return 0
    for e in events:
        where = e.target + (f"/{e.rule}" if e.rule else "") + (_series(e.series) if e.series else "")
        values = ", ".join(f"{k}={_num(v) if isinstance(v, float) else v}" for k, v in sorted(e.data.items())
                           if k in ("value", "threshold", "samples", "decision_id", "version", "previous_version") and v not in (None, {}))
        print(one_line(f"{rfc3339(e.at)}  {e.kind:<8} {where}: {e.message}" + (f"  [{values}]" if values else "")),
              file=out)
    return 0


def cmd_test(args: argparse.Namespace, out: Out, err: Out) -> int:
    import re

    from watchdog.ruletest import load_test_file, report, run_file
    try:
        select = re.compile(args.run) if args.run else None
    except re.error as exc:
        print(f"model-watchdog: error: --run {args.run!r}: {exc}", file=err)
        return 2
    if not hasattr(args, "log_level"):  # the engine's warnings would drown the test report
        logging.getLogger().setLevel(logging.ERROR)
    failed = False
    for path in args.files:
        try:
            test_file = load_test_file(path)
        except ConfigError as exc:
            print(f"Unit Testing: {path}", file=out)
            for problem in exc.problems:
                print(f"  {problem}", file=out)
            print(f"  FAILED: {len(exc.problems)} problem(s) in the test file", file=out)
            failed = True
            continue
        results = run_file(test_file, select)
        print("\n".join(report(path, results)), file=out)
        failed |= not all(r.passed for r in results)
    return 1 if failed else 0


def cmd_schema(args: argparse.Namespace, out: Out, err: Out) -> int:
    from watchdog.config.jsonschema import config_schema, dump, rules_schema
    out.write(dump(rules_schema() if args.rules else config_schema()))
    return 0


def cmd_explain(args: argparse.Namespace, out: Out, err: Out) -> int:
    from watchdog.commands.explain import format_text, run_explain
    report = run_explain(_load(args), args.target, args.rule, gap=args.gap, clock=args.clock)
    if args.json:
        print(json.dumps(report, indent=2), file=out)
    else:
        print("\n".join(format_text(report)), file=out)
    return 0


def cmd_backtest(args: argparse.Namespace, out: Out, err: Out) -> int:
    from watchdog.commands.backtest import Request, fired, format_text, load_incidents, parse_time, run
    from watchdog.durations import parse_duration
    loaded = _load(args)
    now = args.clock.now()
    try:
        step = parse_duration(args.step) if args.step else None
    except ValueError as exc:
        print(f"model-watchdog: error: --step {args.step!r}: {exc}", file=err)
        return 2
    request = Request(start=parse_time(args.start, now), end=parse_time(args.end, now), step=step,
                      targets=tuple(args.targets), rule_files=tuple(args.rules),
                      incidents=load_incidents(args.incidents, now) if args.incidents else None)
    if not hasattr(args, "log_level"):  # the replayed engine's own log lines would drown the report
        logging.getLogger().setLevel(logging.ERROR)
    notes: list[str] = []
    report = run(loaded, request, notes)
    for note in notes:
        print(f"note: {note}", file=err)
    if args.json:
        print(json.dumps(report, indent=2), file=out)
    else:
        print("\n".join(format_text(report)), file=out)
    return 1 if fired(report) else 0


def cmd_incidents(args: argparse.Namespace, out: Out, err: Out) -> int:
    from watchdog.rollback.timeline import as_json, incidents
    loaded = _load(args)
    store = _open_store(loaded)
    try:
        items = [as_json(i) for i in incidents(store, args.target, max(1, args.limit))]
    finally:
        store.close()
    if args.json:
        print(json.dumps(items, indent=2), file=out)
        return 0
    for i in items:
        print(one_line(f"{i['target']}/{i['rule']} decision {i['decision_id']} ({i['status']})"), file=out)
        for key in ("breach_started_at", "pending_at", "fired_at", "decided_at", "actuated_at", "verified_at",
                    "recovered_at"):
            print(f"  {key.removesuffix('_at'):<15} {i[key] or '-'}", file=out)
        print("  " + ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {_num(i[k])}s"
                               for k in ("time_to_detect_s", "time_to_act_s", "time_to_recover_s")), file=out)
    return 0


def cmd_demo(args: argparse.Namespace, out: Out, err: Out) -> int:
    from watchdog.demo.run import run_demo
    return run_demo(out, quiet=args.quiet, clock=args.clock)


COMMANDS: dict[str, Callable[[argparse.Namespace, Out, Out], int]] = {
    "run": cmd_run, "validate": cmd_validate, "check": cmd_check, "status": cmd_status,
    "history": cmd_history, "demo": cmd_demo, "test": cmd_test, "schema": cmd_schema, "explain": cmd_explain,
    "backtest": cmd_backtest, "incidents": cmd_incidents,
}


# -- formatting --------------------------------------------------------------------------------------

def _series(labels: dict[str, str]) -> str:
    return format_labels(tuple(sorted(labels.items()))) if labels else "-"


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(out: Out, header: list[str], rows: list[list[Any]], indent: str = "") -> None:
    cells = [header] + [[one_line(str(c)) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for row in cells:
        print(indent + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip(), file=out)


if __name__ == "__main__":
    raise SystemExit(main())
