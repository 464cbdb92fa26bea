"""The app's settings: one ``SMTPRELAY = {...}`` dict, read lazily.

Every key has a documented default in :data:`DEFAULTS`. Values are read when
first used (never at import time) and the cache is cleared on Django's
``setting_changed`` signal, so ``override_settings`` works in tests.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cache
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

DEFAULTS: dict[str, Any] = {
    # Fernet keys (urlsafe base64, 32 bytes) for secrets at rest. The first
    # encrypts; all decrypt, so keys can be rotated. When unset, a key is
    # derived from SECRET_KEY (and SECRET_KEY_FALLBACKS decrypt).
    "ENCRYPTION_KEYS": None,
    # How many due messages one claim takes.
    "BATCH_SIZE": 200,
    # Results are written (and leases renewed) after at most this many sends.
    "FLUSH_EVERY": 100,
    # How long a claim holds a message before another worker may take it.
    "LEASE_SECONDS": 300,
    # Retry schedule after a transient failure: base * 2**(attempt-1), capped,
    # with +/- jitter (a fraction), until the message's lifetime runs out.
    "RETRY_BASE_SECONDS": 300,
    "RETRY_MAX_SECONDS": 4 * 3600,
    "RETRY_JITTER": 0.2,
    # Postfix's maximal_queue_lifetime: after this, a deferred message fails
    # with its last reply as the reason.
    "MAX_LIFETIME_SECONDS": 5 * 24 * 3600,
    # CA bundle (PEM path) to verify relays' certificates; the system store if unset.
    "TLS_CA_FILE": None,
    # Name sent in EHLO; socket.getfqdn() if unset.
    "EHLO_HOSTNAME": None,
    # Publish a delivery task on commit. Turn off where only the sweep or the
    # smtprelay_send command delivers.
    "PUBLISH_ON_COMMIT": True,
    # Celery queue for delivery tasks (None: the app's default queue).
    "CELERY_QUEUE": None,
    # Fall back to EMAIL_HOST & co. as a route when no Route row is enabled.
    "USE_DJANGO_EMAIL_SETTINGS": True,
    # Django 6.1+ with MAILERS: the alias of an SMTP mailer whose OPTIONS
    # (host, port, username, password, use_tls, use_ssl, timeout) are that route.
    "DEFAULT_ROUTE_MAILER": None,
    # What a content rejection (554 5.7.1 "message rejected as spam") means:
    # "permanent" fails the recipient; "route_fault" tries another route first.
    "CONTENT_REJECTION": "permanent",
    # Mailbox full (552 5.2.2) is retried until the message is this old.
    "MAILBOX_FULL_GIVE_UP_SECONDS": 24 * 3600,
    # Add a Suppression when a recipient fails permanently because the mailbox
    # does not exist or is disabled (enhanced codes 5.1.x and 5.2.1).
    "SUPPRESS_ON_PERMANENT_FAILURE": True,
    # DNS checks of sending domains.
    "DNS_NAMESERVERS": None,
    "DNS_TIMEOUT": 5.0,
    "DNS_CACHE_SECONDS": 300,
}


@cache
def get_config() -> dict[str, Any]:
    user = getattr(django_settings, "SMTPRELAY", None) or {}
    if not isinstance(user, dict):
        raise ImproperlyConfigured(
            f"SMTPRELAY must be a dict of settings, got {type(user).__name__}: {user!r}."
        )
    unknown = sorted(set(user) - set(DEFAULTS))
    if unknown:
        raise ImproperlyConfigured(
            f"Unknown SMTPRELAY setting(s): {', '.join(unknown)}. "
            f"Known settings: {', '.join(sorted(DEFAULTS))}."
        )
    return {**DEFAULTS, **user}


@receiver(setting_changed)
def _clear_cache(*, setting: str, **kwargs: Any) -> None:
    if setting == "SMTPRELAY":
        get_config.cache_clear()


def _number(name: str, *, minimum: float = 0) -> float:
    value = get_config()[name]
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < minimum:
        raise ImproperlyConfigured(
            f"SMTPRELAY[{name!r}] must be a number >= {minimum}, got {value!r}."
        )
    return value


class AppSettings:
    """Typed access to ``SMTPRELAY``; each property documents one key."""

    @property
    def encryption_keys(self) -> list[str] | None:
        """Fernet keys for secrets at rest; None derives one from SECRET_KEY."""
        keys = get_config()["ENCRYPTION_KEYS"]
        if keys is None:
            return None
        if isinstance(keys, str):
            keys = [keys]
        return list(keys)

    @property
    def batch_size(self) -> int:
        """Messages taken by one claim."""
        return int(_number("BATCH_SIZE", minimum=1))

    @property
    def flush_every(self) -> int:
        """Sends between two writes of results (and lease renewals)."""
        return int(_number("FLUSH_EVERY", minimum=1))

    @property
    def lease(self) -> timedelta:
        """How long a claim holds a message."""
        return timedelta(seconds=_number("LEASE_SECONDS", minimum=1))

    @property
    def retry_base(self) -> timedelta:
        """First retry delay after a transient failure."""
        return timedelta(seconds=_number("RETRY_BASE_SECONDS"))

    @property
    def retry_max(self) -> timedelta:
        """Longest delay between two retries."""
        return timedelta(seconds=_number("RETRY_MAX_SECONDS"))

    @property
    def retry_jitter(self) -> float:
        """Fraction of random spread applied to each retry delay."""
        return float(_number("RETRY_JITTER"))

    @property
    def max_lifetime(self) -> timedelta:
        """Age after which a message that still cannot be delivered fails."""
        return timedelta(seconds=_number("MAX_LIFETIME_SECONDS", minimum=1))

    @property
    def tls_ca_file(self) -> str | None:
        """PEM bundle that relay certificates are verified against."""
        return get_config()["TLS_CA_FILE"]

    @property
    def ehlo_hostname(self) -> str | None:
        """Name sent in EHLO."""
        return get_config()["EHLO_HOSTNAME"]

    @property
    def publish_on_commit(self) -> bool:
        """Whether queuing publishes a Celery delivery task on commit."""
        return bool(get_config()["PUBLISH_ON_COMMIT"])

    @property
    def celery_queue(self) -> str | None:
        """Celery queue that delivery tasks go to."""
        return get_config()["CELERY_QUEUE"]

    @property
    def use_django_email_settings(self) -> bool:
        """Whether EMAIL_HOST & co. act as a route when no Route is enabled."""
        return bool(get_config()["USE_DJANGO_EMAIL_SETTINGS"])

    @property
    def content_rejection(self) -> str:
        """'permanent' or 'route_fault': what a content rejection does."""
        value = get_config()["CONTENT_REJECTION"]
        if value not in ("permanent", "route_fault"):
            raise ImproperlyConfigured(
                f"SMTPRELAY['CONTENT_REJECTION'] must be 'permanent' or 'route_fault', "
                f"got {value!r}."
            )
        return value

    @property
    def mailbox_full_give_up(self) -> timedelta:
        """How long a full mailbox is retried."""
        return timedelta(seconds=_number("MAILBOX_FULL_GIVE_UP_SECONDS"))

    @property
    def suppress_on_permanent_failure(self) -> bool:
        """Whether a recipient whose mailbox does not exist is suppressed."""
        return bool(get_config()["SUPPRESS_ON_PERMANENT_FAILURE"])

    @property
    def default_route_mailer(self) -> str | None:
        """MAILERS alias whose SMTP options act as the route when no Route is enabled."""
        return get_config()["DEFAULT_ROUTE_MAILER"]

    @property
    def dns_nameservers(self) -> list[str] | None:
        """Nameservers (``"host"`` or ``"host:port"``) for domain checks."""
        return get_config()["DNS_NAMESERVERS"]

    @property
    def dns_timeout(self) -> float:
        """Seconds one DNS query may take."""
        return float(_number("DNS_TIMEOUT", minimum=0.01))

    @property
    def dns_cache_seconds(self) -> int:
        """How long DNS answers are reused."""
        return int(_number("DNS_CACHE_SECONDS"))


app_settings = AppSettings()
