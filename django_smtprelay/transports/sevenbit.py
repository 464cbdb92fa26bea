"""8-bit message data made 7-bit for a relay that did not offer 8BITMIME (RFC 6152).

Each MIME part whose body has 8-bit bytes (``Content-Transfer-Encoding:
8bit``, ``binary`` or none) is re-encoded, quoted-printable or base64,
whichever is shorter for text and base64 for anything else; only that part's
body and its ``Content-Transfer-Encoding`` header change, every other byte of
the message stays as it is. The result is parsed again and each part must
decode to the same bytes as before, or the conversion is refused.

8-bit bytes in a header (RFC 6532 needs SMTPUTF8), in a body already declared
base64 or quoted-printable, or outside any part (a multipart preamble or
epilogue) cannot be made 7-bit without changing the message: refused.

DKIM signing, when the app does it, must sign the bytes this returns: a
signature made before the conversion would not verify after it.
"""

from __future__ import annotations

import base64
import binascii
import email
import re
from email import policy
from email.message import Message
from email.parser import BytesHeaderParser

__all__ = ["SevenBitError", "to_seven_bit"]

_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_CTE_HEADER = re.compile(
    rb"^content-transfer-encoding[ \t]*:[^\n]*\n(?:[ \t][^\n]*\n)*", re.I | re.M
)
_B64_LINE = 76
_HEADERS = BytesHeaderParser(policy=policy.compat32)


class SevenBitError(ValueError):
    """The message cannot be made 7-bit without changing what it says."""


def to_seven_bit(data: bytes) -> bytes:
    """``data`` with every 8-bit part re-encoded; raise SevenBitError if that cannot be done."""
    if data.isascii():
        return data
    converted = _entity(data, "the message", top=True)
    if not converted.isascii():  # a part the walk above did not see as one
        raise SevenBitError("8-bit bytes remain after conversion; the message's MIME is malformed")
    _verify(data, converted)
    return converted


def _split(entity: bytes) -> tuple[bytes, bytes, bytes]:
    """(header block with its last line end, the blank line, the body)."""
    if entity.startswith((b"\r\n", b"\n")):  # a part with no headers
        blank = b"\r\n" if entity.startswith(b"\r\n") else b"\n"
        return b"", blank, entity[len(blank) :]
    match = _BLANK_LINE.search(entity)
    if match is None:
        return entity, b"", b""
    newline = entity[match.start() : entity.index(b"\n", match.start()) + 1]
    head_end = match.start() + len(newline)
    return entity[:head_end], entity[head_end : match.end()], entity[match.end() :]


def _entity(entity: bytes, where: str, *, top: bool = False) -> bytes:
    head, blank, body = _split(entity)
    if not head.isascii():
        raise SevenBitError(
            f"{where} has 8-bit bytes in its header: it needs a relay that offers "
            "SMTPUTF8 (RFC 6532) and cannot be made 7-bit"
        )
    if body.isascii():
        return entity
    headers = _HEADERS.parsebytes(head + blank)
    newline = b"\r\n" if b"\r\n" in head + blank else b"\n"
    encoding = str(headers.get("content-transfer-encoding", "7bit")).strip().lower()
    if headers.get_content_maintype() == "multipart":
        return head + blank + _multipart(headers, body, where)
    if headers.get_content_type() == "message/rfc822":
        # The enclosed message becomes 7-bit, and so may its label.
        inner = _entity(body, f"the message enclosed in {where}")
        if encoding in ("8bit", "binary"):
            head = _set_encoding(head, b"7bit", newline)
        return head + blank + inner
    if encoding in ("base64", "quoted-printable"):
        raise SevenBitError(f"{where} has 8-bit bytes in a body declared {encoding}")
    if encoding not in ("7bit", "8bit", "binary"):
        raise SevenBitError(f"{where} has 8-bit bytes under the unknown encoding {encoding!r}")
    name, encoded = _encode(body, headers.get_content_maintype() == "text", newline, top=top)
    head = _set_encoding(head, name, newline)
    if top and "mime-version" not in headers:
        head += b"MIME-Version: 1.0" + newline  # without it, readers ignore the encoding
    return head + blank + encoded


def _multipart(headers: Message, body: bytes, where: str) -> bytes:
    boundary = headers.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise SevenBitError(f"{where} is multipart without a boundary")
    delimiter = re.compile(
        rb"(?:\A|\r?\n)--" + re.escape(boundary.encode("ascii")) + rb"(--)?[ \t]*(?:\r?\n|\Z)"
    )
    out: list[bytes] = []
    position, number = 0, 0
    for match in delimiter.finditer(body):
        chunk = body[position : match.start()]
        if number == 0:
            if not chunk.isascii():
                raise SevenBitError(f"{where} has 8-bit bytes in its preamble")
            out.append(chunk)
        else:
            out.append(_entity(chunk, f"part {number} of {where}"))
        out.append(match.group(0))
        position, number = match.end(), number + 1
        if match.group(1):  # the close delimiter: the rest is the epilogue
            break
    rest = body[position:]
    if not rest.isascii():
        raise SevenBitError(f"{where} has 8-bit bytes outside its parts")
    out.append(rest)
    return b"".join(out)


def _encode(body: bytes, text: bool, newline: bytes, *, top: bool) -> tuple[bytes, bytes]:
    """(encoding name, encoded body): the shorter of the two for text, base64 otherwise.

    A part inside a multipart is followed by the line end that belongs to the
    next delimiter, so its encoded body ends without one; the top-level body
    ends with one.
    """
    raw = base64.b64encode(body)
    lines = [raw[i : i + _B64_LINE] for i in range(0, len(raw), _B64_LINE)]
    b64 = newline.join(lines) + (newline if top and lines else b"")
    if text:
        qp = binascii.b2a_qp(body, istext=True)
        if newline == b"\r\n" and b"\r\n" not in body:
            qp = qp.replace(b"\n", b"\r\n")  # b2a_qp keeps a body's bare LF line ends
        if len(qp) <= len(b64):
            return b"quoted-printable", qp
    return b"base64", b64


def _set_encoding(head: bytes, name: bytes, newline: bytes) -> bytes:
    """The header block with one Content-Transfer-Encoding header, naming ``name``."""
    line = b"Content-Transfer-Encoding: " + name + newline
    match = _CTE_HEADER.search(head)
    if match is None:
        return head + line
    return head[: match.start()] + line + _CTE_HEADER.sub(b"", head[match.end() :])


def _verify(original: bytes, converted: bytes) -> None:
    """Both parse to the same parts, and each part decodes to the same bytes."""
    before = list(email.message_from_bytes(original, policy=policy.compat32).walk())
    after = list(email.message_from_bytes(converted, policy=policy.compat32).walk())
    if len(before) != len(after):
        raise SevenBitError(
            f"the converted message has {len(after)} parts instead of {len(before)}"
        )
    for number, (old, new) in enumerate(zip(before, after, strict=True)):
        if old.get_content_type() != new.get_content_type():
            raise SevenBitError(f"part {number} changed type in the conversion")
        if old.is_multipart() or new.is_multipart():
            continue
        if old.get_payload(decode=True) != new.get_payload(decode=True):
            raise SevenBitError(
                f"part {number} does not decode to the same content after conversion"
            )
