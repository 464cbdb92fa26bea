"""A refusal after the final dot that concerns the message itself (500-504), end to end."""

from __future__ import annotations

import pytest
from django.core.mail import EmailMessage

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.models import DeliveryAttempt, Message, Recipient

pytestmark = pytest.mark.django_db

LINE_TOO_LONG = "500 5.5.2 Line too long"


def queue_one() -> Message:
    EmailMessage("Hello", "Body", "sender@example.com", ["rcpt@example.com"]).send()
    return Message.objects.latest("pk")


def test_refused_by_every_route_the_message_fails_with_the_reply(smtp_server, make_route):
    first = smtp_server(dot_reply=LINE_TOO_LONG)
    second = smtp_server(dot_reply=LINE_TOO_LONG)
    make_route(first, name="first", priority=1)
    make_route(second, name="second", priority=2)
    message = queue_one()
    DeliveryEngine().run()
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    rcpt = message.recipients.get()
    assert rcpt.status == Recipient.Status.FAILED
    assert "5.5.2 Line too long" in rcpt.reply and "500" in rcpt.reply
    assert "5.5.2 Line too long" in message.last_error
    attempts = message.attempts.order_by("pk")
    assert [a.route_name for a in attempts] == ["first", "second"]
    assert {a.outcome for a in attempts} == {DeliveryAttempt.Outcome.ROUTE_FAULT}
    assert (len(first.attempts), len(second.attempts)) == (1, 1)


def test_refused_by_one_route_the_message_goes_out_through_the_next(smtp_server, make_route):
    strict = smtp_server(dot_reply=LINE_TOO_LONG)
    lenient = smtp_server()
    make_route(strict, name="strict", priority=1)
    make_route(lenient, name="lenient", priority=2)
    message = queue_one()
    DeliveryEngine().run()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert len(lenient.messages) == 1
    fault = message.attempts.get(route_name="strict")
    assert fault.outcome == DeliveryAttempt.Outcome.ROUTE_FAULT
    assert (fault.smtp_code, fault.enhanced_code) == (500, "5.5.2")
