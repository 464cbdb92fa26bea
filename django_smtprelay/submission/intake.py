"""From an SMTP transaction to a queued message: the Received header, the
fields the queue shows, and the same store as the backend's (synchronous)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.utils import format_datetime, getaddresses, parseaddr

from django.utils import timezone

from ..envelope import PreparedMessage
from .accounts import Account

_UNSAFE = re.compile(r"[^\x21-\x7e]")


@dataclass(frozen=True)
class Transaction:
    """What the client sent, and who it is."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    helo: str
    client: str
    hostname: str
    protocol: str
    account: Account | None = None


def protocol(*, esmtp: bool, tls: bool, authenticated: bool, utf8: bool) -> str:
    """The ``with`` clause of the Received header (RFC 3848, RFC 6531)."""
    if not esmtp:
        return "SMTP"
    return ("UTF8SMTP" if utf8 else "ESMTP") + ("S" if tls else "") + ("A" if authenticated else "")


def received_header(t: Transaction) -> bytes:
    """One Received header (RFC 5321 4.4), folded, ending in CRLF."""
    helo = _UNSAFE.sub("?", t.helo)[:100] or "unknown"
    client = t.client if ":" not in t.client else f"IPv6:{t.client}"
    host = _UNSAFE.sub("?", t.hostname)[:253]
    date = format_datetime(timezone.now().astimezone(), usegmt=False)
    return (
        f"Received: from {helo} ([{client}])\r\n\tby {host} (django-smtprelay) "
        f"with {t.protocol};\r\n\t{date}\r\n"
    ).encode("ascii")


def _text(value: object) -> str:
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value))))
    except Exception:  # an undecodable encoded word: show it as it came
        return str(value)


def header_fields(content: bytes, names: frozenset[str]) -> dict[str, list[str]]:
    """The values of the headers ``names`` (lower case), unfolded, read from the
    header block only: the message is never parsed as a whole (the email
    package's parser cost a fifth of a millisecond per message, in the thread
    that also commits)."""
    end = content.find(b"\r\n\r\n")
    head = content if end < 0 else content[: end + 2]
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in head.decode("utf-8", "surrogateescape").split("\r\n"):
        if line[:1] in (" ", "\t"):
            if current is not None:
                current[-1] += line
            continue
        name, colon, value = line.partition(":")
        current = None
        if colon and name.strip().lower() in names:
            current = found.setdefault(name.strip().lower(), [])
            current.append(value.strip())
    return found


_LISTED = frozenset({"subject", "message-id", "from"})


def prepared(t: Transaction) -> PreparedMessage:
    """The queue's view of the message: its bytes with the Received header
    first, and the header fields the admin lists (cut to their columns)."""
    fields = header_fields(t.content, _LISTED)
    subject = " ".join(_text(next(iter(fields.get("subject", [])), "")).split())
    message_id = next(iter(fields.get("message-id", [])), "").strip()
    from_address = parseaddr(next(iter(fields.get("from", [])), ""))[1]
    return PreparedMessage(
        from_email=t.mail_from,
        recipients=list(t.rcpt_tos),
        data=received_header(t) + t.content,
        subject=subject.replace("\x00", "")[:255],
        message_id=message_id if len(message_id) <= 255 and "\x00" not in message_id else "",
        route_hint=t.account.route_tag if t.account else "",
        priority="",
        from_domain=from_address.rpartition("@")[2].lower()[:253].replace("\x00", ""),
        submission_account_id=t.account.pk if t.account else None,
    )


def from_header_addresses(content: bytes) -> list[str]:
    """The addresses of the From header (for the allowed-sender check)."""
    values = header_fields(content, frozenset({"from"})).get("from", [])
    return [address for _name, address in getaddresses(values) if address]
