"""Email alerts over SMTP (`type: email`): one plain-text message per firing and per resolved event.

The module is `smtp.py` because `watchdog/alerters/email.py` would shadow the standard
library's `email` package inside this package.

TLS is on by default and verified against the system's CAs (or `ca_file`): STARTTLS on port
587, or implicit TLS with `ssl: true` (port 465). A password is never sent over a plain
connection. Temporary failures (network errors, SMTP 4xx replies) are retried with backoff;
permanent ones (5xx, failed login, TLS errors) fail at once with the server's reply.

The server is a peer like any other: each attempt (greeting to QUIT) must end within
`timeout` × CONVERSATION_STEPS in all — a server that answers every step just in time, or
trickles a reply, is cut off there, and it holds up only this delivery, not the alerts behind
it — and reads at most MAX_REPLIES bytes of replies (a reply may have any number of lines).
"""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
import threading
from dataclasses import dataclass
import email.policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from watchdog import redact
from watchdog.http import body as httpbody
from watchdog.alerters import _common
from watchdog.alerters.base import Alert, Alerter
from watchdog.config.fields import option
from watchdog.errors import AlerterError
from watchdog.retrying import Interrupted, call_with_retries

log = logging.getLogger(__name__)
_MAX_WAIT = 30.0
_SUBJECT_LIMIT = 200
CONVERSATION_STEPS = 6  # one attempt ends within this many `timeout`s, whatever the server does
MAX_REPLIES = 64 * 1024  # bytes of server replies one attempt reads at most
# Python folds a header longer than 78 characters right after "Subject:", which some readers
# show as a leading space; our headers are short (RFC 5322 allows lines up to 998).
_POLICY = email.policy.default.clone(max_line_length=998)


@dataclass(frozen=True)
class EmailOptions:
    """Email over SMTP with STARTTLS (default) or implicit TLS; plain-text body with every alert field."""

    host: str = option(help="SMTP server (relay or submission host)")
    to: list[str] = option(help="recipient addresses")
    from_: str = option(key="from", help="sender address (From:)")
    port: int | None = option(None, help="SMTP port; default 587, or 465 with ssl: true")
    starttls: bool = option(True, help="upgrade the connection with STARTTLS (ignored with ssl: true)")
    ssl: bool = option(False, help="implicit TLS from the first byte (SMTPS, usually port 465)")
    username: str | None = option(None, help="login name; needs password and TLS")
    password: str | None = option(None, secret=True, help="login password; a secret, or password_file: PATH")
    ca_file: str | None = option(None, help="PEM bundle of CAs trusted for this server instead of the system's")
    subject_prefix: str = option("[model-watchdog]", help="put before every subject")
    timeout: float = option(10.0, duration=True, help="timeout of each SMTP conversation step")
    retries: int = option(3, help="attempts after the first on network errors and SMTP 4xx replies")
    backoff: float = option(1.0, duration=True, help="first pause between attempts; doubles each time, up to 30s")


class _Failure(AlerterError):
    def __init__(self, message: str, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


class EmailAlerter(Alerter):
    Options = EmailOptions

    def __init__(self, name: str, options: EmailOptions):
        if options.password:
            redact.register_secret(options.password)
        _check(options)
        super().__init__(name, options)
        self._port = options.port or (465 if options.ssl else 587)

    def send(self, alert: Alert, stop: threading.Event) -> None:
        message = self.message(alert)
        shown = f"email alerter '{self.name}': SMTP {self.options.host}:{self._port}"
        attempts = 0

        def attempt() -> None:
            nonlocal attempts
            attempts += 1
            self._deliver(message)

        try:
            call_with_retries(attempt, attempts=self.options.retries + 1,
                              initial_wait=self.options.backoff, max_wait=_MAX_WAIT, stop=stop, describe=shown,
                              retry_on=lambda exc: isinstance(exc, _Failure) and exc.retryable)
        except Interrupted as exc:
            raise AlerterError(str(exc)) from None
        except _Failure as exc:
            tried = f" (gave up after {attempts} attempts)" if attempts > 1 else ""
            raise AlerterError(f"{shown} failed: {exc}{tried}") from None

    def message(self, alert: Alert) -> EmailMessage:
        """The email for `alert`: subject line, headers, plain-text body."""
        o = self.options
        msg = EmailMessage(policy=_POLICY)
        resolved = "RESOLVED: " if alert.status == "resolved" else ""
        subject = f"{o.subject_prefix} {resolved}[{alert.severity.upper()}] {_common.where(alert)}: {alert.summary}"
        msg["Subject"] = _common.truncate(_common.one_line(subject), _SUBJECT_LIMIT)
        msg["From"] = o.from_
        msg["To"] = ", ".join(o.to)
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = make_msgid(domain="model-watchdog")
        msg["X-Model-Watchdog-Status"] = alert.status
        msg["X-Model-Watchdog-Dedup-Key"] = _common.one_line(alert.dedup_key)
        msg.set_content(body(alert))
        return msg

    def _deliver(self, message: EmailMessage) -> None:
        o = self.options
        context = ssl.create_default_context(cafile=o.ca_file)
        within = o.timeout * CONVERSATION_STEPS
        with httpbody.Deadline(within) as deadline:
            try:
                smtp: smtplib.SMTP = (_SMTPS(deadline, o.host, self._port, timeout=o.timeout, context=context) if o.ssl
                                      else _SMTP(deadline, o.host, self._port, timeout=o.timeout))
                with smtp:
                    if o.starttls and not o.ssl:
                        smtp.starttls(context=context)
                    if o.username and o.password:
                        smtp.login(o.username, o.password)
                    refused = smtp.send_message(message)
            except Exception as exc:  # every smtplib/ssl/socket error becomes one described failure
                if deadline.passed():
                    raise _Failure(f"no complete SMTP conversation within {within:g}s (timeout × "
                                   f"{CONVERSATION_STEPS})", retryable=True) from None
                raise _classify(exc) from None
        if refused:
            log.warning("SMTP %s:%s refused some recipients: %s", o.host, self._port,
                        redact.redact(", ".join(f"{rcpt} ({code})" for rcpt, (code, _) in refused.items())))


class _Bounded:
    """For smtplib.SMTP and SMTP_SSL: the conversation's socket is handed to `deadline` (shut
    down when it passes, whatever step is blocked; again after STARTTLS replaces it), and the
    replies are read through a budget of MAX_REPLIES bytes."""

    sock: socket.socket | None
    file: object

    def __init__(self, deadline: httpbody.Deadline, *args: object, **kwargs: object):
        self._deadline = deadline
        self._left = MAX_REPLIES
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]  # connects and reads the greeting

    def getreply(self) -> tuple[int, bytes]:
        if self.file is None and self.sock is not None:
            self._deadline.attach(self)  # type: ignore[arg-type]
            self.file = _Budgeted(self.sock.makefile("rb"), self)
        return super().getreply()  # type: ignore[misc, no-any-return]

    def spend(self, size: int) -> None:
        self._left -= size
        if self._left < 0:
            raise OSError(f"the server's replies passed {MAX_REPLIES} bytes")


class _Budgeted:
    """The reply stream, charging every line to the conversation's budget."""

    def __init__(self, raw: object, owner: _Bounded):
        self._raw, self._owner = raw, owner

    def readline(self, size: int = -1) -> bytes:
        line: bytes = self._raw.readline(size)  # type: ignore[attr-defined]
        self._owner.spend(len(line))
        return line

    def close(self) -> None:
        self._raw.close()  # type: ignore[attr-defined]


class _SMTP(_Bounded, smtplib.SMTP):
    pass


class _SMTPS(_Bounded, smtplib.SMTP_SSL):
    pass


def body(alert: Alert) -> str:
    lines = [_common.title(alert), ""]
    if alert.description:
        lines += [alert.description, ""]
    width = max(len(name) for name in _common.details(alert))
    lines += [f"{name.ljust(width)}  {value}" for name, value in _common.details(alert).items()]
    lines += ["", "-- ", "model-watchdog"]
    return "\n".join(lines) + "\n"


def _check(o: EmailOptions) -> None:
    if not o.to:
        raise ValueError("to must list at least one recipient")
    if o.timeout <= 0:
        raise ValueError("timeout must be greater than 0")
    if o.retries < 0:
        raise ValueError("retries must not be negative")
    if bool(o.username) != bool(o.password):
        raise ValueError("give both username and password (or password_file), or neither")
    if o.password and not (o.ssl or o.starttls):
        raise ValueError("refusing to send the password unencrypted: keep starttls: true or set ssl: true")
    for name, value in (("from", o.from_), *(("to", t) for t in o.to)):
        if "@" not in value or any(c in value for c in "\r\n"):
            raise ValueError(f"{name}: {value!r} is not an email address")


def _classify(exc: BaseException) -> _Failure:
    """A failed attempt, described for people; temporary ones are retryable."""
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return _Failure(f"login refused: {_reply(exc)} (check username and password)", retryable=False)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return _Failure(f"{exc} (set starttls: false only for a server on a trusted network, or use ssl: true)",
                        retryable=False)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        shown = ", ".join(f"{rcpt}: {code} {_text(msg)}" for rcpt, (code, msg) in exc.recipients.items())
        return _Failure(f"all recipients refused: {redact.redact(shown)}", retryable=all(400 <= c < 500 for c in codes))
    if isinstance(exc, smtplib.SMTPResponseException):
        return _Failure(f"server replied {_reply(exc)}", retryable=400 <= exc.smtp_code < 500)
    if isinstance(exc, ssl.SSLError):
        return _Failure(f"TLS error: {redact.redact(str(exc))}; if the server uses a private CA, set ca_file",
                        retryable=False)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return _Failure("timed out", retryable=True)
    if isinstance(exc, (smtplib.SMTPException, OSError)):
        return _Failure(f"{type(exc).__name__}: {redact.redact(str(exc))}", retryable=True)
    return _Failure(f"{type(exc).__name__}: {redact.redact(str(exc))}", retryable=False)


def _reply(exc: smtplib.SMTPResponseException) -> str:
    return f"{exc.smtp_code} {_text(exc.smtp_error)}"


def _text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    return redact.redact(" ".join(text.split()))
