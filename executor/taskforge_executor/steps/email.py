"""The `email` step: send one plain-text message over SMTP.

SMTP says itself what is transient: 4xx replies mean "try again later" (greylisting, a
full queue) and 5xx mean "never". Connection problems are transient too. A message that
some recipients accepted and others refused is a permanent failure: retrying would mail
the accepted recipients twice.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from taskforge.api.step_types import EmailStep

from taskforge_executor.contract import ENV_SECRET_SMTP_PASSWORD, ENV_SECRET_SMTP_USERNAME
from taskforge_executor.outcome import StepError, permanent, retryable
from taskforge_executor.steps import StepContext
from taskforge_executor.validate import invalid, validate

TIMEOUT_SECONDS = 30.0


def _credentials(step: EmailStep, ctx: StepContext) -> tuple[str, str] | None:
    """(user, password) from the Secret-wired env, or None when the step sets neither."""
    if step.username_from is None and step.password_from is None:
        return None
    values: list[str] = []
    for field, env_name in (
        ("usernameFrom", ENV_SECRET_SMTP_USERNAME),
        ("passwordFrom", ENV_SECRET_SMTP_PASSWORD),
    ):
        value = ctx.env.get(env_name)
        if value is None:
            raise invalid(
                "email",
                f"{field}: SMTP login needs both usernameFrom and passwordFrom, wired into"
                f" the pod as {env_name}",
            )
        ctx.console.redactor.add(value)
        values.append(value)
    return values[0], values[1]


def _message(step: EmailStep) -> EmailMessage:
    message = EmailMessage()
    message["From"] = step.from_address
    message["To"] = ", ".join(step.to)
    message["Subject"] = step.subject
    message["Date"] = formatdate(usegmt=True)
    # An explicit domain: make_msgid's default looks up the host's FQDN (a DNS query).
    domain = step.from_address.rpartition("@")[2].strip("<> ") or "taskforge.invalid"
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(step.body)
    return message


def _connect(step: EmailStep) -> smtplib.SMTP:
    # smtplib would otherwise call getfqdn() for EHLO: a reverse DNS lookup nobody asked for.
    local_hostname = socket.gethostname()
    context = ssl.create_default_context()
    if step.security == "tls":
        return smtplib.SMTP_SSL(
            step.host,
            step.port,
            local_hostname=local_hostname,
            timeout=TIMEOUT_SECONDS,
            context=context,
        )
    smtp = smtplib.SMTP(
        step.host, step.port, local_hostname=local_hostname, timeout=TIMEOUT_SECONDS
    )
    if step.security == "starttls":
        try:
            smtp.starttls(context=context)
        except BaseException:
            smtp.close()
            raise
    return smtp


def _reply_failure(code: int, what: str, detail: bytes | str) -> StepError:
    text = detail.decode(errors="replace") if isinstance(detail, bytes) else detail
    message = f"SMTP {what}: {code} {text}"
    return retryable(message) if 400 <= code <= 499 else permanent(message)


def _classify(exc: Exception, step: EmailStep) -> StepError:
    server = f"{step.host}:{step.port}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = {addr: code for addr, (code, _) in exc.recipients.items()}
        listed = ", ".join(f"{addr} ({code})" for addr, code in refused.items())
        message = f"SMTP server {server} refused every recipient: {listed}"
        transient = all(400 <= code <= 499 for code in refused.values())
        return retryable(message) if transient else permanent(message)
    if isinstance(exc, smtplib.SMTPResponseException):
        return _reply_failure(exc.smtp_code, f"server {server} replied", exc.smtp_error)
    if isinstance(exc, smtplib.SMTPNotSupportedError) or type(exc) is smtplib.SMTPException:
        # e.g. "No suitable authentication method found": the server will not change.
        return permanent(f"SMTP server {server}: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return permanent(f"SMTP server {server}: TLS certificate verification failed: {exc}")
    if isinstance(exc, TimeoutError):
        return retryable(f"SMTP server {server}: timed out after {TIMEOUT_SECONDS:g}s")
    return retryable(f"SMTP server {server}: {type(exc).__name__}: {exc}")


def run(config: Any, ctx: StepContext) -> dict[str, Any]:
    step = validate(EmailStep, config, "email")
    credentials = _credentials(step, ctx)
    try:
        message = _message(step)
    except ValueError as exc:  # e.g. a line break in the subject (header injection)
        raise invalid("email", str(exc)) from None
    try:
        with _connect(step) as smtp:
            if credentials is not None:
                smtp.login(*credentials)
            refused = smtp.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        raise _classify(exc, step) from None
    outputs: dict[str, Any] = {"messageId": message["Message-ID"], "to": list(step.to)}
    if refused:
        listed = ", ".join(f"{addr} ({code})" for addr, (code, _) in refused.items())
        raise permanent(
            f"SMTP server {step.host}:{step.port} refused some recipients: {listed}",
            outputs={**outputs, "refused": sorted(refused)},
        )
    ctx.console.info(
        f"sent {message['Message-ID']} to {len(step.to)} recipient(s) via {step.host}:{step.port}"
        f" ({step.security})"
    )
    return outputs
