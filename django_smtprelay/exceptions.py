"""Errors raised by django-smtprelay.

``SMTPRelayError`` is the base of delivery-time errors. Configuration errors
derive from Django's ``ImproperlyConfigured`` instead, so ``fail_silently``
never swallows them.
"""

from __future__ import annotations


class SMTPRelayError(Exception):
    """Base class for django-smtprelay's runtime errors."""


class InvalidMessageError(SMTPRelayError, ValueError):
    """A message cannot be queued (no recipients, a bad address, a bad header)."""


class SecretDecryptionError(SMTPRelayError):
    """A stored secret cannot be decrypted with any configured key."""


class SecretDestinationError(SMTPRelayError):
    """A stored secret was typed for another destination than the route's current one."""
