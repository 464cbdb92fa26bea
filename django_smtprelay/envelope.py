"""Turn a Django ``EmailMessage`` into what is queued: bytes and an envelope.

Validation happens here, before anything is stored, so a bad message is
refused with a clear error and nothing is half-written.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

from django.core.exceptions import ValidationError
from django.core.mail import BadHeaderError
from django.core.mail.message import EmailMessage
from django.core.validators import EmailValidator
from django.utils.encoding import punycode

from .exceptions import InvalidMessageError

_validate_email = EmailValidator()
_LINE_BREAK = re.compile(r"[\r\n]")
# Per-message routing and priority travel as attributes (or these headers,
# which are removed before the message is stored).
ROUTE_HEADER = "X-SMTPRelay-Route"
PRIORITY_HEADER = "X-SMTPRelay-Priority"


@dataclass
class PreparedMessage:
    from_email: str
    recipients: list[str]
    data: bytes
    subject: str
    message_id: str
    route_hint: str
    priority: str


def envelope_address(value: str, *, role: str) -> str:
    """The bare address for the SMTP envelope, IDNA-encoded; raise if invalid."""
    if not isinstance(value, str) or _LINE_BREAK.search(value):
        raise InvalidMessageError(f"Invalid {role} address {value!r}: it contains a line break.")
    _name, addr = parseaddr(value, strict=True) if _parseaddr_strict else parseaddr(value)
    if not addr or "@" not in addr:
        raise InvalidMessageError(
            f"Invalid {role} address {value!r}: expected 'user@example.com' or "
            "'Name <user@example.com>'."
        )
    local, _, domain = addr.rpartition("@")
    try:
        domain = punycode(domain)
    except UnicodeError as exc:
        raise InvalidMessageError(f"Invalid {role} address {value!r}: bad domain.") from exc
    addr = f"{local}@{domain}"
    try:
        _validate_email(addr)
    except ValidationError as exc:
        raise InvalidMessageError(
            f"Invalid {role} address {value!r}: not a valid email address."
        ) from exc
    return addr


_parseaddr_strict = "strict" in inspect.signature(parseaddr).parameters


def _as_bytes(msg: Any) -> bytes:
    # Django <= 5.2 builds compat32 SafeMIME objects whose as_bytes takes
    # ``linesep``; Django 6 builds email.message.EmailMessage, which takes a policy.
    if "linesep" in inspect.signature(msg.as_bytes).parameters:
        data = msg.as_bytes(linesep="\r\n")
    else:
        data = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def prepare(email_message: EmailMessage) -> PreparedMessage:
    """Validate and serialize one message exactly as Django's SMTP backend would send it."""
    raw_recipients = email_message.recipients()
    if not raw_recipients:
        raise InvalidMessageError(
            f"Message {email_message.subject!r} has no recipients: set to, cc or bcc."
        )
    from_email = envelope_address(email_message.from_email, role="sender")
    recipients = list(dict.fromkeys(envelope_address(r, role="recipient") for r in raw_recipients))
    extra = {k.lower(): k for k in email_message.extra_headers}
    route_hint = str(getattr(email_message, "smtprelay_route", "") or "")
    priority = str(getattr(email_message, "smtprelay_priority", "") or "")
    # Control headers steer the queue and are not sent; the caller's message
    # is restored afterwards.
    control = {
        extra[h.lower()]: email_message.extra_headers.pop(extra[h.lower()])
        for h in (ROUTE_HEADER, PRIORITY_HEADER)
        if h.lower() in extra
    }
    for key, value in control.items():
        if key.lower() == ROUTE_HEADER.lower():
            route_hint = route_hint or str(value)
        else:
            priority = priority or str(value)
    try:
        return _prepare(email_message, from_email, recipients, route_hint, priority)
    finally:
        email_message.extra_headers.update(control)


def _prepare(
    email_message: EmailMessage,
    from_email: str,
    recipients: list[str],
    route_hint: str,
    priority: str,
) -> PreparedMessage:
    for name, value in email_message.extra_headers.items():
        if _LINE_BREAK.search(str(value)) or _LINE_BREAK.search(str(name)):
            raise InvalidMessageError(
                f"Header {name!r} has a line break in its value {value!r}: "
                "headers must be one line."
            )
    try:
        msg = email_message.message()
        data = _as_bytes(msg)
    except (BadHeaderError, ValueError) as exc:
        if isinstance(exc, InvalidMessageError):
            raise
        raise InvalidMessageError(f"Message {email_message.subject!r} is invalid: {exc}") from exc
    return PreparedMessage(
        from_email=from_email,
        recipients=recipients,
        data=data,
        subject=str(email_message.subject or "")[:255],
        message_id=str(msg["Message-ID"] or "")[:255],
        route_hint=route_hint[:100],
        priority=priority,
    )
