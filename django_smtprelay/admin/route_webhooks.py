"""The webhook URLs a route's ESP is given, as the route's admin page shows them."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _

from ..exceptions import SMTPRelayError
from ..models import Route
from ..tracking.apply import unmatched_count
from ..tracking.esps import ESPS

#: Shown in place of the route's credentials, which are never shown back.
PLACEHOLDER = "USER:PASSWORD@"


@dataclass
class WebhookURL:
    which: str  # tracking | inbound
    url: str


@dataclass
class WebhookPanel:
    esp: str
    setup: str
    urls: list[WebhookURL]
    has_secret: bool
    has_signing_key: bool
    needs_signing_key: bool
    problem: str  # why posts are refused now, if they are
    unmatched: int


def webhook_urls(request: HttpRequest, route: Route, *, with_auth: bool = True) -> list[WebhookURL]:
    """The absolute URLs for ``route``'s ESP; with the basic-auth placeholder when it is used."""
    esp = ESPS.get(route.esp)
    if esp is None:
        return []
    urls = []
    for which in ("tracking", "inbound") if esp.inbound else ("tracking",):
        try:
            path = reverse(f"django_smtprelay:{which}_webhook", kwargs={"route": route.name})
        except NoReverseMatch:  # the site did not include django_smtprelay.urls
            return []
        url = request.build_absolute_uri(path)
        if with_auth:
            scheme, _, rest = url.partition("://")
            url = f"{scheme}://{PLACEHOLDER}{rest}"
        urls.append(WebhookURL(which, url))
    return urls


def webhook_panel(request: HttpRequest, route: Route) -> WebhookPanel | None:
    esp = ESPS.get(route.esp)
    if esp is None:
        return None
    problem = ""
    try:
        has_secret = bool(route.webhook_secret)
        has_key = bool(route.webhook_signing_key)
    except SMTPRelayError as exc:
        has_secret = has_key = False
        problem = str(exc)
    needs_key = bool(esp.signing_kwarg)
    if not problem and esp.key == "amazon_ses" and importlib.util.find_spec("boto3") is None:
        problem = _(
            'anymail\'s Amazon SES webhooks need boto3: pip install "django-anymail[amazon-ses]"'
        )
    if not problem:
        if needs_key and not has_key:
            problem = _("no signing key is stored: every post is refused")
        elif not needs_key and not has_secret:
            problem = _("no webhook credentials are stored: every post is refused")
    return WebhookPanel(
        esp=esp.label,
        setup=esp.setup,
        urls=webhook_urls(request, route, with_auth=has_secret or not needs_key),
        has_secret=has_secret,
        has_signing_key=has_key,
        needs_signing_key=needs_key,
        problem=problem,
        unmatched=unmatched_count(route.pk),
    )
