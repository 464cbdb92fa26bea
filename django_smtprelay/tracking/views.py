"""Each route's webhook URLs, served by anymail's own view for the route's ESP.

The route's credentials (its basic-auth ``user:password``, the ESP's signing
key) are handed to anymail's view per request, so every route has its own
secret; a route without one refuses every post rather than accept them open.
A refused post is logged with the route and the reason, never the secret,
and answered 401 with a Basic challenge (Amazon SNS, among others, sends
credentials only after one).
"""

from __future__ import annotations

import logging
from typing import Any

from anymail.exceptions import AnymailWebhookValidationFailure
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from ..exceptions import SMTPRelayError
from . import store
from .context import current_route
from .esps import ESP, ESPS

logger = logging.getLogger("django_smtprelay.tracking")


@csrf_exempt
def tracking_webhook(request: HttpRequest, route: str) -> HttpResponse:
    """An ESP's tracking events (delivered, bounced, complained, ...) for ``route``."""
    return _serve(request, route, "tracking")


@csrf_exempt
def inbound_webhook(request: HttpRequest, route: str) -> HttpResponse:
    """Mail an ESP received for ``route``'s domain: returned bounces (DSNs) are applied."""
    return _serve(request, route, "inbound")


def _serve(request: HttpRequest, name: str, which: str) -> HttpResponse:
    route = store.webhook_route(name)
    esp = ESPS.get(route.esp) if route is not None else None
    if route is None or esp is None or (which == "inbound" and not esp.inbound):
        raise Http404("No such webhook.")
    if request.method not in ("POST", "HEAD", "OPTIONS"):
        return HttpResponse(status=405, headers={"Allow": "POST, HEAD, OPTIONS"})
    try:
        kwargs = _credentials(route, esp, which)
    except SMTPRelayError as exc:
        return _refuse(request, route, which, f"the route's webhook secret cannot be used: {exc}")
    if kwargs is None:
        return _refuse(request, route, which, "the route has no webhook secret set")
    view = esp.view_class(which)(**kwargs)
    view.setup(request)
    token = current_route.set(route)
    try:
        # One transaction per post: a batch of events (SendGrid posts up to
        # a thousand) costs one commit, and a post that fails half-way leaves
        # nothing behind; the ESP posts it again, and each event applies once.
        with transaction.atomic():
            return view.dispatch(request)
    except AnymailWebhookValidationFailure as exc:
        return _refuse(request, route, which, str(exc))
    finally:
        current_route.reset(token)


def _credentials(route: store.WebhookRoute, esp: ESP, which: str) -> dict[str, Any] | None:
    """anymail's view keywords for the route's own secrets (None: the route has none)."""
    basic = route.webhook_secret
    signing = route.webhook_signing_key
    signing_kwarg = esp.signing_kwarg if which == "tracking" else esp.inbound_signing_kwarg
    # Every keyword given explicitly: none may fall back to the site's ANYMAIL settings.
    kwargs: dict[str, Any] = {"webhook_secret": [basic] if basic else []}
    if signing_kwarg:
        if not signing:
            return None
        kwargs[signing_kwarg] = signing
    elif not basic:
        return None
    return kwargs


def _refuse(
    request: HttpRequest, route: store.WebhookRoute, which: str, reason: str
) -> HttpResponse:
    logger.warning(
        "Refused a %s webhook post to route %s (%s) from %s: %s",
        which,
        route.name,
        route.esp,
        request.META.get("REMOTE_ADDR", "?"),
        reason,
    )
    return HttpResponse(
        "Unauthorized", status=401, headers={"WWW-Authenticate": 'Basic realm="smtprelay webhooks"'}
    )
