"""The DKIM-Signature header for a message, from dkimpy's canonicalization.

dkimpy parses the header, canonicalizes it (relaxed/relaxed) and computes
the header hash (``dkim.hash_headers``), exactly as its own ``sign`` does.
The body is canonicalized by :mod:`.body`, which gives dkimpy's bytes (the
tests compare them) several times faster, and a chunk at a time.
The last step, the RSA signature over that hash, is made by ``cryptography``
(OpenSSL), not by dkimpy's pure-Python RSA, which costs about 20 times more
per message (``make bench`` measures both). Ed25519 (RFC 8463) signs the
SHA-256 of the same header data, also with ``cryptography``.

An 8-bit message is made 7-bit before it is signed (RFC 6376 5.3): a relay
that converts it later would break the signature. A large message is hashed
chunk by chunk (:mod:`.body`) and sent as the signature header followed by
its stored bytes, never held whole in memory.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dkim
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from dkim.canonicalization import CanonicalizationPolicy

from ..exceptions import SMTPRelayError
from ..transports.sevenbit import SevenBitError, to_seven_bit
from .body import RelaxedBodyHash
from .keys import ED25519_SHA256, PrivateKey

if TYPE_CHECKING:
    from ..transports.base import Content

# The headers receivers expect signed, each as often as it is present, and
# From once more ("over-signed": no From can be added without breaking it).
SIGNED_HEADERS = frozenset(
    {
        b"from",
        b"to",
        b"cc",
        b"subject",
        b"date",
        b"message-id",
        b"reply-to",
        b"mime-version",
        b"content-type",
        b"content-transfer-encoding",
        b"list-unsubscribe",
        b"list-unsubscribe-post",
    }
)
OVER_SIGNED = (b"from",)
# A header block longer than this is refused rather than read without bound.
MAX_HEADER_BYTES = 1024 * 1024

_POLICY = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
_HEADER_END = re.compile(rb"\n\r?\n")
_NAME = b"DKIM-Signature"


class SigningError(SMTPRelayError, ValueError):
    """A message could not be signed (its key or its header cannot be read)."""


@dataclass(frozen=True)
class SigningKey:
    """One key a message is signed with: d=, s=, a= and the private key (never shown)."""

    domain: str
    selector: str
    algorithm: str
    private_key: PrivateKey = field(repr=False, compare=False)

    @property
    def name(self) -> str:
        """Where its public key is published."""
        return f"{self.selector}._domainkey.{self.domain}"


class SignedContent:
    """A large message with its signature headers in front: ``transports.base.Content``."""

    def __init__(self, prefix: bytes, content: Content) -> None:
        self.prefix, self.content = prefix, content

    def __repr__(self) -> str:
        return f"<SignedContent {len(self)} bytes: signed {self.content!r}>"

    def __len__(self) -> int:
        return len(self.prefix) + len(self.content)

    def isascii(self) -> bool:
        return self.prefix.isascii() and self.content.isascii()

    def chunks(self) -> Iterator[bytes]:
        yield self.prefix
        yield from self.content.chunks()

    def __bytes__(self) -> bytes:
        return self.prefix + bytes(self.content)


def sign_message(
    data: bytes | Content, keys: Sequence[SigningKey], *, now: int | None = None
) -> bytes | Content:
    """``data`` with one DKIM-Signature header per key in front (the first key's on top)."""
    if not keys:
        return data
    if not data.isascii():
        data = _seven_bit(data)
    if isinstance(data, bytes):
        head, start = _split(data)
        body = RelaxedBodyHash()
        body.update(data[start:])
        body_hash = body.digest()
    else:
        head, body_hash = _hash_streamed(data)
    try:
        parsed = dkim.rfc822_parse(head)[0]
    except dkim.DKIMException as exc:
        raise SigningError(f"the message's header cannot be parsed for signing: {exc}") from exc
    # Only the signed fields are hashed: canonicalizing the others would be wasted.
    headers = _POLICY.canonicalize_headers([h for h in parsed if h[0].lower() in SIGNED_HEADERS])
    signed = [n for n, _ in headers]
    if b"from" not in signed:
        raise SigningError("the message has no From header, which DKIM must sign")
    include = tuple(signed) + OVER_SIGNED
    timestamp = str(int(time.time()) if now is None else now).encode("ascii")
    prefix = b"".join(
        _signature(key, headers, include, base64.b64encode(body_hash), timestamp) for key in keys
    )
    if isinstance(data, bytes):
        return prefix + data
    return SignedContent(prefix, data)


def _signature(
    key: SigningKey,
    headers: list[tuple[bytes, bytes]],
    include: tuple[bytes, ...],
    body_hash: bytes,
    timestamp: bytes,
) -> bytes:
    """One DKIM-Signature header line, as dkimpy's ``DomainSigner.gen_header`` makes it."""
    domain = key.domain.encode("idna")
    fields = [
        (b"v", b"1"),
        (b"a", key.algorithm.encode("ascii")),
        (b"c", _POLICY.to_c_value()),
        (b"d", domain),
        (b"i", b"@" + domain),
        (b"q", b"dns/txt"),
        (b"s", key.selector.encode("ascii")),
        (b"t", timestamp),
        (b"h", b" : ".join(include)),
        (b"bh", body_hash),
        # Folded onto its own line, so adding the value re-folds nothing before it.
        (b"b", b"0" * 60),
    ]
    value = dkim.fold(b"; ".join(b"=".join(f) for f in fields), namelen=len(_NAME))
    value = dkim.RE_BTAG.sub(b"\\1", value)
    hasher = hashlib.sha256()
    dkim.hash_headers(hasher, _POLICY, headers, include, (_NAME, b" " + value), None)
    digest = hasher.digest()
    private = key.private_key
    if key.algorithm == ED25519_SHA256:
        if not isinstance(private, ed25519.Ed25519PrivateKey):
            raise SigningError(f"{key.name} is not an Ed25519 key")
        signature = private.sign(digest)
    else:
        if isinstance(private, ed25519.Ed25519PrivateKey):
            raise SigningError(f"{key.name} is not an RSA key")
        signature = private.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    fields[-1] = (b"b", base64.b64encode(signature))
    value = b"; ".join(b"=".join(f) for f in fields) + b"\r\n"
    return _NAME + b": " + dkim.fold(value, namelen=len(_NAME))


def _split(data: bytes) -> tuple[bytes, int]:
    """The header block (each line with its line end) and where the body starts."""
    if data.startswith(b"\r\n"):
        return b"", 2
    if data.startswith(b"\n"):
        return b"", 1
    match = _HEADER_END.search(data)
    if match is None:
        return data, len(data)
    return data[: match.start() + 1], match.end()


def _hash_streamed(content: Content) -> tuple[bytes, bytes]:
    """The header block and the body hash of a message read a chunk at a time."""
    chunks = content.chunks()
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        head, start = _split(buffer)
        if start < len(buffer) or _HEADER_END.search(buffer):
            break
        if len(buffer) > MAX_HEADER_BYTES:
            raise SigningError(
                f"the message's header is longer than {MAX_HEADER_BYTES} bytes: not signed"
            )
    else:
        head, start = _split(buffer)
    body = RelaxedBodyHash()
    body.update(buffer[start:])
    del buffer
    for chunk in chunks:
        body.update(chunk)
    return head, body.digest()


def _seven_bit(data: bytes | Content) -> bytes | Content:
    """``data`` made 7-bit, or as it is when that cannot be done (8-bit headers:
    the relay must then take it as it is, with SMTPUTF8)."""
    try:
        return to_seven_bit(bytes(data))
    except SevenBitError:
        return data
