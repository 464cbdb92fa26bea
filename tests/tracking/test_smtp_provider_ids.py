"""An ESP's SMTP endpoint names the message's id in its 250 reply; its webhooks then match."""

from __future__ import annotations

import itertools

import pytest
from django.core.mail import EmailMessage

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.models import Message, Recipient, RecipientEvent
from django_smtprelay.transports.provider_ids import provider_id_from_reply
from tests.tracking import payloads
from tests.tracking.conftest import post

SES_ID = "0102018c7c2a1b2c-5b1d2f3e-8a4b-4c7d-9e0f-1a2b3c4d5e6f-000000"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (f"Ok {SES_ID}", SES_ID),  # Amazon SES
        ("Ok: queued as 8WBU5yLSRyKOxU1QUE8OIA", "8WBU5yLSRyKOxU1QUE8OIA"),  # SendGrid
        ("Ok: queued as 4Fx9Tm2Zk7z3Q", "4Fx9Tm2Zk7z3Q"),  # Postfix
        ("OK 23/4B-01234-5678ABCD", "23/4B-01234-5678ABCD"),
        ("Ok <20261130.abc@relay.example>", "20261130.abc@relay.example"),
        ("Message accepted id=a1b2c3d4e5", "a1b2c3d4e5"),
        ("Great success", ""),  # Mailgun: matched by the Message-ID instead
        ("Ok", ""),
        ("Ok thanks", ""),
        ("OK message accepted for delivery", ""),
        ("", ""),
    ],
)
def test_provider_id_from_a_250_reply(reply, expected):
    assert provider_id_from_reply(reply) == expected


def queue(to: list[str]) -> Message:
    EmailMessage("Receipt", "Body", "shop@example.com", to).send()
    return Message.objects.latest("pk")


@pytest.mark.django_db
def test_the_ses_id_in_the_reply_to_data_is_each_recipients_provider_id(smtp_server, make_route):
    numbers = itertools.count(1)
    server = smtp_server(dot_reply=lambda _m: f"250 Ok {SES_ID[:-2]}{next(numbers):02d}")
    make_route(server, esp="amazon_ses")
    first, second = queue(["ann@example.net", "bob@example.net"]), queue(["cy@example.net"])
    assert DeliveryEngine().run().sent == 2
    ids = dict(Recipient.objects.values_list("address", "provider_message_id"))
    assert ids == {
        "ann@example.net": SES_ID[:-2] + "01",
        "bob@example.net": SES_ID[:-2] + "01",
        "cy@example.net": SES_ID[:-2] + "02",
    }
    assert {first.pk, second.pk} == set(Message.objects.values_list("pk", flat=True))


@pytest.mark.django_db
def test_a_reply_without_an_id_leaves_none(smtp_server, make_route):
    server = smtp_server(dot_reply="250 2.0.0 Great success")
    make_route(server, esp="mailgun")
    queue(["ann@example.net"])
    DeliveryEngine().run()
    assert Recipient.objects.get().provider_message_id == ""


@pytest.mark.django_db
def test_a_refused_message_keeps_no_id(smtp_server, make_route):
    server = smtp_server(dot_reply="550 5.7.1 Rejected as spam, ref queued as ABC12345")
    make_route(server, esp="amazon_ses")
    queue(["ann@example.net"])
    DeliveryEngine().run()
    rcpt = Recipient.objects.get()
    assert rcpt.status == Recipient.Status.FAILED
    assert rcpt.provider_message_id == ""


@pytest.mark.django_db
def test_ses_bounce_webhook_finds_a_message_sent_over_ses_smtp(client, smtp_server, make_route):
    server = smtp_server(dot_reply=f"250 Ok {SES_ID}")
    route = make_route(server, esp="amazon_ses", name="ses-smtp")
    route.webhook_secret = "hooks:open-sesame-42"
    route.save()
    message = queue(["ann@example.net"])
    DeliveryEngine().run()
    assert message.recipients.get().status == Recipient.Status.DELIVERED
    response = post(client, route, payloads.ses_bounce(SES_ID, ["ann@example.net"]))
    assert response.status_code == 200
    assert message.recipients.get().status == Recipient.Status.FAILED
    assert RecipientEvent.objects.get().kind == "bounced"
