"""The app's views outside the admin (see :mod:`django_smtprelay.urls`)."""

from __future__ import annotations

import hashlib
import hmac

from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .conf import app_settings

INSTALL_HINT = 'pip install "django-smtprelay[metrics]"'


def _refuse(status: int, text: str, *, challenge: str = "") -> HttpResponse:
    response = HttpResponse(text + "\n", status=status, content_type="text/plain; charset=utf-8")
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="smtprelay metrics"' + challenge
    return response


def _same(given: str, token: str) -> bool:
    # Digests first: compare_digest takes the same time for equal lengths
    # only, and the token's length is not to be learnt either.
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(token.encode()).digest()
    )


def _refusal(request: HttpRequest) -> HttpResponse | None:
    """Why ``request`` may not read the metrics, or None if it may.

    A bearer token equal to ``SMTPRELAY["METRICS_TOKEN"]`` or a logged-in,
    active staff user may. Nothing here logs or repeats the token.
    """
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        token = app_settings.metrics_token
        if token is None:
            return _refuse(
                401,
                "A bearer token was sent, but SMTPRELAY['METRICS_TOKEN'] is not set: "
                "set it, or log in as a staff user.",
                challenge=', error="invalid_token"',
            )
        if _same(given.strip(), token):
            return None
        return _refuse(
            401,
            "The bearer token does not match SMTPRELAY['METRICS_TOKEN'].",
            challenge=', error="invalid_token"',
        )
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        if user.is_active and user.is_staff:
            return None
        return _refuse(403, "The metrics are for staff users: this user is not staff.")
    return _refuse(
        401,
        "Send the metrics token as 'Authorization: Bearer <SMTPRELAY METRICS_TOKEN>', "
        "or log in as a staff user.",
    )


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """The metrics in the Prometheus text format (OpenMetrics when asked)."""
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    try:
        from .metrics import exposition
    except ImportError as exc:
        if exc.name != "prometheus_client" and not (exc.name or "").startswith(
            "prometheus_client."
        ):
            raise
        return _refuse(
            503, f"The metrics need prometheus_client, which is not installed: {INSTALL_HINT}"
        )
    body, content_type = exposition(request.headers.get("Accept"))
    return HttpResponse(body, content_type=content_type)
