"""DKIM public keys (RFC 6376): what is published at a selector, and whether it will verify.

RFC 8301 makes receivers ignore RSA keys under 1024 bits, and asks signers for
2048; an Ed25519 key (RFC 8463) is always 256 bits. When the app holds the
private key a route signs with, the published key is compared with its public
half: a rotated key that was never published fails every signature silently.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from .resolver import DNSMissing, Resolver

MIN_BITS, RECOMMENDED_BITS = 1024, 2048


@dataclass
class DKIMKey:
    """The outcome of reading one selector's key record."""

    selector: str
    domain: str
    name: str
    record: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    key_type: str = ""
    bits: int = 0
    problem: str = ""  # a finding code: dkim.missing, dkim.revoked, dkim.malformed, ...
    detail: str = ""
    matches_private_key: bool | None = None  # None: no private key to compare with
    public_der: bytes = b""
    # A key the app signs with (Sending domains): "active", "inactive"; "": a relay's key.
    app_key: str = ""

    @property
    def usable(self) -> bool:
        """True when a receiver would verify signatures with this key."""
        return not self.problem and bool(self.public_der)

    def to_dict(self) -> dict[str, object]:
        return {
            "selector": self.selector,
            "name": self.name,
            "record": self.record,
            "key_type": self.key_type,
            "bits": self.bits,
            "problem": self.problem,
            "matches_private_key": self.matches_private_key,
            "app_key": self.app_key,
        }


def parse_tags(text: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags.setdefault(name.strip().lower(), "".join(value.split()))
    return tags


def load_public_key(key_type: str, data: bytes) -> tuple[object, int]:
    """The key object and its size in bits; ValueError for anything unreadable."""
    if key_type == "ed25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(data), 256
    try:
        key = serialization.load_der_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"not an RSA public key ({exc})") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError(f"k=rsa but the key is {type(key).__name__}")
    return key, key.key_size


def _public_der(key: object) -> bytes:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def private_key_public_der(pem: str) -> bytes:
    """The public half of a PEM private key, in the form :class:`DKIMKey` compares."""
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    return _public_der(key.public_key())


def check_selector(
    domain: str, selector: str, resolver: Resolver, private_key_pem: str = ""
) -> DKIMKey:
    """Read ``<selector>._domainkey.<domain>``; raises DNSUnavailable when it cannot ask."""
    name = f"{selector}._domainkey.{domain}"
    result = DKIMKey(selector, domain, name)
    try:
        records = [t for t in resolver.txt(name) if "p=" in t or t.lower().startswith("v=dkim1")]
    except DNSMissing:
        records = []
    if not records:
        result.problem = "dkim.missing"
        return result
    result.record = records[0]
    if len(records) > 1:
        result.problem, result.detail = "dkim.malformed", f"{len(records)} key records"
        return result
    tags = result.tags = parse_tags(records[0])
    result.key_type = tags.get("k", "rsa").lower()
    if tags.get("v", "DKIM1") != "DKIM1" or "p" not in tags:
        result.problem, result.detail = "dkim.malformed", "no v=DKIM1 or no p= tag"
        return result
    if not tags["p"]:
        result.problem = "dkim.revoked"
        return result
    try:
        key, result.bits = load_public_key(result.key_type, base64.b64decode(tags["p"]))
    except (ValueError, binascii.Error) as exc:
        result.problem, result.detail = "dkim.malformed", str(exc)
        return result
    result.public_der = _public_der(key)
    if result.key_type == "rsa" and result.bits < MIN_BITS:
        result.problem = "dkim.key_too_short"
    if private_key_pem:
        try:
            result.matches_private_key = private_key_public_der(private_key_pem) == (
                result.public_der
            )
        except (ValueError, TypeError, UnsupportedAlgorithm):
            result.matches_private_key = False
        if result.matches_private_key is False and not result.problem:
            result.problem = "dkim.key_mismatch"
    return result
