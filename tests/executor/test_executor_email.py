"""The `email` step against a real local SMTP server (aiosmtpd): plain, AUTH, STARTTLS, TLS."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

if TYPE_CHECKING:
    from tests.executor.conftest import RunExecutor, TlsCert

# Plain-text AUTH is what the "none" tests exercise on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

USER, PASSWORD = "mailer@example.org", "pa55-w0rd-secret"
CREDENTIALS_ENV = {
    "TASKFORGE_SECRET_SMTP_USERNAME": USER,
    "TASKFORGE_SECRET_SMTP_PASSWORD": PASSWORD,
}


@dataclass
class Inbox:
    """An aiosmtpd handler that keeps what it receives and refuses some recipients."""

    port: int = 0
    received: list[tuple[list[str], EmailMessage]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, _: Any
    ) -> str:
        if address.startswith("busy@"):
            return "450 4.2.1 Mailbox busy, try later"
        if address.startswith("nobody@"):
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append((list(envelope.rcpt_tos), message))
        return "250 Message accepted"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == USER.encode()
            and data.password == PASSWORD.encode()
        )
        if ok:
            self.logins.append(USER)
        return AuthResult(success=ok, handled=False)  # handled=False: reply 535 for us


StartSmtp = Callable[..., Inbox]


@pytest.fixture
def smtp_server(tls_cert: TlsCert, port_factory: Callable[[], int]) -> Iterator[StartSmtp]:
    """Start an SMTP server: `security` none|starttls|tls, `auth` to require login."""
    controllers: list[Controller] = []

    def start(security: str = "none", auth: bool = False) -> Inbox:
        inbox = Inbox(port=port_factory())
        kwargs: dict[str, Any] = {"authenticator": inbox.authenticate, "auth_required": auth}
        if security == "starttls":
            kwargs.update(tls_context=tls_cert.server_context(), require_starttls=True)
        else:
            kwargs["auth_require_tls"] = False
        if security == "tls":
            kwargs["ssl_context"] = tls_cert.server_context()
        controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port, **kwargs)
        controller.start()
        controllers.append(controller)
        return inbox

    yield start
    for controller in controllers:
        controller.stop()


def email_config(inbox: Inbox, **extra: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": inbox.port,
        "security": "none",
        "from": "Taskforge <taskforge@example.org>",
        "to": ["ops@example.org"],
        "subject": "Nightly run finished",
        "body": "All 12 steps succeeded.\n",
        **extra,
    }


CREDS = {
    "usernameFrom": {"name": "smtp", "key": "user"},
    "passwordFrom": {"name": "smtp", "key": "password"},
}


def test_plain_smtp(run_executor: RunExecutor, smtp_server: StartSmtp) -> None:
    inbox = smtp_server()
    config = email_config(inbox, to=["ops@example.org", "dev@example.org"])
    result = run_executor("email", config)

    assert result.code == 0, result.stdout
    outputs = result.outputs
    assert outputs["to"] == ["ops@example.org", "dev@example.org"]
    assert outputs["messageId"].endswith("@example.org>")
    ((recipients, message),) = inbox.received
    assert recipients == ["ops@example.org", "dev@example.org"]
    assert message["Subject"] == "Nightly run finished"
    assert message["From"] == "Taskforge <taskforge@example.org>"
    assert message["Message-ID"] == outputs["messageId"]
    assert message.get_content().replace("\r\n", "\n") == "All 12 steps succeeded.\n"
    assert "sent <" in result.stdout


def test_smtp_auth(run_executor: RunExecutor, smtp_server: StartSmtp) -> None:
    inbox = smtp_server(auth=True)
    result = run_executor("email", email_config(inbox, **CREDS), env=CREDENTIALS_ENV)

    assert result.code == 0, result.stdout
    assert inbox.logins == [USER]
    assert len(inbox.received) == 1
    assert PASSWORD not in result.everything()
    assert USER not in result.everything()


def test_wrong_password_is_permanent_and_redacted(
    run_executor: RunExecutor, smtp_server: StartSmtp
) -> None:
    inbox = smtp_server(auth=True)
    env = {**CREDENTIALS_ENV, "TASKFORGE_SECRET_SMTP_PASSWORD": "wrong-pa55word"}
    result = run_executor("email", email_config(inbox, **CREDS), env=env)

    assert result.code == 78
    assert "535" in result.message["error"]
    assert "wrong-pa55word" not in result.everything()
    assert inbox.received == []


def test_auth_required_but_no_credentials_is_permanent(
    run_executor: RunExecutor, smtp_server: StartSmtp
) -> None:
    inbox = smtp_server(auth=True)
    result = run_executor("email", email_config(inbox))

    assert result.code == 78
    assert "530" in result.message["error"]


def test_starttls_with_auth(
    run_executor: RunExecutor, smtp_server: StartSmtp, tls_cert: TlsCert
) -> None:
    inbox = smtp_server("starttls", auth=True)
    config = email_config(inbox, security="starttls", **CREDS)
    result = run_executor("email", config, env={**CREDENTIALS_ENV, **tls_cert.trust_env()})

    assert result.code == 0, result.stdout
    assert inbox.logins == [USER]
    assert len(inbox.received) == 1


def test_implicit_tls(run_executor: RunExecutor, smtp_server: StartSmtp, tls_cert: TlsCert) -> None:
    inbox = smtp_server("tls")
    result = run_executor("email", email_config(inbox, security="tls"), env=tls_cert.trust_env())

    assert result.code == 0, result.stdout
    assert len(inbox.received) == 1


def test_untrusted_certificate_is_permanent(
    run_executor: RunExecutor, smtp_server: StartSmtp
) -> None:
    inbox = smtp_server("starttls")
    result = run_executor("email", email_config(inbox, security="starttls"))

    assert result.code == 78
    assert "certificate verification failed" in result.message["error"]
    assert inbox.received == []


def test_starttls_not_offered_is_permanent(
    run_executor: RunExecutor, smtp_server: StartSmtp
) -> None:
    inbox = smtp_server("none")
    result = run_executor("email", email_config(inbox, security="starttls"))

    assert result.code == 78
    assert "STARTTLS" in result.message["error"]


@pytest.mark.parametrize(
    ("recipient", "exit_code", "reply"),
    [("busy@example.org", 75, "450"), ("nobody@example.org", 78, "550")],
)
def test_recipient_refusal_follows_the_smtp_code(
    run_executor: RunExecutor, smtp_server: StartSmtp, recipient: str, exit_code: int, reply: str
) -> None:
    inbox = smtp_server()
    result = run_executor("email", email_config(inbox, to=[recipient]))

    assert result.code == exit_code
    assert f"{recipient} ({reply})" in result.message["error"]
    assert inbox.received == []


def test_partial_refusal_is_permanent_to_avoid_duplicates(
    run_executor: RunExecutor, smtp_server: StartSmtp
) -> None:
    inbox = smtp_server()
    config = email_config(inbox, to=["ops@example.org", "nobody@example.org"])
    result = run_executor("email", config)

    assert result.code == 78
    assert "refused some recipients: nobody@example.org (550)" in result.message["error"]
    assert result.outputs["refused"] == ["nobody@example.org"]
    assert [r for r, _ in inbox.received] == [["ops@example.org"]]


def test_connection_refused_is_retryable(run_executor: RunExecutor, closed_port: int) -> None:
    config = {**email_config(Inbox(port=closed_port))}
    result = run_executor("email", config)

    assert result.code == 75
    assert "ConnectionRefusedError" in result.message["error"]


def test_credentials_not_wired_is_permanent(run_executor: RunExecutor) -> None:
    config = email_config(Inbox(port=25), **CREDS)
    result = run_executor("email", config, env={"TASKFORGE_SECRET_SMTP_USERNAME": USER})

    assert result.code == 78
    assert "passwordFrom" in result.message["error"]
    assert "TASKFORGE_SECRET_SMTP_PASSWORD" in result.message["error"]
    assert USER not in result.everything()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"to": []}, "to: List should have at least 1 item"),
        ({"security": "ssl"}, "security: Input should be"),
        ({"port": 0}, "port: Input should be greater than or equal to 1"),
        ({"subject": "two\nlines"}, "linefeed or carriage return"),
    ],
)
def test_malformed_email_config(
    run_executor: RunExecutor, change: dict[str, Any], field: str
) -> None:
    result = run_executor("email", {**email_config(Inbox(port=25)), **change})

    assert result.code == 78
    assert result.message["error"].startswith("invalid email config: ")
    assert field in result.message["error"]
