"""Which routes may carry a message, in failover order."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from . import esps, sealing
from .conf import app_settings
from .matching import domain_matches, split_patterns
from .models import Route

DJANGO_SETTINGS_ROUTE = "django-settings"


@dataclass(frozen=True)
class RouteSpec:
    """Everything a transport needs to know about a route, detached from the ORM."""

    name: str
    host: str
    port: int
    security: str = Route.Security.NONE
    verify_certificate: bool = True
    allow_plaintext_auth: bool = False
    username: str = ""
    # A plain password (a route from Django's EMAIL_* settings) or a Route's
    # sealed token, opened only when a session logs in (``login_password``):
    # one route's unreadable secret then faults that route alone.
    password: str = field(default="", repr=False)
    sealed_password: str = field(default="", repr=False)
    timeout: float = 30.0
    priority: int = 100
    pk: int | None = None
    kind: str = Route.Kind.SMTP
    sender_domains: tuple[str, ...] = ()
    recipient_domains: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    weight: int = 1
    max_message_size: int | None = None
    max_per_second: int | None = None
    max_per_minute: int | None = None
    max_per_hour: int | None = None
    max_connections: int | None = None
    # An ESP route's ESP (anymail's name) and its options but the secrets, as
    # (name, value) pairs; the secrets stay sealed until ``esp_options()``.
    esp: str = ""
    esp_settings: tuple[tuple[str, object], ...] = field(default=(), repr=False)
    sealed_esp_secrets: str = field(default="", repr=False)
    # Sign with the From domain's active DKIM keys just before sending.
    dkim_sign: bool = False
    # A direct-to-MX route's TLS policy (Route.MXTLS), and the EHLO name ("":
    # the EHLO_HOSTNAME setting, or the machine's name).
    mx_tls: str = Route.MXTLS.OPPORTUNISTIC
    ehlo_hostname: str = ""

    @classmethod
    def from_route(cls, route: Route) -> RouteSpec:
        return cls(
            name=route.name,
            host=route.host,
            port=route.port,
            security=route.security,
            verify_certificate=route.verify_certificate,
            allow_plaintext_auth=route.allow_plaintext_auth,
            username=route.username,
            sealed_password=route.password_ciphertext,
            timeout=route.timeout,
            priority=route.priority,
            pk=route.pk,
            kind=route.kind,
            sender_domains=split_patterns(route.sender_domains),
            recipient_domains=split_patterns(route.recipient_domains),
            tags=split_patterns(route.tags),
            weight=route.weight,
            max_message_size=route.max_message_size,
            max_per_second=route.max_per_second,
            max_per_minute=route.max_per_minute,
            max_per_hour=route.max_per_hour,
            max_connections=route.max_connections,
            esp=route.esp,
            esp_settings=tuple(sorted((route.esp_settings or {}).items())),
            sealed_esp_secrets=route.esp_secrets_ciphertext,
            dkim_sign=route.dkim_sign,
            mx_tls=route.mx_tls,
            ehlo_hostname=route.ehlo_hostname,
        )

    @property
    def destination(self) -> str:
        """Where the password goes (see :mod:`django_smtprelay.sealing`)."""
        return sealing.destination(**{f: getattr(self, f) for f in Route.DESTINATION_FIELDS})

    @property
    def esp_endpoint(self) -> str:
        """Where an ESP route's requests go (its endpoint options), in words."""
        if self.kind != Route.Kind.ANYMAIL:
            return ""
        return esps.endpoint(self.esp, dict(self.esp_settings))

    def esp_options(self) -> dict[str, object]:
        """An ESP route's options with its secrets, opened now (like ``login_password``)."""
        import json

        secrets = sealing.unseal(self.sealed_esp_secrets, self.destination)
        return {**dict(self.esp_settings), **(json.loads(secrets) if secrets else {})}

    def login_password(self) -> str:
        """The password to log in with, opened now.

        Raises ``SecretDecryptionError`` or ``SecretDestinationError`` (a
        ``SMTPRelayError``) when the stored one cannot be used for this route.
        """
        if self.sealed_password:
            return sealing.unseal(self.sealed_password, self.destination)
        return self.password

    @classmethod
    def from_django_settings(cls) -> RouteSpec:
        """The site's EMAIL_* settings as a route, so installing the app changes only queueing.

        On Django 6.1+ with ``MAILERS``, the SMTP mailer named by
        ``SMTPRELAY["DEFAULT_ROUTE_MAILER"]`` plays that part.
        """
        alias = app_settings.default_route_mailer
        if alias:
            return cls._from_mailer(alias)
        if getattr(settings, "EMAIL_USE_SSL", False):
            security = Route.Security.TLS
        elif getattr(settings, "EMAIL_USE_TLS", False):
            security = Route.Security.STARTTLS
        else:
            security = Route.Security.NONE
        return cls(
            name=DJANGO_SETTINGS_ROUTE,
            host=settings.EMAIL_HOST,
            port=int(settings.EMAIL_PORT),
            security=security,
            username=settings.EMAIL_HOST_USER or "",
            password=settings.EMAIL_HOST_PASSWORD or "",
            timeout=float(settings.EMAIL_TIMEOUT or 30.0),
        )

    @classmethod
    def _from_mailer(cls, alias: str) -> RouteSpec:
        mailers = getattr(settings, "MAILERS", None) or {}
        if alias not in mailers:
            raise ImproperlyConfigured(
                f"SMTPRELAY['DEFAULT_ROUTE_MAILER'] is {alias!r}, but MAILERS has no such alias "
                f"(it has: {', '.join(sorted(mailers)) or 'none'})."
            )
        options = mailers[alias].get("OPTIONS", {})
        if options.get("use_ssl"):
            security = Route.Security.TLS
        elif options.get("use_tls"):
            security = Route.Security.STARTTLS
        else:
            security = Route.Security.NONE
        return cls(
            name=f"mailer-{alias}",
            host=options.get("host", "localhost"),
            port=int(options.get("port", 25)),
            security=security,
            username=options.get("username") or "",
            password=options.get("password") or "",
            timeout=float(options.get("timeout") or 30.0),
        )


class Router:
    """Loads the enabled routes once per batch and orders them for each message.

    A route takes a message when its sender rule matches the envelope or From
    domain, its recipient rule matches the recipient's domain, the message fits
    its size limit, and (for a route with tags) the message asked for it by
    name or tag. The order to try them in (priority, then weight and health,
    and how the recipients' destination group has been answering each route)
    is ``health.RouteHealthService.order``'s or ``order_for``'s.
    """

    def __init__(self, routes: list[RouteSpec] | None = None) -> None:
        if routes is None:
            routes = [RouteSpec.from_route(r) for r in Route.objects.filter(enabled=True)]
            if not routes and app_settings.use_django_email_settings:
                routes = [RouteSpec.from_django_settings()]
        self.routes = sorted(routes, key=lambda r: (r.priority, r.name))
        self.any_recipient_rules = any(r.recipient_domains for r in self.routes)

    def matching(
        self,
        route_hint: str = "",
        *,
        sender_domain: str = "",
        from_domain: str = "",
        recipient_domain: str = "",
        size: int = 0,
    ) -> list[RouteSpec]:
        """Routes that may take the message, by priority and name (not yet shuffled)."""
        hint = route_hint.lower()
        return [
            route
            for route in self.routes
            if not _mismatch(route, hint, sender_domain, from_domain, recipient_domain, size)
        ]

    def too_large_everywhere(self, size: int) -> bool:
        """True when routes exist but none takes a message of ``size`` bytes."""
        return bool(self.routes) and all(
            r.max_message_size and size > r.max_message_size for r in self.routes
        )

    def why_not(
        self,
        route_hint: str = "",
        *,
        sender_domain: str = "",
        from_domain: str = "",
        recipient_domain: str = "",
        size: int = 0,
    ) -> list[tuple[str, str]]:
        """Each route that does not take the message, enabled or not, and why.

        For a message that is deferred or failed with no route left, never on
        the delivery path: it reads the disabled routes from the database.
        The rules are :meth:`matching`'s, in words.
        """
        hint = route_hint.lower()
        reasons: list[tuple[str, str]] = []
        for route in self.routes:
            why = _mismatch(route, hint, sender_domain, from_domain, recipient_domain, size)
            if why:
                reasons.append((route.name, why))
        loaded = {r.name for r in self.routes}
        disabled = Route.objects.filter(enabled=False).order_by("priority", "name")
        for name in disabled.values_list("name", flat=True):
            if name not in loaded:
                reasons.append((name, "disabled"))
        return reasons


def _mismatch(
    route: RouteSpec,
    hint: str,
    sender_domain: str,
    from_domain: str,
    recipient_domain: str,
    size: int,
) -> str:
    """Why ``route`` does not take the message (the rules of ``Router.matching``), or ""."""
    if hint and hint != route.name.lower() and hint not in route.tags:
        return f"the message asks for route or tag {hint!r}"
    if not hint and route.tags:
        return "takes only messages that ask for its name or tags"
    if route.sender_domains and not (
        domain_matches(sender_domain, route.sender_domains)
        or (from_domain and domain_matches(from_domain, route.sender_domains))
    ):
        return "sender domains do not match"
    if recipient_domain and not domain_matches(recipient_domain, route.recipient_domains):
        return "recipient domains do not match"
    if route.max_message_size and size > route.max_message_size:
        return f"larger than its limit of {route.max_message_size} bytes"
    return ""
