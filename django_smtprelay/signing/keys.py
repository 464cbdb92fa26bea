"""DKIM key pairs: generated here, private half sealed at rest, public half published.

RSA keys are 2048 bits (RFC 8301 asks signers for at least 2048 in practice;
receivers ignore keys under 1024). Ed25519 (RFC 8463) is optional: not every
receiver verifies it yet, so it is meant to sign beside an RSA key.
"""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

RSA_SHA256 = "rsa-sha256"
ED25519_SHA256 = "ed25519-sha256"
ALGORITHMS = (RSA_SHA256, ED25519_SHA256)
RSA_BITS = 2048
# A TXT record is made of strings of at most 255 bytes each (RFC 1035 3.3.14);
# an RSA-2048 key record is about 410 bytes, so it is always split.
TXT_STRING_MAX = 255

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def generate(algorithm: str) -> str:
    """A new private key for ``algorithm``, as PKCS#8 PEM."""
    if algorithm == RSA_SHA256:
        key: PrivateKey = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    elif algorithm == ED25519_SHA256:
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        names = ", ".join(ALGORITHMS)
        raise ValueError(f"Unknown DKIM algorithm {algorithm!r}; use one of {names}.")
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def key_type(algorithm: str) -> str:
    """The record's ``k=`` for ``algorithm``."""
    return "ed25519" if algorithm == ED25519_SHA256 else "rsa"


@lru_cache(maxsize=128)
def load_private_key(pem: str) -> PrivateKey:
    """The key object for a PEM private key (cached: loading checks an RSA key, ~ms)."""
    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    if not isinstance(key, (rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise ValueError(f"a DKIM key must be RSA or Ed25519, not {type(key).__name__}")
    return key


def public_key_b64(pem: str) -> str:
    """The ``p=`` value for a PEM private key: base64 of the SubjectPublicKeyInfo
    (RSA) or of the raw 32 bytes (Ed25519, RFC 8463)."""
    public = load_private_key(pem).public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    else:
        raw = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return base64.b64encode(raw).decode("ascii")


def txt_record(algorithm: str, public_b64: str) -> str:
    """The TXT record's value to publish: ``v=DKIM1; k=rsa; p=...``."""
    return f"v=DKIM1; k={key_type(algorithm)}; p={public_b64}"


def txt_strings(value: str) -> list[str]:
    """``value`` split into the 255-byte strings one TXT record is made of."""
    return [value[i : i + TXT_STRING_MAX] for i in range(0, len(value), TXT_STRING_MAX)] or [""]


def zone_line(name: str, value: str) -> str:
    """The record as a zone-file line: ``name. IN TXT ( "..." "..." )``."""
    strings = " ".join(f'"{s}"' for s in txt_strings(value))
    return f"{name}. IN TXT ( {strings} )"


def domain_and_parents(domain: str) -> list[str]:
    """``domain`` and the domains above it, most specific first (not the TLD): mail
    from ``news.example.com`` is signed with the keys of the first that has any."""
    labels = domain.lower().rstrip(".").split(".")
    return [".".join(labels[i:]) for i in range(max(1, len(labels) - 1))]
