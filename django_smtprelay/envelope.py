"""Turn a Django ``EmailMessage`` into what is queued: bytes and an envelope.

Validation happens here, before anything is stored, so a bad message is
refused with a clear error and nothing is half-written.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parseaddr
from functools import lru_cache

from django.core.exceptions import ValidationError
from django.core.mail.message import EmailMessage
from django.core.validators import EmailValidator
from django.utils.encoding import punycode
from django.utils.functional import Promise

from .exceptions import InvalidMessageError
from .serialize import serialize

_validate_email = EmailValidator()
_LINE_BREAK = re.compile(r"[\r\n]")
# RFC 5321 4.5.3.1.3: a path is at most 256 octets, the angle brackets included.
MAX_ADDRESS_LENGTH = 254
# Per-message routing and priority travel as attributes (or these headers,
# which are removed before the message is stored).
ROUTE_HEADER = "X-SMTPRelay-Route"
PRIORITY_HEADER = "X-SMTPRelay-Priority"
SEND_AT_HEADER = "X-SMTPRelay-Send-At"
EXPIRES_AT_HEADER = "X-SMTPRelay-Expires-At"
_CONTROL_HEADERS = {
    h.lower(): h for h in (ROUTE_HEADER, PRIORITY_HEADER, SEND_AT_HEADER, EXPIRES_AT_HEADER)
}


def shown(value: object, limit: int = 80, *, count: bool = True) -> str:
    """``repr(value)`` for an error message, cut to ``limit``; ``count`` adds its length."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, (str, bytes)) else len(text)
    return f"{text[: limit - 1]}\u2026" + (f" ({size} characters)" if count else "")


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
    deliver_by: datetime | None = None
    # The SMTP submission account it came in with (smtprelay_serve); None: the site's own.
    submission_account_id: int | None = None


# A bare ASCII address that Django's EmailValidator accepts as it is: the
# common case skips the address parser. Anything else takes the full path.
_PLAIN_ADDRESS = re.compile(
    r"[-!#$%&'*+/=?^_`{|}~0-9A-Za-z]+(?:\.[-!#$%&'*+/=?^_`{|}~0-9A-Za-z]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"(?!-)(?:[A-Za-z-]{2,63}|xn--[A-Za-z0-9]{1,59})(?<!-)"
)


def address_domain(address: str) -> str:
    """The domain of an address as the queue stores it for filtering and search:
    lower case and IDNA-encoded (``xn--...``), the form the envelope carries, so
    that ``Bücher.Example`` typed into the admin finds ``user@xn--bcher-kva.example``.
    A domain that cannot be encoded is kept as typed (lower case): it matches
    nothing rather than failing."""
    domain = address.rpartition("@")[2].strip().lower()
    if domain.isascii():
        return domain
    try:
        return punycode(domain).lower()
    except UnicodeError:
        return domain


def envelope_address(value: object, *, role: str) -> str:
    """The bare address for the SMTP envelope, IDNA-encoded; raise if invalid."""
    if isinstance(value, Promise):  # gettext_lazy("ops@example.com"), as Django accepts
        value = str(value)
    if not isinstance(value, str):
        raise InvalidMessageError(
            f"Invalid {role} address {shown(value)}: it is {type(value).__name__}, not a "
            "string; pass 'user@example.com' or 'Name <user@example.com>'."
        )
    if len(value) <= MAX_ADDRESS_LENGTH and _PLAIN_ADDRESS.fullmatch(value):
        return value
    return _parsed_address(value, role)


@lru_cache(maxsize=1024)
def _parsed_address(value: str, role: str) -> str:
    # Cached: a batch usually repeats one sender ("Site <noreply@...>").
    if _LINE_BREAK.search(value):
        raise InvalidMessageError(
            f"Invalid {role} address {shown(value)}: it contains a line break; "
            "an address is one line."
        )
    if "\x00" in value:
        raise InvalidMessageError(
            f"Invalid {role} address {shown(value)}: it contains a NUL character; remove it."
        )
    _name, addr = parseaddr(value, strict=True) if _parseaddr_strict else parseaddr(value)
    if not addr or "@" not in addr:
        raise InvalidMessageError(
            f"Invalid {role} address {shown(value)}: expected 'user@example.com' or "
            "'Name <user@example.com>'."
        )
    local, _, domain = addr.rpartition("@")
    try:
        domain = punycode(domain)
    except UnicodeError as exc:
        raise InvalidMessageError(
            f"Invalid {role} address {shown(value)}: its domain {shown(domain)} cannot be "
            "IDNA-encoded (empty or over-long label, or a character IDNA forbids)."
        ) from exc
    addr = f"{local}@{domain}"
    if len(addr) > MAX_ADDRESS_LENGTH:
        raise InvalidMessageError(
            f"Invalid {role} address {shown(value, count=False)}: it is {len(addr)} characters long"
            f"{' once its domain is IDNA-encoded' if addr != value else ''}; SMTP allows at "
            f"most {MAX_ADDRESS_LENGTH} (RFC 5321). Use a shorter address."
        )
    try:
        _validate_email(addr)
    except ValidationError as exc:
        raise InvalidMessageError(
            f"Invalid {role} address {shown(value)}: not a valid email address."
        ) from exc
    return addr


_parseaddr_strict = "strict" in inspect.signature(parseaddr).parameters


def prepare(email_message: EmailMessage) -> PreparedMessage:
    """Validate and serialize one message exactly as Django's SMTP backend would send it."""
    raw_recipients = email_message.recipients()
    if not raw_recipients:
        raise InvalidMessageError(
            f"Message {shown(email_message.subject)} has no recipients: set to, cc or bcc."
        )
    from_email = envelope_address(email_message.from_email, role="sender")
    recipients = list(dict.fromkeys(envelope_address(r, role="recipient") for r in raw_recipients))
    extra = {k.lower(): k for k in email_message.extra_headers}
    headers = email_message.extra_headers
    # Control headers steer the queue and are never sent, in any letter case;
    # the caller's headers are restored afterwards, in their order.
    original = dict(headers)
    try:
        control = _pop_control_headers(headers, email_message.subject)
        route_hint = str(getattr(email_message, "smtprelay_route", "") or "")
        route_hint = route_hint or str(control.get(ROUTE_HEADER.lower(), ""))
        priority = str(getattr(email_message, "smtprelay_priority", "") or "")
        priority = priority or str(control.get(PRIORITY_HEADER.lower(), ""))
        send_at = getattr(email_message, "smtprelay_send_at", None)
        send_at = send_at or control.get(SEND_AT_HEADER.lower())
        expires_at = getattr(email_message, "smtprelay_expires_at", None)
        expires_at = expires_at or control.get(EXPIRES_AT_HEADER.lower())
        expires_in = getattr(email_message, "smtprelay_expires_in", None)
        prepared = _prepare(email_message, from_email, recipients, route_hint, priority)
    finally:
        headers.clear()
        headers.update(original)
    prepared.send_at = _aware_time(send_at, email_message.subject, "send_at")
    prepared.deliver_by = _deliver_by(expires_at, expires_in, email_message.subject)
    header_from = extra.get("from")
    from_header = email_message.extra_headers.get(header_from) if header_from else None
    prepared.from_domain = (
        (envelope_address(str(from_header), role="From header") if from_header else from_email)
        .rpartition("@")[2]
        .lower()
    )
    return prepared


def _pop_control_headers(headers: dict, subject: object) -> dict[str, object]:
    """Remove every spelling of the control headers; their values by lower-case name."""
    control: dict[str, object] = {}
    for key in list(headers):
        name = str(key).lower()
        if name not in _CONTROL_HEADERS:
            continue
        value = headers.pop(key)
        if name in control and str(control[name]) != str(value):
            raise InvalidMessageError(
                f"Message {shown(subject)} sets {_CONTROL_HEADERS[name]} twice, in different "
                f"letter cases, to {shown(control[name])} and {shown(value)}; set it once."
            )
        control[name] = value
    return control


def _aware_time(value: object, subject: str, name: str) -> datetime | None:
    """A timezone-aware time, from a datetime or an ISO 8601 string."""
    if value in (None, ""):
        return None
    when = value
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            when = None
    if not isinstance(when, datetime) or when.tzinfo is None or when.utcoffset() is None:
        raise InvalidMessageError(
            f"Message {shown(subject)} has {name} {shown(value)}: use a timezone-aware "
            "datetime or an ISO 8601 time with an offset, such as 2030-01-31T09:00:00+00:00."
        )
    return when


def _deliver_by(expires_at: object, expires_in: object, subject: str) -> datetime | None:
    """The time after which the message must not be sent any more, or None."""
    when = _aware_time(expires_at, subject, "expires_at")
    if expires_in in (None, ""):
        return when
    if when is not None:
        raise InvalidMessageError(
            f"Message {shown(subject)} sets both expires_at {shown(expires_at)} and "
            f"expires_in {shown(expires_in)}; set one of them."
        )
    if not isinstance(expires_in, timedelta) or expires_in <= timedelta(0):
        raise InvalidMessageError(
            f"Message {shown(subject)} has expires_in {shown(expires_in)}: use a positive "
            "datetime.timedelta, such as timedelta(minutes=10)."
        )
    return datetime.now(timezone.utc) + expires_in


def _prepare(
    email_message: EmailMessage,
    from_email: str,
    recipients: list[str],
    route_hint: str,
    priority: str,
) -> PreparedMessage:
    subject = str(email_message.subject or "")
    if "\x00" in subject:
        raise InvalidMessageError(
            f"Message subject {shown(subject)} contains a NUL character, which a mail "
            "header cannot carry; remove it."
        )
    for name, value in email_message.extra_headers.items():
        if _LINE_BREAK.search(str(value)) or _LINE_BREAK.search(str(name)):
            raise InvalidMessageError(
                f"Header {shown(name)} has a line break in its value {shown(value)}: "
                "headers must be one line."
            )
        if "\x00" in str(value) or "\x00" in str(name):
            raise InvalidMessageError(
                f"Header {shown(name)} has a NUL character in its value {shown(value)}; remove it."
            )
    try:
        data, message_id = serialize(email_message)
    # Django's BadHeaderError is a ValueError (and deprecated from 6.1 on).
    except ValueError as exc:
        if isinstance(exc, InvalidMessageError):
            raise
        raise InvalidMessageError(
            f"Message {shown(email_message.subject)} is invalid: {exc}"
        ) from exc
    return PreparedMessage(
        from_email=from_email,
        recipients=recipients,
        data=data,
        subject=str(email_message.subject or "")[:255],
        message_id=message_id[:255],
        route_hint=route_hint,
        priority=priority,
    )
