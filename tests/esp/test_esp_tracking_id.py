"""An ESP route sends our own id as anymail metadata, and the ESP's events find
the recipient by it (even with no ESP message id to match)."""

from __future__ import annotations

import pytest
from django.core.mail import EmailMessage

from django_smtprelay import esps
from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.models import Message, Recipient
from django_smtprelay.transports.esp import _takes_metadata
from tests.tracking import payloads
from tests.tracking.conftest import BASIC, post

pytestmark = pytest.mark.django_db


def _send(server, make_esp_route, to):
    route = make_esp_route(server)
    route.webhook_secret = BASIC
    route.save()
    EmailMessage("Receipt", "Body", "shop@example.com", to).send()
    assert DeliveryEngine().run().sent == 1
    return route, Message.objects.latest("pk")


def test_one_recipient_is_named_by_its_own_id(esp_server, make_esp_route):
    server = esp_server("postmark")
    _route, message = _send(server, make_esp_route, ["ann@example.net"])
    rcpt = message.recipients.get()
    sent = server.requests[-1].json()
    assert sent["Metadata"] == {"smtprelay_id": f"smtprelay-{message.pk}.{rcpt.pk}"}


def test_several_recipients_share_the_message_id(esp_server, make_esp_route):
    """Per-recipient metadata (merge_metadata) would make anymail send each To
    recipient a message of their own: the route sends the message as it is."""
    server = esp_server("postmark")
    _route, message = _send(server, make_esp_route, ["ann@example.net", "bob@example.net"])
    sent = server.requests[-1].json()
    assert sent["Metadata"] == {"smtprelay_id": f"smtprelay-{message.pk}"}
    assert sent["To"] == "ann@example.net, bob@example.net"


@pytest.mark.parametrize("to", [["ann@example.net"], ["ann@example.net", "bob@example.net"]])
def test_an_event_with_our_id_and_no_known_esp_id_finds_the_recipient(
    client, esp_server, make_esp_route, to
):
    server = esp_server("postmark")
    route, message = _send(server, make_esp_route, to)
    metadata = server.requests[-1].json()["Metadata"]
    event = payloads.postmark_bounce("not-an-id-we-kept", "ann@example.net", Metadata=metadata)
    assert post(client, route, event).status_code == 200
    assert message.recipients.get(address="ann@example.net").status == Recipient.Status.FAILED
    if len(to) > 1:
        bob = message.recipients.get(address="bob@example.net")
        assert bob.status == Recipient.Status.DELIVERED


def test_the_esp_id_still_matches_without_our_id(client, esp_server, make_esp_route):
    server = esp_server("postmark")
    route, message = _send(server, make_esp_route, ["ann@example.net"])
    rcpt = message.recipients.get()
    assert rcpt.provider_message_id
    event = payloads.postmark_bounce(rcpt.provider_message_id, "ann@example.net")
    assert post(client, route, event).status_code == 200
    rcpt.refresh_from_db()
    assert rcpt.status == Recipient.Status.FAILED


@pytest.mark.parametrize(
    ("esp", "takes"),
    [("postmark", True), ("mailgun", True), ("sendgrid", True), ("postal", False)],
)
def test_only_esps_that_take_metadata_are_given_it(esp, takes):
    """anymail refuses metadata for an ESP without it (an unsupported feature):
    such a route sends the message without our id rather than not at all."""
    assert _takes_metadata(esps.get(esp).backend_class()) is takes
