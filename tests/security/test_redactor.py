"""The secret registry is a `Redactor` the daemon owns: a reload forgets the secrets the new
configuration no longer has, and one daemon's (or test's) secrets never mask another's output."""

from __future__ import annotations

from watchdog import redact
from watchdog.config.loader import load
from watchdog.daemon import Daemon
from watchdog.redact import MASK, Redactor
from watchdog.state.sqlite import SQLiteStateStore

from tests.fixtures.rules import ERROR_RULE
from tests.harness import Harness

REMOVED, KEPT = "tok-removed-0123456789", "kept-secret-0123456789"
FIRST = 'first: {type: webhook, url: "http://127.0.0.1:9/first"}'
SECOND = 'second: {type: webhook, url: "http://127.0.0.1:9/second"}'


def _daemon(h: Harness, name: str = "daemon.db", **load_args) -> Daemon:  # type: ignore[no-untyped-def]
    return Daemon(load(h.dir / "watchdog.yaml", **load_args), clock=h.clock,
                  store=SQLiteStateStore(str(h.dir / name)))


def test_a_reload_forgets_a_removed_secret_and_keeps_the_others(tmp_path) -> None:
    h = Harness(tmp_path, ERROR_RULE)
    config = tmp_path / "watchdog.yaml"
    base = config.read_text()
    kept = base.replace(SECOND, SECOND[:-1] + f', headers: {{X-Key: "{KEPT}"}}}}')
    config.write_text(kept.replace(FIRST, FIRST[:-1] + f', headers: {{Authorization: "Bearer {REMOVED}"}}}}'))
    daemon = _daemon(h)
    try:
        assert daemon.redactor.redact(f"{REMOVED} {KEPT}") == f"{MASK} {MASK}"
        config.write_text("sources: [")  # a rejected reload forgets nothing
        assert daemon.reload()[0] is False
        assert daemon.redactor.redact(f"{REMOVED} {KEPT}") == f"{MASK} {MASK}"
        config.write_text(kept)
        ok, message = daemon.reload()
        assert ok, message
        assert daemon.redactor.redact(f"{REMOVED} {KEPT}") == f"{REMOVED} {MASK}"
        assert redact.redact(f"{REMOVED} {KEPT}") == f"{REMOVED} {MASK}"  # what plugins and the log filter use
    finally:
        daemon.close()


def test_one_daemons_secret_url_does_not_mask_another_daemons_database_dsn(tmp_path) -> None:
    """The case a suite-wide registry got wrong: a secret webhook URL ending in `/watchdog` (one
    test) masked the PostgreSQL DSN `…/watchdog` another test printed."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Harness(tmp_path / "a", ERROR_RULE)
    config = a.dir / "watchdog.yaml"
    config.write_text(config.read_text().replace(FIRST, 'first: {type: webhook, url: "http://127.0.0.1:9/${HOOK}"}'))
    first = _daemon(a, environ={"HOOK": "watchdog"})  # `${VAR}` in a URL's path: the URL is a secret
    dsn = "postgresql://watchdog@127.0.0.1:5432/watchdog"
    try:
        assert first.redactor.redact_dsn(dsn) != dsn  # the path is masked where it is a secret ...
        second = _daemon(Harness(tmp_path / "b", ERROR_RULE))
        try:
            assert second.redactor.redact_dsn(dsn) == dsn  # ... and nowhere else
            assert redact.redact_dsn(dsn) == dsn
        finally:
            second.close()
    finally:
        first.close()


def test_what_one_redactor_learns_another_does_not_know() -> None:
    one, other = Redactor(), Redactor()
    one.register_url("https://hooks.example/services/T0/B0/watchdog", secret=True)
    assert one.redact("/services/T0/B0/watchdog") == MASK
    assert other.redact("/services/T0/B0/watchdog") == "/services/T0/B0/watchdog"


def test_a_cli_run_masks_its_own_secrets_only(tmp_path) -> None:
    import io

    from watchdog.cli import main

    h = Harness(tmp_path, ERROR_RULE)
    config = h.dir / "watchdog.yaml"
    config.write_text(config.read_text().replace(FIRST, FIRST[:-1] + f', headers: {{Authorization: "Bearer {REMOVED}"}}}}'))
    before = redact.current()
    assert main(["validate", "-c", str(config)], io.StringIO(), io.StringIO()) == 0
    assert redact.current() is before  # the run's redactor was the process's only while it ran
    assert REMOVED not in before.secrets()
