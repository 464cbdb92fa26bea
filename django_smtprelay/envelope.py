"""Turn a Django ``EmailMessage`` into what is queued: bytes and an envelope.

Validation happens here, before anything is stored, so a bad message is
refused with a clear error and nothing is half-written.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr
from functools import lru_cache

from django.core.exceptions import ValidationError
from django.core.mail.message import EmailMessage
from django.core.validators import EmailValidator
from django.utils.encoding import punycode

from .exceptions import InvalidMessageError
from .serialize import serialize

_validate_email = EmailValidator()
_LINE_BREAK = re.compile(r"[\r\n]")
# Per-message routing and priority travel as attributes (or these headers,
# which are removed before the message is stored).
ROUTE_HEADER = "X-SMTPRelay-Route"
PRIORITY_HEADER = "X-SMTPRelay-Priority"
SEND_AT_HEADER = "X-SMTPRelay-Send-At"


@dataclass
class PreparedMessage:
    from_email: str
    recipients: list[str]
    data: bytes
    subject: str
    message_id: str
    route_hint: str
    priority: str
    from_domain: str = ""
    send_at: datetime | None = None


# A bare ASCII address that Django's EmailValidator accepts as it is: the
# common case skips the address parser. Anything else takes the full path.
_PLAIN_ADDRESS = re.compile(
    r"[-!#$%&'*+/=?^_`{|}~0-9A-Za-z]+(?:\.[-!#$%&'*+/=?^_`{|}~0-9A-Za-z]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"(?!-)(?:[A-Za-z-]{2,63}|xn--[A-Za-z0-9]{1,59})(?<!-)"
)


def envelope_address(value: str, *, role: str) -> str:
    """The bare address for the SMTP envelope, IDNA-encoded; raise if invalid."""
    if isinstance(value, str) and len(value) <= 254 and _PLAIN_ADDRESS.fullmatch(value):
        return value
    return _parsed_address(value, role)


@lru_cache(maxsize=1024)
def _parsed_address(value: str, role: str) -> str:
    # Cached: a batch usually repeats one sender ("Site <noreply@...>").
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
    send_at = getattr(email_message, "smtprelay_send_at", None)
    # Control headers steer the queue and are not sent; the caller's message
    # is restored afterwards.
    control = {
        extra[h.lower()]: email_message.extra_headers.pop(extra[h.lower()])
        for h in (ROUTE_HEADER, PRIORITY_HEADER, SEND_AT_HEADER)
        if h.lower() in extra
    }
    for key, value in control.items():
        if key.lower() == ROUTE_HEADER.lower():
            route_hint = route_hint or str(value)
        elif key.lower() == PRIORITY_HEADER.lower():
            priority = priority or str(value)
        else:
            send_at = send_at or str(value)
    try:
        prepared = _prepare(email_message, from_email, recipients, route_hint, priority)
    finally:
        email_message.extra_headers.update(control)
    prepared.send_at = _send_at(send_at, email_message.subject)
    header_from = extra.get("from")
    from_header = email_message.extra_headers.get(header_from) if header_from else None
    prepared.from_domain = (
        (envelope_address(str(from_header), role="From header") if from_header else from_email)
        .rpartition("@")[2]
        .lower()
    )
    return prepared


def _send_at(value: object, subject: str) -> datetime | None:
    """A timezone-aware time to send at, from a datetime or an ISO 8601 string."""
    if value in (None, ""):
        return None
    when = value
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            when = None
    if not isinstance(when, datetime) or when.tzinfo is None:
        raise InvalidMessageError(
            f"Message {subject!r} has send_at {value!r}: use a timezone-aware datetime or an "
            "ISO 8601 time with an offset, such as 2030-01-31T09:00:00+00:00."
        )
    return when


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
        data, message_id = serialize(email_message)
    # Django's BadHeaderError is a ValueError (and deprecated from 6.1 on).
    except ValueError as exc:
        if isinstance(exc, InvalidMessageError):
            raise
        raise InvalidMessageError(f"Message {email_message.subject!r} is invalid: {exc}") from exc
    return PreparedMessage(
        from_email=from_email,
        recipients=recipients,
        data=data,
        subject=str(email_message.subject or "")[:255],
        message_id=message_id[:255],
        route_hint=route_hint[:100],
        priority=priority,
    )
