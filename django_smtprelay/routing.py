"""Which routes may carry a message, in failover order."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .conf import app_settings
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
    password: str = field(default="", repr=False)
    timeout: float = 30.0
    priority: int = 100
    pk: int | None = None
    kind: str = Route.Kind.SMTP

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
            password=route.password,
            timeout=route.timeout,
            priority=route.priority,
            pk=route.pk,
            kind=route.kind,
        )

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
    """Loads the enabled routes once per batch and orders them for each message."""

    def __init__(self, routes: list[RouteSpec] | None = None) -> None:
        if routes is None:
            routes = [RouteSpec.from_route(r) for r in Route.objects.filter(enabled=True)]
            if not routes and app_settings.use_django_email_settings:
                routes = [RouteSpec.from_django_settings()]
        self.routes = sorted(routes, key=lambda r: (r.priority, r.name))

    def candidates(self, route_hint: str = "") -> list[RouteSpec]:
        """Routes for one message, in the order to try them."""
        if route_hint:
            return [r for r in self.routes if r.name == route_hint]
        return list(self.routes)
