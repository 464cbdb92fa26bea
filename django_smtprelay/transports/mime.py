"""A queued message's bytes back into the ``EmailMultiAlternatives`` the site sent.

The queue keeps RFC 5322 bytes (``MessageContent.raw``); an ESP's API takes
the message's parts (subject, text, HTML, attachments, inline images,
headers). This undoes ``EmailMessage.message()``: the body is the first part
of a ``multipart/mixed`` or ``multipart/related`` that is not an attachment,
a ``multipart/alternative``'s first ``text/plain`` part is the body and the
rest are its alternatives, and every other part is an attachment, inline
with its Content-ID where it has one.

The envelope decides who receives it: the To and Cc addresses that are
envelope recipients stay where they were, every other envelope recipient is
a Bcc (so a retry of some recipients reaches only them).
"""

from __future__ import annotations

import email
import re
from email import encoders
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.message import Message, MIMEPart
from email.mime.base import MIMEBase
from email.parser import BytesParser
from email.policy import compat32
from email.utils import formataddr, getaddresses

import django
from django.core.mail import EmailMultiAlternatives

# A Subject whose first line is empty (Django folds a long encoded subject so).
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_FOLDED_FIRST = re.compile(rb"^subject:[ \t]*\r?\n[ \t]", re.IGNORECASE | re.MULTILINE)

# Headers that become the message's own fields, or that Django writes for the
# MIME structure; Date is the ESP's to set when it sends.
_NOT_EXTRA = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "reply-to",
        "subject",
        "date",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
    }
)


def parse_message(raw: bytes, sender: str, recipients: list[str]) -> EmailMultiAlternatives:
    """The message in ``raw``, addressed to ``recipients`` (the envelope) from ``sender``."""
    # compat32: the headers are decoded here, only those needed (the modern
    # policy's header objects cost more than the rest of a send).
    parsed = _parsed(raw)
    subject = _decoded(parsed.get("Subject", ""))
    # (Only a subject that starts with blanks can have been folded so.)
    if subject[:1] in (" ", "\t") and _FOLDED_FIRST.search(raw.partition(b"\r\n\r\n")[0]):
        subject = subject.lstrip()  # the fold after "Subject:" is not part of the subject
    message = EmailMultiAlternatives(subject=subject)
    from_pairs = _address_pairs(parsed, "From")
    message.from_email = ", ".join(f for f, _a in from_pairs) or sender
    wanted = {_key(r): r for r in recipients}
    message.to = _addressed(parsed, "To", wanted)
    message.cc = _addressed(parsed, "Cc", wanted)
    message.bcc = list(wanted.values())  # the envelope recipients not in To or Cc
    message.reply_to = _addresses(parsed, "Reply-To")
    message.extra_headers = {
        name: _decoded(value) for name, value in parsed.items() if name.lower() not in _NOT_EXTRA
    }
    if sender and (not from_pairs or _key(from_pairs[0][1]) != _key(sender)):
        message.envelope_sender = sender  # anymail's name for it
    _unpack(parsed, message, top=True)
    return message


def _parsed(raw: bytes) -> Message:
    """``raw`` parsed; a single-part message's body is taken as it is, not read
    line by line (what most of the parser's time goes to)."""
    parsed = _plain_headers(raw) or _HEADERS_ONLY.parsebytes(raw, headersonly=True)
    if parsed.get_content_maintype() in ("multipart", "message"):
        parsed = email.message_from_bytes(raw)
    return parsed


_HEADERS_ONLY = BytesParser(policy=compat32)
# A header field's first line, as the parser takes it (its name, then a colon).
_FIELD = re.compile(r"[\x21-\x39\x3b-\x7e]+:")


def _plain_headers(raw: bytes) -> Message | None:
    """What ``_HEADERS_ONLY`` makes of ``raw`` when its header lines are all well
    formed and end in CRLF (as the queue stores them), without reading the
    message line by line; None for anything else, which the parser then reads."""
    head, blank, body = raw.partition(b"\r\n\r\n")
    crlf = head.count(b"\r\n")
    if not blank or head.count(b"\r") != crlf or head.count(b"\n") != crlf:
        return None  # a bare CR or LF: the parser's line splitting decides
    ascii_head = head.isascii()
    parsed = _IndexedHeaders() if ascii_head else Message(policy=compat32)
    # (name, value) as compat32.header_source_parse makes them from a field's
    # lines: the value after the colon, its leading blanks and last CRLF off,
    # continuation lines kept with their CRLFs.
    name = value = None
    for line in head.decode("ascii", "surrogateescape").split("\r\n"):
        if line[:1] in (" ", "\t"):
            if name is None:
                return None
            value += "\r\n" + line
            continue
        if not _FIELD.match(line):
            return None
        if name is not None:
            parsed.set_raw(name, value.rstrip("\r\n"))
        name, _colon, value = line.partition(":")
        value = value.lstrip(" \t")
    if name is not None:
        parsed.set_raw(name, value.rstrip("\r\n"))
    parsed.set_payload(body.decode("ascii", "surrogateescape"))
    if ascii_head:
        parsed.index_headers()
    return parsed


class _IndexedHeaders(Message):
    """A compat32 message whose header lookups read an index made once, not
    every header with its name lowered each time (a single-part message's
    headers are looked up about twenty times while it is read back).

    Only for headers that are all ASCII, which compat32 returns as they are
    stored, and only for a message nothing changes after ``index_headers``:
    ``_plain_headers`` makes it, and ``parse_message`` only reads it.
    """

    _index: dict[str, list[str]]

    def __init__(self) -> None:
        super().__init__(policy=compat32)

    def index_headers(self) -> None:
        index: dict[str, list[str]] = {}
        for name, value in self._headers:
            index.setdefault(name.lower(), []).append(value)
        self._index = index

    def get(self, name: str, failobj: object = None) -> object:  # type: ignore[override]
        values = self._index.get(name.lower())
        return values[0] if values else failobj

    def get_all(self, name: str, failobj: object = None) -> object:  # type: ignore[override]
        values = self._index.get(name.lower())
        return list(values) if values else failobj

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        return list(self._headers)


def _key(address: str) -> str:
    return address.strip().lower()


def _unfolded(value: object) -> str:
    text = str(value or "")
    return _FOLD.sub("", text) if "\n" in text else text


def _decoded(value: object) -> str:
    """A header's text: unfolded, its encoded words (RFC 2047) decoded."""
    text = _unfolded(value)
    if "=?" not in text:
        return text
    return str(make_header(decode_header(text)))


# A header that is one bare address (the common case), which needs no parser.
_BARE = re.compile(r"[^\s<>()\[\]\\,;:@\"=]+@[^\s<>()\[\]\\,;:@\"=]+")


def _addresses(parsed: Message, header: str) -> list[str]:
    """The addresses in ``header``, display names decoded ("Zoë <zoe@example.com>")."""
    return [formatted for formatted, _address in _address_pairs(parsed, header)]


def _address_pairs(parsed: Message, header: str) -> list[tuple[str, str]]:
    """``(formatted, bare address)`` for each address in ``header``."""
    values = [_unfolded(v) for v in parsed.get_all(header, [])]
    if not values:
        return []
    if len(values) == 1 and _BARE.fullmatch(values[0].strip()):
        address = values[0].strip()
        return [(address, address)]
    found = []
    for name, address in getaddresses(values):
        if not address:
            continue
        name = _decoded(name)
        if not name:
            found.append((address, address))
            continue
        local, _, domain = address.rpartition("@")
        try:
            found.append((str(Address(display_name=name, username=local, domain=domain)), address))
        except (ValueError, IndexError):
            found.append((formataddr((name, address)), address))
    return found


def _addressed(parsed: Message, header: str, wanted: dict[str, str]) -> list[str]:
    """The addresses in ``header`` that are envelope recipients (taken from ``wanted``)."""
    found = []
    for formatted, address in _address_pairs(parsed, header):
        if _key(address) in wanted:
            wanted.pop(_key(address))
            found.append(formatted)
    return found


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True) or b""
    text = payload.decode(_charset(part) or "utf-8", "replace")
    if str(part.get("Content-Transfer-Encoding", "")).lower() != "base64":
        # The queue stores lines ending in CRLF, as SMTP sends them.
        text = text.replace("\r\n", "\n")
    return text


# Content-Type values seen, with the charset each names: a queue's messages
# mostly share one (reading the parameter costs more than the rest of _text).
_CHARSETS: dict[str, str | None] = {}


def _charset(part: Message) -> str | None:
    """``part.get_content_charset()``, which depends on its Content-Type alone."""
    content_type = part.get("Content-Type")
    if not isinstance(content_type, str):
        return part.get_content_charset()
    try:
        return _CHARSETS[content_type]
    except KeyError:
        charset = part.get_content_charset()
        if len(_CHARSETS) < 64:
            _CHARSETS[content_type] = charset
        return charset


def _is_attachment(part: Message) -> bool:
    return bool(
        part.get_content_disposition() is not None
        or part.get("Content-ID")
        or part.get_filename()
        or part.get_content_maintype() != "text"
    )


def _unpack(part: Message, message: EmailMultiAlternatives, *, top: bool = False) -> None:
    if not part.is_multipart():
        if top or not _is_attachment(part):
            message.body = _text(part)
            message.content_subtype = part.get_content_subtype()
        else:
            _attach(part, message)
        return
    children = list(part.get_payload())
    if part.get_content_subtype() == "alternative":
        if children and children[0].get_content_type() == "text/plain":
            message.body = _text(children.pop(0))
        for child in children:
            message.attach_alternative(_text(child), child.get_content_type())
        return
    # mixed, related (or another subtype): the body first, then attachments.
    if children and (children[0].is_multipart() or not _is_attachment(children[0])):
        _unpack(children.pop(0), message)
    if part.get_content_subtype() != "mixed":
        message.mixed_subtype = part.get_content_subtype()
    for child in children:
        _attach(child, message)


def _attach(part: Message, message: EmailMultiAlternatives) -> None:
    mimetype = part.get_content_type()
    if part.is_multipart() and mimetype != "message/rfc822":
        # A nested structure as an attachment: its bytes, as they are.
        message.attach(part.get_filename(), part.as_bytes(), mimetype)
        return
    if mimetype == "message/rfc822":
        inner = part.get_payload()
        content: bytes | str = inner[0].as_bytes() if isinstance(inner, list) else str(inner)
    elif part.get_content_maintype() == "text":
        content = _text(part)
    else:
        content = part.get_payload(decode=True) or b""
    if part.get("Content-ID") or part.get_content_disposition() == "inline":
        # Inline: anymail reads the Content-ID and disposition from a MIME part.
        message.attach(_inline_part(part, content))
        return
    message.attach(part.get_filename(), content, mimetype)


def _inline_part(part: Message, content: bytes | str) -> Message:
    """A MIME part as Django's attach() takes it: MIMEBase before Django 6, MIMEPart since."""
    data = content.encode() if isinstance(content, str) else content
    maintype, subtype = part.get_content_maintype(), part.get_content_subtype()
    inline: Message
    if django.VERSION >= (6, 0):
        inline = MIMEPart()
        inline.set_content(data, maintype, subtype, cte="base64")
    else:
        inline = MIMEBase(maintype, subtype)
        inline.set_payload(data)
        encoders.encode_base64(inline)
    for header in ("Content-ID", "Content-Disposition"):
        if part.get(header):
            del inline[header]
            inline[header] = _unfolded(part[header])
    return inline
