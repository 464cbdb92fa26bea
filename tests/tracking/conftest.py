"""Routes with ESP webhooks, and messages their ESP accepted."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.test import Client
from django.utils import timezone

from django_smtprelay.models import Message, Recipient, Route

BASIC = "hooks:open-sesame-42"


@pytest.fixture
def esp_route(db: None) -> Callable[..., Route]:
    """``esp_route(esp, name=..., secret=..., signing_key=...)``: a route whose ESP posts events."""

    def make(
        esp: str, *, name: str | None = None, secret: str = BASIC, signing_key: str = ""
    ) -> Route:
        route = Route(
            name=name or f"{esp.replace('_', '-')}-route", host="smtp.esp.example", esp=esp
        )
        route.webhook_secret = secret
        route.webhook_signing_key = signing_key
        route.save()
        return route

    return make


@pytest.fixture
def accepted(db: None) -> Callable[..., Message]:
    """``accepted(route, ["a@x"], provider_id=...)``: a message the route's ESP accepted."""

    def make(route: Route, to: list[str], provider_id: str = "", **kwargs: Any) -> Message:
        EmailMessage("Your receipt", "Body", "shop@example.com", to, **kwargs).send()
        message = Message.objects.latest("pk")
        now = timezone.now()
        Message.objects.filter(pk=message.pk).update(status=Message.Status.SENT, sent_at=now)
        Recipient.objects.filter(message=message).update(
            status=Recipient.Status.DELIVERED,
            route=route,
            provider_message_id=provider_id,
            updated_at=now,
        )
        message.refresh_from_db()
        return message

    return make


def auth(credentials: str = BASIC) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(credentials.encode()).decode()}


def post(
    client: Client,
    route: Route,
    payload: tuple[bytes, str, dict[str, str]],
    *,
    which: str = "tracking",
    credentials: str | None = BASIC,
) -> Any:
    body, content_type, headers = payload
    extra = dict(headers)
    if credentials is not None:
        extra.update(auth(credentials))
    return client.post(
        f"/smtprelay/webhooks/{route.name}/{which}/", body, content_type=content_type, **extra
    )
