"""Secrets sealed to the destination they were typed for.

A relay password or an ESP's API key is only safe to send where its owner
meant it to go. The destination (for an SMTP route: kind, host, port,
transport security, certificate check, plaintext-AUTH flag; for an ESP
route: the ESP and its API base URL, endpoint or region) is encrypted
together with the secret; a secret whose destination no longer matches the route's is
refused, so a changed host, port or security never receives the stored
secret until somebody types it again.

The binding travels inside the Fernet token: it is authenticated with the
secret, and rotating keys (``MultiFernet.rotate``) keeps it as it is.
"""

from __future__ import annotations

from . import crypto
from .exceptions import SecretDestinationError

# Tokens sealed to a destination start with this marker (after decryption);
# a token without it was stored before sealing and is bound to nothing.
_MARKER = "\x00smtprelay-sealed-v1\x00"


def destination(
    *,
    kind: str,
    host: str,
    port: int,
    security: str,
    verify_certificate: bool,
    allow_plaintext_auth: bool,
    esp: str = "",
    esp_endpoint: str = "",
) -> str:
    """Where a route's secret goes and how it is protected on the way, in words."""
    if kind == "anymail":
        # The request goes to the ESP's API at its base URL (or region): the
        # SMTP fields play no part, and an SMTP route's words stay as they were.
        return f"anymail {esp.strip().lower()} at {esp_endpoint or 'its default endpoint'}"
    text = f"{kind} {security}://{host.strip().lower().rstrip('.')}:{port}"
    if not verify_certificate:
        text += " without certificate check"
    if allow_plaintext_auth:
        text += " with plaintext AUTH allowed"
    return text


def seal(secret: str, destination: str) -> str:
    """Encrypt ``secret`` bound to ``destination``; '' stays ''."""
    if not secret:
        return ""
    if "\x00" in destination:
        raise ValueError(f"A destination cannot contain NUL: {destination!r}")
    return crypto.encrypt(f"{_MARKER}{destination}\x00{secret}")


def unseal(token: str, destination: str) -> str:
    """The secret in ``token``, if it was sealed to ``destination``.

    Raises :class:`SecretDestinationError` (naming both destinations, never the
    secret) when it was typed for another one, or stored before sealing, and
    ``SecretDecryptionError`` when no configured key opens it.
    """
    if not token:
        return ""
    sealed_to, secret = _open(token)
    if sealed_to is None:
        raise SecretDestinationError(
            f"The stored secret was saved before secrets were bound to their destination; "
            f"type it again for {destination}."
        )
    if sealed_to != destination:
        raise SecretDestinationError(
            f"The stored secret was typed for {sealed_to}, but the route now goes to "
            f"{destination}: type it again to send it there."
        )
    return secret


def sealed_to(token: str) -> str | None:
    """The destination ``token`` is bound to (None: stored before sealing)."""
    return _open(token)[0] if token else None


def reseal_legacy(token: str, destination: str) -> str:
    """``token`` sealed to ``destination`` if it was stored before sealing; else unchanged."""
    if not token or _open(token)[0] is not None:
        return token
    return seal(crypto.decrypt(token), destination)


def _open(token: str) -> tuple[str | None, str]:
    plaintext = crypto.decrypt(token)
    if not plaintext.startswith(_MARKER):
        return None, plaintext
    destination, _, secret = plaintext[len(_MARKER) :].partition("\x00")
    return destination, secret
