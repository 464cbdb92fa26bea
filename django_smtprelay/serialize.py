"""Serialize a Django ``EmailMessage`` to the bytes Django's SMTP backend sends.

``serialize()`` returns exactly ``as_bytes(email_message.message())``: the
message as Django builds it, flattened with CRLF line ends. Building the
``email`` package's object tree and running its generator is most of the cost
of queueing a message, so the common shapes (one text or HTML body in UTF-8,
no alternatives or attachments) are written directly. Anything else, and any
header this module cannot show to come out byte-identical, goes through
Django's own ``message()``.

Django 4.2 to 5.2 build compat32 ``SafeMIMEText`` objects; Django 6 builds
``email.message.EmailMessage`` with ``email.policy.default``. The two give
different bytes (header order, folding, transfer encoding), so each has its
own writer, chosen once at import by looking at Django's ``EmailMessage``,
and only for the releases tests/test_serialize.py has compared them with.

A header is written as it is when its value is printable ASCII that the
folding code leaves alone (see ``_SAFE_TEXT``). Any other value is handed to
the functions Django's path runs for it - Django's
``forbid_multi_line_headers`` and the compat32 policy's folding before 6,
the ``email.policy.default`` header registry and folding from 6 on - one
header at a time, so it stays exact without building a whole message.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from email import contentmanager
from email import policy as email_policy
from email.headerregistry import Address, AddressHeader, UnstructuredHeader
from email.utils import format_datetime
from functools import partial
from typing import Any

import django
from django.conf import settings
from django.core.mail import message as django_message
from django.core.mail.message import EmailMessage, EmailMultiAlternatives
from django.utils.encoding import force_str

__all__ = ["FAST_PATH", "as_bytes", "serialize"]

Serialized = tuple[bytes, str]

# The generator's own line-break rule (email.generator.NLCRE).
_NLCRE = re.compile(r"\r\n|\r|\n")
# Printable ASCII words separated by single spaces: neither compat32's Header
# nor policy.default's parser changes such a value, and when the whole line
# fits in _FOLD_WIDTH neither folds it. Double or edge spaces, controls and
# other line separators (which str.splitlines() honours) are left to the
# slower, exact path.
_SAFE_TEXT = re.compile(r"[!-~]+(?: [!-~]+)*")
_HEADER_NAME = re.compile(r"[!-9;-~]+")
# policy.default parses address headers; for these shapes the parse tree
# prints back as the input (display names of atoms or a plain quoted string).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_ADDR_SPEC = rf"{_ATEXT}+(?:\.{_ATEXT}+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_MAILBOX = (
    rf"(?:{_ADDR_SPEC}"
    rf'|(?:{_ATEXT}+(?: {_ATEXT}+)*|"[!#-\[\]-~]+(?: [!#-\[\]-~]+)*") <{_ADDR_SPEC}>)'
)
_SAFE_ADDRESSES = re.compile(rf"{_MAILBOX}(?:, {_MAILBOX})*")
_SAFE_MSGID = re.compile(rf"<{_ATEXT}+(?:\.{_ATEXT}+)*@{_ATEXT}+(?:\.{_ATEXT}+)*>")
# A folded header that the generator's verify_generated_headers check would
# refuse (a line break not followed by folding white space): let Django raise.
_BAD_FOLD = re.compile(rb"\r\n(?![ \t])|\r(?!\n)|(?<!\r)\n")

# Django releases whose message() these writers were checked against, byte for
# byte, by tests/test_serialize.py. Another release (or one that no longer
# has what the writer looks up) takes Django's own path until those tests pass
# on it and the range is widened.
_COMPAT32_RELEASES = ((4, 2), (5, 2))
_MODERN_RELEASES = ((6, 0), (6, 1))

_FOLD_WIDTH = 78  # max_line_length of both compat32 and policy.default
_SMTP_LINE = 998  # Django's RFC5322_EMAIL_LINE_LENGTH_LIMIT (5.2: above it, quoted-printable)
_ADDRESS_HEADERS = (("To", "to"), ("Cc", "cc"), ("Reply-To", "reply_to"))
_SKIPPED_EXTRAS = frozenset({"from", "to", "cc", "reply-to"})  # set from attributes instead
_ADDRESS_OVERRIDES = frozenset({"to", "cc", "reply-to"})
# Extra headers that would duplicate a header Django writes itself (compat32
# keeps both, policy.default raises) or that Django 6 refuses (Bcc).
_NOT_FAST_EXTRAS = frozenset(
    {"subject", "bcc", "content-type", "content-transfer-encoding", "mime-version"}
)
# Instance attributes that would replace the methods message() relies on.
_METHOD_OVERRIDES = frozenset(
    {
        "message",
        "_create_message",
        "_create_attachments",
        "_create_alternatives",
        "_set_list_header_if_not_empty",
        "_add_bodies",
        "_add_attachments",
        "_idna_encode_address_header_domains",
    }
)


def serialize(email_message: EmailMessage) -> Serialized:
    """The bytes Django would send for ``email_message``, and its Message-ID.

    The bytes equal ``as_bytes(email_message.message())``. Django's
    ``ValueError`` for a bad header or address propagates as it would from
    ``message()``.
    """
    if _fast is not None:
        result = _fast(email_message)
        if result is not None:
            return result
    msg = email_message.message()
    return as_bytes(msg), str(msg["Message-ID"] or "")


def as_bytes(msg: Any) -> bytes:
    """Flatten a message from Django's ``message()`` with CRLF line ends, ending in CRLF."""
    # Django <= 5.2 builds compat32 SafeMIME objects whose as_bytes takes
    # ``linesep``; Django 6 builds email.message.EmailMessage, which takes a policy.
    if "linesep" in inspect.signature(msg.as_bytes).parameters:
        data = msg.as_bytes(linesep="\r\n")
    else:
        data = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


# --- shared ----------------------------------------------------------------


def _eligible(m: EmailMessage) -> bool:
    """One str body, UTF-8, plain or HTML, nothing attached, plain header names."""
    cls = type(m)
    # A subclass may override message() or the methods it calls.
    if cls is EmailMultiAlternatives:
        if m.alternatives:
            return False
    elif cls is not EmailMessage:
        return False
    if m.attachments or not _METHOD_OVERRIDES.isdisjoint(vars(m)):
        return False
    if m.content_subtype not in ("plain", "html") or not isinstance(m.body, str):
        return False
    # Exactly "utf-8": Django 5.2 treats any other spelling as another charset.
    if (m.encoding or settings.DEFAULT_CHARSET) != "utf-8":
        return False
    extra = m.extra_headers
    if not isinstance(extra, dict):
        return False
    lowered = set()
    for name in extra:
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            return False
        lowered.add(name.lower())
    # Names differing only in case would be duplicates too.
    return len(lowered) == len(extra) and _NOT_FAST_EXTRAS.isdisjoint(lowered)


def _clean_fold(folded: bytes) -> bool:
    return folded.endswith(b"\r\n") and not _BAD_FOLD.search(folded, 0, len(folded) - 2)


def _assemble(head: bytes, headers: list[bytes], body: bytes) -> bytes:
    data = b"".join((head, *headers, b"\r\n", body))
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def _to_crlf(text: str, data: bytes) -> bytes:
    """``data`` (``text`` encoded) with every CRLF, CR or LF written as CRLF."""
    if "\r" in text:
        return _NLCRE.sub("\r\n", text).encode("utf-8")
    return data.replace(b"\n", b"\r\n")


# --- Django 4.2 to 5.2: compat32 SafeMIMEText ------------------------------

_COMPAT32 = email_policy.compat32.clone(linesep="\r\n")


def _write_each(
    write: Callable[..., tuple[bytes, str] | None], items: Iterable[tuple[Any, ...]]
) -> tuple[list[bytes], str] | None:
    """Each header written by ``write``, and the Message-ID's value; None if one cannot be."""
    lines: list[bytes] = []
    message_id = ""
    for name, *rest in items:
        header = write(name, *rest)
        if header is None:
            return None
        lines.append(header[0])
        if name.lower() == "message-id":
            message_id = header[1]
    return lines, message_id


def _compat32_header(name: str, value: str) -> tuple[bytes, str] | None:
    """One header as BytesGenerator writes it, and the value msg[name] returns."""
    if len(name) + len(value) <= _FOLD_WIDTH - 2 and (not value or _SAFE_TEXT.fullmatch(value)):
        return f"{name}: {value}\r\n".encode("ascii"), value
    # What SafeMIMEText.__setitem__ stores, folded as the generator folds it.
    try:
        name, stored = django_message.forbid_multi_line_headers(name, value, "utf-8")
        folded = _COMPAT32.fold_binary(name, stored)
    except Exception:
        # Whatever went wrong, Django's path gives the same error or the answer.
        return None
    return (folded, stored) if _clean_fold(folded) else None


def _has_long_lines(body: str, data: bytes) -> bool:
    """Django's test for switching the body to quoted-printable."""
    # bytes.splitlines() breaks at fewer places than str.splitlines(), so
    # short byte lines mean short str lines; only then is Django's test run.
    if max(map(len, data.splitlines()), default=0) <= _SMTP_LINE:
        return False
    return any(
        len(line.encode(errors="surrogateescape")) > _SMTP_LINE for line in body.splitlines()
    )


def _fast_compat32(m: EmailMessage, *, address_overrides: bool = True) -> Serialized | None:
    if not _eligible(m):
        return None
    if not address_overrides and not _ADDRESS_OVERRIDES.isdisjoint(
        name.lower() for name in m.extra_headers
    ):
        return None
    body = m.body
    try:
        data = body.encode("utf-8")
    except UnicodeEncodeError:
        return None
    if len(data) > _SMTP_LINE and _has_long_lines(body, data):
        return None  # Django writes quoted-printable
    extra = m.extra_headers

    # The order of EmailMessage.message(); every value goes through str()
    # in forbid_multi_line_headers.
    pairs = [("Subject", str(m.subject)), ("From", str(extra.get("From", m.from_email)))]
    for name, attribute in _ADDRESS_HEADERS:
        if name in extra:
            pairs.append((name, str(extra[name])))
        elif values := getattr(m, attribute):
            pairs.append((name, ", ".join(str(v) for v in values)))
    lowered = {k.lower() for k in extra}
    trailing = [(k, str(v)) for k, v in extra.items() if k.lower() not in _SKIPPED_EXTRAS]

    done = _write_each(_compat32_header, pairs), _write_each(_compat32_header, trailing)
    if done[0] is None or done[1] is None:
        return None
    (written, _), (extras, message_id) = done

    # Looked up on Django's module at call time, as message() does.
    defaults = (
        ("Date", lambda: django_message.formatdate(localtime=settings.EMAIL_USE_LOCALTIME)),
        ("Message-ID", lambda: django_message.make_msgid(domain=django_message.DNS_NAME)),
    )
    for name, make in defaults:
        if name.lower() in lowered:
            continue
        header = _compat32_header(name, make())
        if header is None:
            return None
        written.append(header[0])
        if name == "Message-ID":
            message_id = header[1]
    written += extras

    cte = "7bit" if data.isascii() else "8bit"
    head = (
        f'Content-Type: text/{m.content_subtype}; charset="utf-8"\r\n'
        f"MIME-Version: 1.0\r\nContent-Transfer-Encoding: {cte}\r\n"
    ).encode("ascii")
    return _assemble(head, written, _to_crlf(body, data)), message_id


# --- Django 6: email.message.EmailMessage with email.policy.default ----------

_MODERN = email_policy.default
_MODERN_CRLF = email_policy.default.clone(linesep="\r\n")
# The header classes policy.default picks by name (UnstructuredHeader by default).
_REGISTRY: dict[str, type] = getattr(_MODERN.header_factory, "registry", None) or {}
_DEFAULT_HEADER = getattr(_MODERN.header_factory, "default_class", None) if _REGISTRY else None
# set_content()'s choice of transfer encoding for a text body, from the
# standard library; without it, bodies with long lines fall back.
_encode_text: Callable[..., tuple[str, str]] | None = getattr(contentmanager, "_encode_text", None)
if _encode_text is not None and list(inspect.signature(_encode_text).parameters) != [
    "string",
    "charset",
    "cte",
    "policy",
]:
    _encode_text = None


def _modern_kind(name: str) -> str:
    """How policy.default parses a header: "text", "msgid", or "other"."""
    if name.lower() == "message-id":
        return "msgid"
    cls = _REGISTRY.get(name.lower(), _DEFAULT_HEADER)
    return "text" if isinstance(cls, type) and issubclass(cls, UnstructuredHeader) else "other"


def _modern_header(name: str, value: Any, kind: str) -> tuple[bytes, str] | None:
    """One header as msg[name] = value, Django's IDNA step and the generator give it."""
    if isinstance(value, str):
        plain = _modern_plain(name, value, kind)
        if plain is not None:
            return plain
    return _modern_folded(name, value)


_MODERN_SAFE = {"text": _SAFE_TEXT, "address": _SAFE_ADDRESSES, "msgid": _SAFE_MSGID}


def _modern_plain(name: str, value: str, kind: str) -> tuple[bytes, str] | None:
    """The header written as it is, when the parser and the folder leave it so."""
    pattern = _MODERN_SAFE.get(kind)
    if (
        pattern is None
        or not value  # an empty value loses the space after the colon
        or len(name) + len(value) > _FOLD_WIDTH - 2
        or "=?" in value  # the parser decodes encoded words
        or not pattern.fullmatch(value)
    ):
        return None
    return f"{name}: {value}\r\n".encode("ascii"), value


def _modern_folded(name: str, value: Any) -> tuple[bytes, str] | None:
    """The header through the header registry and folder, as message() and the generator do."""
    try:
        header = _MODERN.header_store_parse(name, value)[1]
        # EmailMessage._idna_encode_address_header_domains()
        if isinstance(header, AddressHeader) and any(
            not a.domain.isascii() for a in header.addresses
        ):
            idna = [
                Address(
                    display_name=a.display_name,
                    username=a.username,
                    domain=django_message.punycode(a.domain),
                )
                for a in header.addresses
            ]
            header = _MODERN.header_store_parse(name, idna)[1]
        folded = _MODERN_CRLF.fold_binary(name, header)
    except Exception:
        # Whatever went wrong, Django's path gives the same error or the answer.
        return None
    return (folded, str(header)) if _clean_fold(folded) else None


def _modern_body(body: str) -> tuple[str, bytes] | None:
    """The Content-Transfer-Encoding and CRLF body set_content() and the generator give."""
    try:
        data = body.encode("utf-8")
    except UnicodeEncodeError:
        return None
    lines = data.splitlines()
    if max(map(len, lines), default=0) <= _FOLD_WIDTH:
        # set_content() ends the body with a line break, always.
        return ("7bit" if data.isascii() else "8bit"), b"\r\n".join(lines) + b"\r\n"
    if _encode_text is None:
        return None
    # Long lines: quoted-printable or base64, as the standard library picks.
    cte, text = _encode_text(body, "utf-8", None, _MODERN)
    return cte, _NLCRE.sub("\r\n", text).encode("ascii", "surrogateescape")


def _fast_modern(m: EmailMessage) -> Serialized | None:
    if not _eligible(m):
        return None
    encoded = _modern_body(m.body)
    if encoded is None:
        return None
    extra = m.extra_headers

    # The order of EmailMessage.message(). Subject and From are str()'d there;
    # To/Cc/Reply-To from extra_headers and other extra headers are not.
    pairs: list[tuple[str, Any, str]] = [
        ("Subject", str(m.subject), "text"),
        ("From", str(extra.get("From", m.from_email)), "address"),
    ]
    for name, attribute in _ADDRESS_HEADERS:
        if name in extra:
            pairs.append((name, extra[name], "address"))
        elif values := getattr(m, attribute):
            pairs.append((name, ", ".join(str(v) for v in values), "address"))
    lowered = {k.lower() for k in extra}
    trailing = []
    for name, value in extra.items():
        if name.lower() in _SKIPPED_EXTRAS:
            continue
        # message() stores force_str(value, strings_only=True), which keeps
        # dates and numbers for the header registry: those go through Django.
        value = force_str(value, strings_only=True)
        if not isinstance(value, str):
            return None
        trailing.append((name, value, _modern_kind(name)))

    done = _write_each(_modern_header, pairs), _write_each(_modern_header, trailing)
    if done[0] is None or done[1] is None:
        return None
    (written, _), (extras, message_id) = done

    # Looked up on Django's module at call time, as message() does.
    if "date" not in lowered:
        tz = (
            django_message.get_current_timezone()
            if settings.EMAIL_USE_LOCALTIME
            else django_message.timezone.utc
        )
        now = django_message.datetime.now(tz)
        # DateHeader shows a datetime as format_datetime() gives it.
        header = (
            _modern_plain("Date", format_datetime(now), "text")
            if isinstance(now, datetime)
            else None
        )
        header = header or _modern_folded("Date", now)
        if header is None:
            return None
        written.append(header[0])
    if "message-id" not in lowered:
        msgid = django_message.make_msgid(domain=django_message.DNS_NAME)
        header = _modern_header("Message-ID", msgid, "msgid")
        if header is None:
            return None
        written.append(header[0])
        message_id = header[1]
    written += extras

    cte, body = encoded
    head = (
        f'Content-Type: text/{m.content_subtype}; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {cte}\r\nMIME-Version: 1.0\r\n"
    ).encode("ascii")
    return _assemble(head, written, body), message_id


def _detect() -> tuple[str, Callable[[EmailMessage], Serialized | None] | None]:
    """Which of Django's message() implementations is installed, if a verified one."""
    release = django.VERSION[:2]
    message = getattr(EmailMessage, "message", None)
    params = inspect.signature(message).parameters if message else {}
    if hasattr(EmailMessage, "_add_bodies") and "policy" in params:
        names = ("datetime", "timezone", "get_current_timezone", "make_msgid", "DNS_NAME")
        if _MODERN_RELEASES[0] <= release <= _MODERN_RELEASES[1] and all(
            hasattr(django_message, name) for name in (*names, "punycode")
        ):
            return "modern", _fast_modern
        return "", None
    names = ("SafeMIMEText", "forbid_multi_line_headers", "formatdate", "make_msgid", "DNS_NAME")
    if (
        _COMPAT32_RELEASES[0] <= release <= _COMPAT32_RELEASES[1]
        and hasattr(EmailMessage, "_create_message")
        and all(hasattr(django_message, name) for name in names)
    ):
        if release < (5, 2):
            # Before 5.2, To/Cc/Reply-To in extra_headers are also written
            # again among the extra headers: those messages go through Django.
            return "compat32", partial(_fast_compat32, address_overrides=False)
        return "compat32", _fast_compat32
    return "", None


FAST_PATH, _fast = _detect()
