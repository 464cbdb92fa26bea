"""Events through a site's own anymail webhook URLs reach the recipients too, by ESP name."""

from __future__ import annotations

import base64
import json

import pytest
from anymail.webhooks.postmark import PostmarkTrackingWebhookView
from django.test import RequestFactory

from django_smtprelay.models import Recipient, RecipientEvent
from django_smtprelay.tracking import esp_metadata, parse_smtprelay_id, smtprelay_id
from tests.tracking import payloads

pytestmark = pytest.mark.django_db

PM_ID = "5a0c7f29-8d51-4b0e-9c3a-2f6e1d7b8a90"


def test_a_bounce_through_anymails_own_view_fails_the_recipient(esp_route, accepted):
    route = esp_route("postmark")
    message = accepted(route, ["ann@example.net"], provider_id=PM_ID)
    body, content_type, _headers = payloads.postmark_bounce(PM_ID, "ann@example.net")
    request = RequestFactory().post(
        "/anymail/postmark/tracking/",
        body,
        content_type=content_type,
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"site:wide-secret").decode(),
    )
    view = PostmarkTrackingWebhookView(webhook_secret=["site:wide-secret"])
    view.setup(request)
    assert view.dispatch(request).status_code == 200
    assert message.recipients.get().status == Recipient.Status.FAILED
    assert RecipientEvent.objects.get().esp == "postmark"


def test_our_ids_round_trip():
    assert parse_smtprelay_id(smtprelay_id(12)) == (12, None)
    assert parse_smtprelay_id(smtprelay_id(12, 345)) == (12, 345)
    assert parse_smtprelay_id("<smtprelay-7.8>") == (7, 8)
    for junk in ("", "smtprelay-", "smtprelay-x.1", "other-1", None, 5, "smtprelay-1.2.3"):
        assert parse_smtprelay_id(junk) is None
    metadata, merge = esp_metadata(9, [(1, "a@x.example"), (2, "b@x.example")])
    assert metadata == {"smtprelay_id": "smtprelay-9"}
    assert merge == {
        "a@x.example": {"smtprelay_id": "smtprelay-9.1"},
        "b@x.example": {"smtprelay_id": "smtprelay-9.2"},
    }


def test_the_smtp_headers_bring_our_id_back_in_an_ses_event(client, esp_route, accepted):
    """SES event publishing returns the message's headers; anymail reads X-Metadata from them."""
    from django_smtprelay.tracking import smtp_tracking_headers
    from tests.tracking.conftest import post

    route = esp_route("amazon_ses")
    message = accepted(route, ["ann@example.net"])  # no provider id kept
    headers = smtp_tracking_headers("amazon_ses", message.pk)
    assert headers["X-SMTPRelay-ID"] == f"smtprelay-{message.pk}"
    body, content_type, sns_headers = payloads.ses_bounce("ses-id-unknown", ["ann@example.net"])
    envelope = json.loads(body)
    ses_event = json.loads(envelope["Message"])
    ses_event["mail"]["headers"] += [{"name": k, "value": v} for k, v in headers.items()]
    envelope["Message"] = json.dumps(ses_event)
    response = post(client, route, (json.dumps(envelope).encode(), content_type, sns_headers))
    assert response.status_code == 200
    assert message.recipients.get().status == Recipient.Status.FAILED
