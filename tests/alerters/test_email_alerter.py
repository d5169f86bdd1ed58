"""The `email` alerter against a real SMTP server: aiosmtpd on 127.0.0.1.

aiosmtpd implements RFC 5321 (SMTP) and RFC 3207 (STARTTLS) and, with an authenticator,
RFC 4954 (AUTH, refused before TLS). Handlers below answer as the RFC says mail servers do:
`451` is a temporary failure (retry later), `550` a permanent one. Most tests use a plain
connection (`starttls: false`) to keep them short; the default, STARTTLS with a verified
certificate and a login, is exercised against a test CA made here.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.needs import require_module
from tests.alerters.alerts import logged, make_alert
from tests.servers import free_port
from watchdog.alerters.smtp import EmailAlerter
from watchdog.errors import AlerterError

controller_module = require_module("aiosmtpd.controller", "aiosmtpd")
smtp_module = require_module("aiosmtpd.smtp", "aiosmtpd")

pytestmark = pytest.mark.timeout(30)

PASSWORD = "correct-horse-battery-staple"


class Mailbox:
    """An aiosmtpd handler that keeps what it receives and answers DATA as scripted."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.replies: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.replies:
            return self.replies.pop(0)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))  # type: ignore[arg-type]
        return "250 OK"


def start(mailbox: Mailbox, **smtp: Any) -> Any:
    controller = controller_module.Controller(mailbox, hostname="127.0.0.1", port=free_port(), **smtp)
    controller.start()
    return controller


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    controller = start(box)
    try:
        yield box, controller.port
    finally:
        controller.stop()


def make_alerter(port: int, **options: object) -> EmailAlerter:
    options.setdefault("starttls", False)  # the plain server; the STARTTLS tests set up TLS
    options.setdefault("backoff", 0.01)
    return EmailAlerter("mail", EmailAlerter.Options(host="127.0.0.1", port=port, from_="watchdog@example.com",
                                                     to=["oncall@example.com", "ml@example.com"], **options))


def test_firing_then_resolved_mail_with_every_field(mailbox) -> None:
    box, port = mailbox
    alerter = make_alerter(port)

    alerter.send(make_alert(), threading.Event())
    alerter.send(make_alert(status="resolved", summary="p99 latency back to 0.31"), threading.Event())

    firing, resolved = box.messages
    assert box.envelopes[0] == ("watchdog@example.com", ["oncall@example.com", "ml@example.com"])
    assert firing["Subject"] == "[model-watchdog] [CRITICAL] fraud-model/p99-latency: p99 latency 0.93 > 0.5"
    assert firing["From"] == "watchdog@example.com" and firing["To"] == "oncall@example.com, ml@example.com"
    assert firing["X-Model-Watchdog-Dedup-Key"] == "fraud-model/p99-latency/abc"
    text = firing.get_content()
    for line in ("Latency of the fraud model is high.", "value        0.93 (above 0.5)", "version      v7",
                 "decision_id  dec-42", "runbook_url  https://runbooks.example.com/fraud/p99",
                 "dedup_key    fraud-model/p99-latency/abc", "label.env    prod", "at           2026-01-02T03:04:05Z"):
        assert line in text
    assert resolved["Subject"] == "[model-watchdog] RESOLVED: [CRITICAL] fraud-model/p99-latency: p99 latency back to 0.31"
    assert resolved["X-Model-Watchdog-Dedup-Key"] == firing["X-Model-Watchdog-Dedup-Key"]
    assert resolved["Message-ID"] != firing["Message-ID"]


def test_newlines_in_the_summary_do_not_reach_the_headers(mailbox) -> None:
    box, port = mailbox

    make_alerter(port).send(make_alert(summary="line one\r\nBcc: attacker@example.com"), threading.Event())

    [message] = box.messages
    assert message["Bcc"] is None and "line one Bcc: attacker@example.com" in message["Subject"]


def test_temporary_failure_is_retried(mailbox) -> None:
    box, port = mailbox
    box.replies.append("451 4.3.0 Try again later")

    make_alerter(port).send(make_alert(), threading.Event())

    assert len(box.messages) == 1


def test_permanent_failure_fails_at_once(mailbox) -> None:
    box, port = mailbox
    box.replies.append("550 5.7.1 Message rejected as spam")

    with pytest.raises(AlerterError, match=r"email alerter 'mail': SMTP 127\.0\.0\.1:\d+ failed: "
                                           r"server replied 550 5\.7\.1 Message rejected as spam"):
        make_alerter(port).send(make_alert(), threading.Event())
    assert box.replies == [] and box.messages == []


def test_server_without_starttls_is_refused_by_default(mailbox) -> None:
    _, port = mailbox

    with pytest.raises(AlerterError, match="STARTTLS extension not supported"):
        make_alerter(port, starttls=True).send(make_alert(), threading.Event())


def test_unreachable_server_is_retried_then_reported() -> None:
    with pytest.raises(AlerterError, match=r"ConnectionRefusedError.*gave up after 2 attempts"):
        make_alerter(free_port(), retries=1).send(make_alert(), threading.Event())


# -- STARTTLS (the default) with a certificate from a test CA ---------------------------------------

@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> tuple[Path, Path, Path]:
    x509 = require_module("cryptography.x509", "cryptography")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    folder = tmp_path_factory.mktemp("tls")

    def cert(subject: str, key: Any, issuer: str, issuer_key: Any, ca: bool) -> Any:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                  critical=False))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                decipher_only=False), critical=True)
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert = cert("model-watchdog test CA", ca_key, "model-watchdog test CA", ca_key, ca=True)
    server_cert = cert("127.0.0.1", server_key, "model-watchdog test CA", ca_key, ca=False)
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return paths


@pytest.fixture
def tls_mailbox(tls_files) -> Iterator[tuple[Mailbox, int]]:
    _, cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = data.login == b"watchdog" and data.password == PASSWORD.encode()
        return smtp_module.AuthResult(success=ok, handled=False)

    box = Mailbox()
    controller = start(box, tls_context=context, require_starttls=True, authenticator=authenticator,
                       auth_required=True)
    try:
        yield box, controller.port
    finally:
        controller.stop()


def test_starttls_and_login_by_default(tls_mailbox, tls_files) -> None:
    box, port = tls_mailbox
    alerter = make_alerter(port, starttls=True, ca_file=str(tls_files[0]), username="watchdog", password=PASSWORD)
    assert EmailAlerter.Options.__dataclass_fields__["starttls"].default is True

    alerter.send(make_alert(), threading.Event())

    assert len(box.messages) == 1


def test_certificate_from_an_unknown_ca_is_refused_without_retry(tls_mailbox, caplog) -> None:
    box, port = tls_mailbox

    with pytest.raises(AlerterError, match="TLS error.*certificate verify failed.*set ca_file"):
        make_alerter(port, starttls=True, username="watchdog", password=PASSWORD).send(make_alert(), threading.Event())
    assert box.messages == [] and "retrying" not in logged(caplog)


def test_wrong_password_fails_at_once_without_showing_it(tls_mailbox, tls_files, caplog) -> None:
    _, port = tls_mailbox
    wrong = "not-the-right-password"

    with pytest.raises(AlerterError, match=r"login refused: 535 .*check username and password") as info:
        make_alerter(port, starttls=True, ca_file=str(tls_files[0]), username="watchdog",
                     password=wrong).send(make_alert(), threading.Event())
    assert wrong not in str(info.value) and wrong not in logged(caplog)


def test_password_is_never_sent_over_a_plain_connection() -> None:
    with pytest.raises(ValueError, match="refusing to send the password unencrypted"):
        make_alerter(25, username="watchdog", password=PASSWORD)


def test_implicit_tls_with_ssl_true(tls_files) -> None:
    _, cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    box = Mailbox()
    controller = start(box, ssl_context=context)
    try:
        make_alerter(controller.port, ssl=True, ca_file=str(tls_files[0])).send(make_alert(), threading.Event())
    finally:
        controller.stop()
    assert len(box.messages) == 1
