"""A per-message expiry: a message past its deliver_by is never sent, and fails as expired."""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.core.mail import EmailMessage
from django.utils import timezone

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.exceptions import InvalidMessageError
from django_smtprelay.models import Message, Recipient

pytestmark = pytest.mark.django_db


def send(to=("rcpt@example.com",), headers=None, **attrs) -> Message:
    email = EmailMessage("Your code", "123456", "sender@example.com", list(to), headers=headers)
    for key, value in attrs.items():
        setattr(email, f"smtprelay_{key}", value)
    email.send()
    return Message.objects.latest("pk")


def test_an_expired_message_is_not_sent_and_fails_as_expired(smtp_server, make_route):
    server = smtp_server()
    make_route(server)
    by = timezone.now() + timedelta(minutes=10)
    message = send(to=["a@example.com", "b@example.com"], expires_at=by)
    assert message.deliver_by == by
    later = by + timedelta(seconds=1)
    report = DeliveryEngine(clock=lambda: later).run()
    assert server.messages == [], "an expired message never reaches a relay"
    assert report.failed == 1 and report.attempts == 0
    message.refresh_from_db()
    reason = f"expired: not delivered by {by.isoformat(timespec='seconds')}"
    assert message.status == Message.Status.FAILED
    assert message.last_error == reason
    assert message.lease_token is None
    assert message.attempt_count == 0, "no attempt was made, none is counted"
    assert list(message.recipients.values_list("status", "reply")) == [
        (Recipient.Status.FAILED, reason),
        (Recipient.Status.FAILED, reason),
    ]


def test_a_deferred_message_that_expires_fails_at_its_next_try(smtp_server, make_route):
    server = smtp_server(rcpt_replies={"rcpt@example.com": "451 4.7.1 try later"})
    make_route(server)
    message = send(expires_in=timedelta(minutes=10))
    assert DeliveryEngine().run().deferred == 1
    server.options.rcpt_replies.clear()
    message.refresh_from_db()
    later = message.deliver_by + timedelta(minutes=1)
    DeliveryEngine(clock=lambda: later).run()
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.last_error.startswith("expired: not delivered by ")
    assert message.attempts.count() == 1, "only the first, deferred, try"
    assert server.messages == []


def test_a_message_not_yet_expired_is_sent(smtp_server, make_route):
    server = smtp_server()
    make_route(server)
    message = send(expires_in=timedelta(minutes=10))
    assert DeliveryEngine().run().sent == 1
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert len(server.messages) == 1


def test_the_expiry_header_in_any_letter_case_is_used_and_stripped(smtp_server, make_route):
    server = smtp_server()
    make_route(server)
    message = send(headers={"x-smtprelay-EXPIRES-at": "2099-01-31T09:00:00+01:00"})
    assert message.deliver_by == datetime(2099, 1, 31, 8, 0, tzinfo=dt_timezone.utc)
    assert b"expires-at" not in message.raw.lower()
    DeliveryEngine().run()
    assert len(server.messages) == 1
    assert b"expires-at" not in server.messages[0].data.lower()


@pytest.mark.parametrize(
    ("attrs", "match"),
    [
        ({"expires_at": "2030-01-01 09:00"}, "expires_at '2030-01-01 09:00'.*with an offset"),
        ({"expires_at": "tomorrow"}, "expires_at 'tomorrow'"),
        ({"expires_at": datetime(2030, 1, 1)}, "timezone-aware"),
        ({"expires_in": 600}, "expires_in 600: use a positive datetime.timedelta"),
        ({"expires_in": timedelta(0)}, "expires_in .*positive"),
        (
            {"expires_in": timedelta(minutes=5), "expires_at": timezone.now()},
            "sets both expires_at .* and expires_in",
        ),
        ({"headers": {"X-SMTPRelay-Expires-At": "soon"}}, "expires_at 'soon'"),
    ],
)
def test_a_bad_expiry_is_refused_naming_the_value(attrs, match):
    with pytest.raises(InvalidMessageError, match=match):
        send(**attrs)
    assert not Message.objects.exists(), "nothing of a refused message is stored"


def test_without_an_expiry_nothing_changes():
    assert send().deliver_by is None
