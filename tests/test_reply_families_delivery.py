"""The reply families through the engine, against real SMTP servers on loopback.

A refused sending host moves the message to the next route and fails the
recipient only when none is left; an ESP refusing the route's account never
fails a recipient; a rate limit sent as 5xx throttles the route and defers.
"""

from __future__ import annotations

import pytest
from django.core.mail import EmailMessage
from django.utils import timezone

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.models import Message, Recipient, RouteHealth

pytestmark = pytest.mark.django_db

HOST_REFUSED = "554 5.7.1 <unknown[203.0.113.5]>: Client host rejected: Access denied"
ACCOUNT_REFUSED = (
    "554 Access denied: User arn:aws:iam::123456789012:user/ses-smtp-user is not authorized "
    "to perform `ses:SendRawEmail' on resource "
    "`arn:aws:ses:us-east-1:123456789012:identity/example.com'"
)
RATE_LIMITED = "550 Connection frequency limited. http://service.mail.qq.com/cgi-bin/help"


def queue_one(subject: str = "Hello") -> Message:
    EmailMessage(subject, "Body", "sender@example.com", ["rcpt@example.com"]).send()
    return Message.objects.latest("pk")


def test_a_refused_sending_host_goes_to_the_next_route(smtp_server, make_route):
    refusing = smtp_server(rcpt_replies={"rcpt@example.com": HOST_REFUSED})
    make_route(refusing, priority=1)
    other = smtp_server()
    make_route(other, priority=2)
    message = queue_one()
    DeliveryEngine().run()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert len(other.messages) == 1 and refusing.messages == []


def test_a_refused_sending_host_fails_the_recipient_when_no_route_is_left(smtp_server, make_route):
    make_route(smtp_server(rcpt_replies={"rcpt@example.com": HOST_REFUSED}))
    message = queue_one()
    DeliveryEngine().run()
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert "Client host rejected" in message.recipients.get().reply


def test_an_esp_refusing_the_account_defers_with_the_reason_and_never_fails(
    smtp_server, make_route
):
    make_route(smtp_server(dot_reply=ACCOUNT_REFUSED))
    message = queue_one()
    DeliveryEngine().run()
    message.refresh_from_db()
    recipient = message.recipients.get()
    assert message.status == Message.Status.DEFERRED
    assert recipient.status == Recipient.Status.DEFERRED
    # The reason is kept where the admin shows it.
    assert "not authorized to perform" in message.last_error
    assert "may not send" in message.last_error


def test_a_5xx_rate_limit_throttles_the_route_and_defers_the_recipient(smtp_server, make_route):
    server = smtp_server(mail_reply=RATE_LIMITED, mail_reply_times=1)
    route = make_route(server)
    first = queue_one("first")
    now = timezone.now()
    DeliveryEngine(clock=lambda: now).run()
    first.refresh_from_db()
    assert first.status == Message.Status.DEFERRED
    assert first.recipients.get().status == Recipient.Status.DEFERRED
    health = RouteHealth.objects.get(route_name=route.name)
    assert health.throttled_until is not None and health.throttled_until > now
    assert "limits how fast this route may send" in health.throttle_reason
    # Retried later within the lifetime: the relay takes it then.
    later = first.next_attempt_at + (first.next_attempt_at - now)
    DeliveryEngine(clock=lambda: later).run()
    first.refresh_from_db()
    assert first.status == Message.Status.SENT
    assert len(server.messages) == 1
