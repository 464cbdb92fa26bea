"""Each route's webhook URLs, served by anymail's own view for the route's ESP.

The route's credentials (its basic-auth ``user:password``, the ESP's signing
key) are handed to anymail's view per request, so every route has its own
secret; a route without one refuses every post rather than accept them open.
A refused post is logged with the route and the reason, never the secret,
and answered 401 with a Basic challenge (Amazon SNS, among others, sends
credentials only after one).

A tracking post's events are applied by :mod:`.group` with the events of the
posts arriving at the same time, in one transaction; each post is answered
200 only once that transaction has committed, and 500 if its own events
could not be applied (the ESP posts it again; the others still commit).
Both views stay outside ``ATOMIC_REQUESTS``: a request's own transaction
would hold the group's, committing it only after every post had its answer.
"""

from __future__ import annotations

import logging
from typing import Any

from anymail.exceptions import AnymailWebhookValidationFailure
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from ..exceptions import SMTPRelayError
from . import group, store
from .context import current_route, pending_work
from .esps import ESP, ESPS

logger = logging.getLogger("django_smtprelay.tracking")


@transaction.non_atomic_requests
@csrf_exempt
def tracking_webhook(request: HttpRequest, route: str) -> HttpResponse:
    """An ESP's tracking events (delivered, bounced, complained, ...) for ``route``."""
    return _serve(request, route, "tracking")


@transaction.non_atomic_requests
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
    if which == "tracking":
        return _tracking(request, route, view)
    token = current_route.set(route)
    try:
        # One transaction per inbound post: a returned bounce applies whole or
        # not at all; the ESP posts it again.
        with transaction.atomic():
            return view.dispatch(request)
    except AnymailWebhookValidationFailure as exc:
        return _refuse(request, route, which, str(exc))
    finally:
        current_route.reset(token)


def _tracking(request: HttpRequest, route: store.WebhookRoute, view: Any) -> HttpResponse:
    """anymail's view collects the post's events; the group committer applies them
    with the posts arriving together, and the post hears 200 once they are committed."""
    work: list[Any] = []
    with group.committer.arrival() as arrival:
        token, work_token = current_route.set(route), pending_work.set(work)
        try:
            response = view.dispatch(request)
        except AnymailWebhookValidationFailure as exc:
            return _refuse(request, route, "tracking", str(exc))
        finally:
            pending_work.reset(work_token)
            current_route.reset(token)
        if not 200 <= response.status_code < 300:
            return response
        try:
            group.committer.commit(work, arrival)
        except Exception as exc:
            logger.warning(
                "Could not record the %d event(s) of a webhook post to route %s (%s): %s",
                len(work),
                route.name,
                route.esp,
                exc,
            )
            return HttpResponse("The events could not be recorded; post them again.", status=500)
    return response


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
