"""Secrets at rest: Fernet tokens, keyed from settings, rotatable."""

from __future__ import annotations

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from .conf import app_settings
from .exceptions import SecretDecryptionError


def _derive(secret: str) -> bytes:
    # A domain-separated hash, so the derived key is used for nothing else.
    digest = hashlib.sha256(b"django-smtprelay secrets v1\x00" + secret.encode()).digest()
    return base64.urlsafe_b64encode(digest)


@cache
def _fernet() -> MultiFernet:
    # Configured keys first (the first one encrypts), then the keys derived from
    # SECRET_KEY and its fallbacks: setting ENCRYPTION_KEYS must not strand the
    # secrets saved before it (smtprelay_rotate_secrets moves them over).
    try:
        configured = [Fernet(k) for k in app_settings.encryption_keys or ()]
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "SMTPRELAY['ENCRYPTION_KEYS'] must be Fernet keys (32 url-safe base64 bytes); "
            "make one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        ) from exc
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return MultiFernet(configured + [Fernet(_derive(s)) for s in secrets if s])


@receiver(setting_changed)
def _clear(*, setting: str, **kwargs: object) -> None:
    if setting in {"SMTPRELAY", "SECRET_KEY", "SECRET_KEY_FALLBACKS"}:
        _fernet.cache_clear()


def key_ring() -> object:
    """The keys in use, as one object that changes when the settings do: for
    callers that remember what they decrypted."""
    return _fernet()


def encrypt(plaintext: str) -> str:
    """Encrypt ``plaintext`` with the current key; '' stays ''."""
    if not plaintext:
        return ""
    return _fernet().encrypt(plaintext.encode()).decode("ascii")


def decrypt(token: str) -> str:
    """Decrypt a token made by :func:`encrypt` with any configured key."""
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeEncodeError) as exc:
        raise SecretDecryptionError(_UNREADABLE) from exc


def rotate(token: str) -> str:
    """Re-encrypt ``token`` with the current (first) key; '' stays ''.

    The token is decrypted and encrypted again as it is (``MultiFernet.rotate``):
    whatever the plaintext holds is carried over unread.
    """
    if not token:
        return ""
    try:
        return _fernet().rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeEncodeError) as exc:
        raise SecretDecryptionError(_UNREADABLE) from exc


_UNREADABLE = (
    "A stored secret cannot be decrypted with the configured keys: was "
    "SMTPRELAY['ENCRYPTION_KEYS'] or SECRET_KEY changed without keeping the old "
    "key (in ENCRYPTION_KEYS after the new one, or in SECRET_KEY_FALLBACKS)?"
)
