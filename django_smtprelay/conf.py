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
    "BATCH_SIZE": 500,
    # Results are written after at most this many sends (and every third of a lease).
    "FLUSH_EVERY": 250,
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
    # Seconds that publishing on commit may take, connecting included; past
    # it the message stays queued for the sweep and send_mail() returns.
    "PUBLISH_TIMEOUT": 2.0,
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
    # What an ESP's webhook (or a returned bounce, DSN) adds to the suppressions:
    # hard bounces, spam complaints, unsubscribes. Soft bounces never do.
    "SUPPRESS_ON_HARD_BOUNCE": True,
    "SUPPRESS_ON_COMPLAINT": True,
    "SUPPRESS_ON_UNSUBSCRIBE": True,
    # DNS checks of sending domains.
    "DNS_NAMESERVERS": None,
    "DNS_TIMEOUT": 5.0,
    "DNS_CACHE_SECONDS": 300,
    # What one domain's check may spend: DNS queries actually sent, and seconds
    # in all. Past either, the check ends with a "check.incomplete" finding.
    "DOMAIN_CHECK_MAX_QUERIES": 500,
    "DOMAIN_CHECK_TIMEOUT": 60.0,
    # The MTA-STS policy fetch (https://mta-sts.<domain>/.well-known/mta-sts.txt):
    # seconds for the whole exchange, and the largest policy read.
    "MTA_STS_TIMEOUT": 10.0,
    "MTA_STS_MAX_BYTES": 65536,
    # For tests only: the HTTPS port of the policy host, and a CA file to trust
    # instead of the system's (which also lets the policy host be a loopback address).
    "MTA_STS_PORT": 443,
    "MTA_STS_CA_FILE": "",
    # Direct-to-MX routes (kind "mx"): the port MX hosts are reached on (25;
    # tests point it elsewhere), and for tests only a port per MX host name
    # ({"mx1.example.test": 2525}), since loopback servers cannot share one.
    "MX_PORT": 25,
    "MX_PORTS": {},
    # Deliver to MX hosts whose addresses are loopback, private or otherwise
    # not global. Off: a domain cannot point its MX at the relay's own network.
    "MX_PRIVATE_ADDRESSES": False,
    # Route health (django_smtprelay.health). Circuit breakers, rate limits and
    # health scores share state through this cache. LocMemCache is per process:
    # fine for one worker; with several workers use Redis (or another shared cache).
    "CACHE_ALIAS": "default",
    # A route's circuit opens after this many route faults in a row ...
    "BREAKER_FAILURE_THRESHOLD": 5,
    # ... or when at least BREAKER_MIN_VOLUME sends in the last BREAKER_WINDOW_SECONDS
    # had this fraction of route faults or more.
    "BREAKER_ERROR_RATE": 0.5,
    "BREAKER_WINDOW_SECONDS": 300,
    "BREAKER_MIN_VOLUME": 20,
    # How long an open circuit waits before one probe; doubles on each failed probe.
    "BREAKER_COOLDOWN_SECONDS": 120,
    "BREAKER_MAX_COOLDOWN_SECONDS": 1800,
    # Per-route limits by route name: {"relay-a": {"per_second": 10, "per_minute": None,
    # "per_hour": None, "max_connections": 2}}.
    "RATE_LIMITS": {},
    # After a throttling reply (421, 4.7.x rate or reputation), a route's limits are
    # multiplied by THROTTLE_FACTOR for THROTTLE_SECONDS.
    "THROTTLE_FACTOR": 0.5,
    "THROTTLE_SECONDS": 600,
    # Destination-aware routing: recipient domains are grouped by who receives
    # their mail (the MX hosts' provider), and routes of one priority share each
    # group's traffic by how that group has been answering them.
    "DESTINATION_ROUTING": True,
    # More MX host suffixes -> provider group, over the built-in table
    # (django_smtprelay.health.destinations.PROVIDERS): {"mx.example.net": "example"}.
    "DESTINATION_PROVIDERS": {},
    # Seconds one MX look-up for grouping may take; on failure the domain is its own group.
    "DESTINATION_MX_TIMEOUT": 2.0,
    # How long a domain's group is reused (a failed look-up: at most 5 minutes).
    "DESTINATION_CACHE_SECONDS": 3600,
    # Bodies and attempts of messages that reached a final state and were queued
    # more than this many days ago are purged (the message rows, their recipients
    # and the statistics stay). None keeps everything for ever.
    "RETENTION_DAYS": 30,
    # The bearer token that the metrics view (django_smtprelay.urls, "metrics/")
    # accepts, as "Authorization: Bearer <token>". None: only logged-in staff.
    # A secret: keep it out of the code (read it from the environment).
    "METRICS_TOKEN": None,
    # The health check (django_smtprelay.contrib.health_check) fails when a due
    # queued message has waited longer than this many seconds.
    "HEALTH_CHECK_QUEUED_SECONDS": 900,
    # The SMTP submission listener (smtprelay_serve; typed in submission/settings.py).
    # Where it listens: "starttls://host:port" (STARTTLS offered) or
    # "tls://host:port" (TLS from the first byte).
    "SUBMISSION_LISTEN": ["starttls://127.0.0.1:587", "tls://127.0.0.1:465"],
    # PEM files of the listener's certificate chain and key, read again on SIGHUP.
    "SUBMISSION_TLS_CERT_FILE": None,
    "SUBMISSION_TLS_KEY_FILE": None,
    # The name in the greeting and the Received header; None: the machine's name.
    "SUBMISSION_HOSTNAME": None,
    # Clients in these networks ("192.168.1.0/24") submit without logging in.
    "SUBMISSION_TRUSTED_NETWORKS": [],
    # Allow AUTH without TLS for clients on the loopback interface.
    "SUBMISSION_AUTH_WITHOUT_TLS_ON_LOOPBACK": False,
    # The largest message accepted (SIZE); an account may set a lower one.
    "SUBMISSION_MAX_MESSAGE_SIZE": 25 * 1024 * 1024,
    # Answer 452 (try again later) while this many messages are unfinished; None: no limit.
    "SUBMISSION_MAX_QUEUE_DEPTH": None,
    # Failed logins per client address within the window before it is refused (421).
    "SUBMISSION_LOGIN_FAILURE_LIMIT": 10,
    "SUBMISSION_LOGIN_FAILURE_WINDOW_SECONDS": 900,
    # Seconds a client may stay silent before it is disconnected.
    "SUBMISSION_TIMEOUT": 300.0,
    # Seconds SIGTERM waits for transactions in progress before it closes them.
    "SUBMISSION_SHUTDOWN_GRACE_SECONDS": 30.0,
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


def _port(label: str, port: object) -> int:
    """``port`` checked; ``label`` names the setting in the error."""
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ImproperlyConfigured(f"{label} must be a port number (1-65535), got {port!r}.")
    return port


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
        """Sends between two writes of results."""
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
    def publish_timeout(self) -> float:
        """Seconds that publishing delivery tasks on commit may take, connecting included."""
        return float(_number("PUBLISH_TIMEOUT", minimum=0.01))

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
    def suppress_on_hard_bounce(self) -> bool:
        """Suppress an address an ESP (or a DSN) reports as a hard bounce."""
        return bool(get_config()["SUPPRESS_ON_HARD_BOUNCE"])

    @property
    def suppress_on_complaint(self) -> bool:
        """Suppress an address whose owner marked a message as spam."""
        return bool(get_config()["SUPPRESS_ON_COMPLAINT"])

    @property
    def suppress_on_unsubscribe(self) -> bool:
        """Suppress an address whose owner unsubscribed through the ESP."""
        return bool(get_config()["SUPPRESS_ON_UNSUBSCRIBE"])

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

    @property
    def domain_check_max_queries(self) -> int:
        """DNS queries one domain's check may send before it stops as incomplete."""
        return int(_number("DOMAIN_CHECK_MAX_QUERIES", minimum=1))

    @property
    def domain_check_timeout(self) -> float:
        """Seconds one domain's check may take in all, every lookup included."""
        return float(_number("DOMAIN_CHECK_TIMEOUT", minimum=0.01))

    @property
    def mta_sts_timeout(self) -> float:
        """Seconds the MTA-STS policy fetch may take, connection to last byte."""
        return float(_number("MTA_STS_TIMEOUT", minimum=0.01))

    @property
    def mta_sts_max_bytes(self) -> int:
        """The largest MTA-STS policy read; a larger one is reported, not read."""
        return int(_number("MTA_STS_MAX_BYTES", minimum=1))

    @property
    def mta_sts_port(self) -> int:
        """The policy host's HTTPS port: 443 except in tests."""
        port = get_config()["MTA_STS_PORT"]
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ImproperlyConfigured(
                f"SMTPRELAY['MTA_STS_PORT'] must be a port number (1-65535), got {port!r}."
            )
        return port

    @property
    def mta_sts_ca_file(self) -> str:
        """A CA file trusted for the policy host instead of the system's (tests only)."""
        return str(get_config()["MTA_STS_CA_FILE"] or "")

    @property
    def mx_port(self) -> int:
        """The port MX hosts are reached on: 25 except in tests."""
        return _port("SMTPRELAY['MX_PORT']", get_config()["MX_PORT"])

    def mx_port_for(self, host: str) -> int:
        """The port of one MX host: ``MX_PORTS[host]`` (tests only), else ``MX_PORT``."""
        ports = get_config()["MX_PORTS"] or {}
        if not isinstance(ports, dict):
            raise ImproperlyConfigured(
                f"SMTPRELAY['MX_PORTS'] must be a dict of MX host name -> port, got {ports!r}."
            )
        port = ports.get(host.rstrip(".").lower())
        return _port(f"SMTPRELAY['MX_PORTS'][{host!r}]", port) if port is not None else self.mx_port

    @property
    def mx_private_addresses(self) -> bool:
        """Whether MX hosts at loopback or private addresses are delivered to."""
        return bool(get_config()["MX_PRIVATE_ADDRESSES"])

    @property
    def destination_routing(self) -> bool:
        """Order routes per destination group by how that group answers them."""
        return bool(get_config()["DESTINATION_ROUTING"])

    @property
    def destination_providers(self) -> dict[str, str]:
        """Extra MX host suffixes -> provider group, over the built-in table."""
        value = get_config()["DESTINATION_PROVIDERS"] or {}
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k.strip(".") and v
            for k, v in value.items()
        ):
            raise ImproperlyConfigured(
                "SMTPRELAY['DESTINATION_PROVIDERS'] must map MX host suffixes to group "
                f"names, like {{'mx.example.net': 'example'}}; got {value!r}."
            )
        return {k.strip(".").lower(): v for k, v in value.items()}

    @property
    def destination_mx_timeout(self) -> float:
        """Seconds one MX look-up for a destination's group may take."""
        return float(_number("DESTINATION_MX_TIMEOUT", minimum=0.01))

    @property
    def destination_cache_seconds(self) -> int:
        """How long a recipient domain's group is reused."""
        return int(_number("DESTINATION_CACHE_SECONDS", minimum=1))

    @property
    def cache_alias(self) -> str:
        """Cache (an alias of CACHES) that route health state is shared through."""
        alias = get_config()["CACHE_ALIAS"]
        caches = getattr(django_settings, "CACHES", None) or {"default": {}}
        if alias not in caches:
            raise ImproperlyConfigured(
                f"SMTPRELAY['CACHE_ALIAS'] is {alias!r}, but CACHES has no such alias "
                f"(it has: {', '.join(sorted(caches)) or 'none'})."
            )
        return alias

    @property
    def breaker_failure_threshold(self) -> int:
        """Route faults in a row that open a route's circuit."""
        return int(_number("BREAKER_FAILURE_THRESHOLD", minimum=1))

    @property
    def breaker_error_rate(self) -> float:
        """Fraction of route faults over the window that opens a route's circuit."""
        value = float(_number("BREAKER_ERROR_RATE", minimum=0.01))
        if value > 1:
            raise ImproperlyConfigured(
                f"SMTPRELAY['BREAKER_ERROR_RATE'] must be a fraction <= 1, got {value!r}."
            )
        return value

    @property
    def breaker_window(self) -> timedelta:
        """Window over which the error rate is measured."""
        return timedelta(seconds=_number("BREAKER_WINDOW_SECONDS", minimum=1))

    @property
    def breaker_min_volume(self) -> int:
        """Sends in the window below which the error rate is not trusted."""
        return int(_number("BREAKER_MIN_VOLUME", minimum=1))

    @property
    def breaker_cooldown(self) -> timedelta:
        """How long an open circuit waits before it lets one probe through."""
        return timedelta(seconds=_number("BREAKER_COOLDOWN_SECONDS", minimum=1))

    @property
    def breaker_max_cooldown(self) -> timedelta:
        """Cap on the cool-down, which doubles on each failed probe."""
        return timedelta(seconds=_number("BREAKER_MAX_COOLDOWN_SECONDS", minimum=1))

    @property
    def rate_limits(self) -> dict[str, dict[str, int | None]]:
        """Per-route rate limits, by route name; checked when the limiter reads them."""
        value = get_config()["RATE_LIMITS"]
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ImproperlyConfigured(
                f"SMTPRELAY['RATE_LIMITS'] must be a dict of route name -> limits, got {value!r}."
            )
        known = {"per_second", "per_minute", "per_hour", "max_connections"}
        for route, limits in value.items():
            if not isinstance(limits, dict) or set(limits) - known:
                raise ImproperlyConfigured(
                    f"SMTPRELAY['RATE_LIMITS'][{route!r}] must be a dict with keys among "
                    f"{', '.join(sorted(known))}, got {limits!r}."
                )
            for key, limit in limits.items():
                if limit is not None and (
                    not isinstance(limit, int) or isinstance(limit, bool) or limit < 1
                ):
                    raise ImproperlyConfigured(
                        f"SMTPRELAY['RATE_LIMITS'][{route!r}][{key!r}] must be an integer >= 1 "
                        f"or None, got {limit!r}."
                    )
        return value

    @property
    def throttle_factor(self) -> float:
        """Multiplier applied to a route's limits after a throttling reply."""
        value = float(_number("THROTTLE_FACTOR", minimum=0.01))
        if value > 1:
            raise ImproperlyConfigured(
                f"SMTPRELAY['THROTTLE_FACTOR'] must be a fraction <= 1, got {value!r}."
            )
        return value

    @property
    def throttle_duration(self) -> timedelta:
        """How long a route stays slowed down after a throttling reply."""
        return timedelta(seconds=_number("THROTTLE_SECONDS", minimum=1))

    @property
    def retention(self) -> timedelta | None:
        """How long a finished message keeps its body and attempts; None: for ever."""
        if get_config()["RETENTION_DAYS"] is None:
            return None
        return timedelta(days=_number("RETENTION_DAYS", minimum=1))

    @property
    def metrics_token(self) -> str | None:
        """The bearer token the metrics view accepts; None: staff sessions only."""
        token = get_config()["METRICS_TOKEN"]
        # The value is a secret: the errors name its type and length, never the value.
        if token is not None and (not isinstance(token, str) or not token.strip()):
            raise ImproperlyConfigured(
                f"SMTPRELAY['METRICS_TOKEN'] must be None or a non-blank string, got "
                f"a {type(token).__name__}."
            )
        if token is not None and token != token.strip():
            raise ImproperlyConfigured(
                "SMTPRELAY['METRICS_TOKEN'] starts or ends with white space (a newline read "
                "from a file?): strip it."
            )
        return token

    @property
    def health_check_queued(self) -> timedelta:
        """How long a due queued message may wait before the health check fails."""
        return timedelta(seconds=_number("HEALTH_CHECK_QUEUED_SECONDS", minimum=1))


app_settings = AppSettings()
