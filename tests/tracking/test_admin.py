"""The control room: webhook URLs on the route page, secrets write-only, events on the timeline."""

from __future__ import annotations

from typing import Any

import pytest

from django_smtprelay.models import Route
from tests.test_admin_route_password import form_of
from tests.tracking import payloads
from tests.tracking.conftest import BASIC, post

pytestmark = pytest.mark.django_db

PM_ID = "883953f4-6105-42a2-a16a-77a8eac79483"


def url(route: Route) -> str:
    return f"/admin/django_smtprelay/route/{route.pk}/change/"


def test_the_route_page_shows_the_exact_urls_for_the_esp_never_the_secret(admin_client, esp_route):
    route = esp_route("postmark", name="pm-main")
    page = admin_client.get(url(route)).content.decode()
    assert "http://USER:PASSWORD@testserver/smtprelay/webhooks/pm-main/tracking/" in page
    assert "http://USER:PASSWORD@testserver/smtprelay/webhooks/pm-main/inbound/" in page
    assert "Webhook URLs to give Postmark" in page
    assert "open-sesame" not in page and BASIC not in page


def test_a_signed_esp_without_basic_auth_gets_the_plain_url(admin_client, esp_route):
    route = esp_route("mailgun", name="mg", secret="", signing_key="key-123456")
    page = admin_client.get(url(route)).content.decode()
    assert "http://testserver/smtprelay/webhooks/mg/tracking/" in page
    assert "key-123456" not in page


def test_a_route_without_credentials_says_posts_are_refused(admin_client, esp_route):
    route = esp_route("sendgrid", secret="")
    page = admin_client.get(url(route)).content.decode()
    assert "no webhook credentials are stored: every post is refused" in page


def hook_form(route: Route, **changes: Any) -> dict[str, Any]:
    data = form_of(route, **changes)
    data.setdefault("esp", route.esp)
    return data


def test_webhook_credentials_typed_in_the_admin_are_sealed_and_used(
    admin_client, client, esp_route, accepted
):
    route = esp_route("postmark", secret="")
    response = admin_client.post(url(route), hook_form(route, webhook_secret="esp:typed-in-admin"))
    assert response.status_code == 302
    route.refresh_from_db()
    assert route.webhook_secret == "esp:typed-in-admin"
    assert "typed-in-admin" not in route.webhook_secret_ciphertext
    accepted(route, ["ann@example.net"], provider_id=PM_ID)
    payload = payloads.postmark_delivery(PM_ID, "ann@example.net")
    assert post(client, route, payload, credentials="esp:typed-in-admin").status_code == 200
    page = admin_client.get(url(route)).content.decode()
    assert "typed-in-admin" not in page


def test_credentials_must_be_user_and_password(admin_client, esp_route):
    route = esp_route("postmark")
    response = admin_client.post(url(route), hook_form(route, webhook_secret="no-colon"))
    assert response.status_code == 200
    assert "user:password" in " ".join(response.context["adminform"].form.errors["webhook_secret"])


def test_renaming_the_route_asks_for_the_webhook_credentials_again(admin_client, esp_route):
    route = esp_route("postmark", name="pm-old")
    response = admin_client.post(url(route), hook_form(route, name="pm-new"))
    assert response.status_code == 200
    assert "The webhook changed" in " ".join(
        response.context["adminform"].form.errors["webhook_secret"]
    )
    response = admin_client.post(
        url(route), hook_form(route, name="pm-new", webhook_secret="hooks:retyped-1")
    )
    assert response.status_code == 302
    route.refresh_from_db()
    assert (route.name, route.webhook_secret) == ("pm-new", "hooks:retyped-1")


def test_other_changes_keep_the_webhook_credentials(admin_client, esp_route):
    route = esp_route("postmark")
    response = admin_client.post(url(route), hook_form(route, priority=3))
    assert response.status_code == 302
    route.refresh_from_db()
    assert route.webhook_secret == BASIC


def test_events_are_on_the_message_timeline_and_the_recipient_page(
    admin_client, client, esp_route, accepted
):
    route = esp_route("postmark")
    message = accepted(route, ["ann@example.net"], provider_id=PM_ID)
    post(client, route, payloads.postmark_delivery(PM_ID, "ann@example.net"))
    post(client, route, payloads.postmark_bounce(PM_ID, "ann@example.net"))
    page = admin_client.get(
        f"/admin/django_smtprelay/message/{message.pk}/change/"
    ).content.decode()
    assert "smtprelay-event-provider" in page
    assert "ann@example.net: Delivered to the mailbox" in page
    assert "ann@example.net: Bounced (hard)" in page
    assert "550 5.1.1 The email account" in page
    rcpt = message.recipients.get()
    page = admin_client.get(f"/admin/django_smtprelay/recipient/{rcpt.pk}/change/").content.decode()
    assert "events after the relay said yes" in page.lower()
    assert "Bounced" in page and PM_ID in page
    listing = admin_client.get("/admin/django_smtprelay/recipientevent/").content.decode()
    assert "ann@example.net" in listing
