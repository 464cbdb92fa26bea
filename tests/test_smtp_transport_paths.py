"""SMTP transport paths that only a misconfigured or unusual relay takes, against real servers."""

from __future__ import annotations

import pytest
from django.core.mail import EmailMessage

from django_smtprelay.backends import queue
from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.envelope import PreparedMessage
from django_smtprelay.models import DeliveryAttempt, Message, Recipient

pytestmark = pytest.mark.django_db


def queue_one(to: str = "rcpt@example.com", subject: str = "Hello") -> Message:
    EmailMessage(subject, "Body", "sender@example.com", [to]).send()
    return Message.objects.latest("pk")


def queue_to(address: str) -> Message:
    """A message for an address the backend's validator refuses (as the listener may take)."""
    prepared = PreparedMessage(
        from_email="sender@example.com",
        recipients=[address],
        data=b"From: sender@example.com\r\nSubject: utf8\r\n\r\nBody\r\n",
        subject="utf8",
        message_id="<utf8@example.com>",
        route_hint="",
        priority="",
    )
    (pk,) = queue([(prepared, Message.Priority.NORMAL)])
    return Message.objects.get(pk=pk)


def only_attempt(message: Message) -> DeliveryAttempt:
    message.refresh_from_db()
    return message.attempts.get()


def test_a_relay_without_starttls_is_a_route_fault_when_the_route_requires_it(
    smtp_server, make_route
):
    server = smtp_server()
    make_route(server, security="starttls")
    message = queue_one()
    DeliveryEngine().run()
    attempt = only_attempt(message)
    assert message.status == Message.Status.DEFERRED
    assert (attempt.outcome, attempt.stage) == ("route_fault", "starttls")
    assert "does not offer STARTTLS" in attempt.reply
    assert server.transactions == 0


def test_starttls_refused_is_a_route_fault_with_the_reply(smtp_server, make_route, trust_test_ca):
    server = smtp_server(tls="starttls", starttls_reply="454 4.7.0 TLS not available")
    make_route(server, security="starttls")
    message = queue_one()
    DeliveryEngine().run()
    attempt = only_attempt(message)
    assert message.status == Message.Status.DEFERRED
    assert (attempt.outcome, attempt.stage, attempt.smtp_code) == ("route_fault", "starttls", 454)
    assert "TLS not available" in attempt.reply
    assert server.transactions == 0


def test_ehlo_refused_after_starttls_is_a_route_fault(smtp_server, make_route, trust_test_ca):
    server = smtp_server(tls="starttls", ehlo_reply_tls="554 5.7.1 No service for you")
    make_route(server, security="starttls")
    message = queue_one()
    DeliveryEngine().run()
    attempt = only_attempt(message)
    assert (attempt.outcome, attempt.stage, attempt.smtp_code) == ("route_fault", "ehlo", 554)
    assert server.transactions == 0 and server.sessions == 1


def test_auth_without_a_shared_mechanism_is_a_route_fault(smtp_server, make_route):
    server = smtp_server(ehlo_reply="250-localhost\n250-AUTH XOAUTH2 GSSAPI\n250 8BITMIME")
    make_route(server, username="relayuser", password="s3cret-Pa55", allow_plaintext_auth=True)
    message = queue_one()
    DeliveryEngine().run()
    attempt = only_attempt(message)
    assert message.status == Message.Status.DEFERRED
    assert (attempt.outcome, attempt.stage) == ("route_fault", "auth")
    assert "no AUTH mechanism in common" in attempt.reply
    assert "s3cret" not in attempt.reply
    assert server.transactions == 0


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-by-one"])
def test_data_refused_defers_and_the_session_goes_on(smtp_server, make_route, pipelining):
    server = smtp_server(
        data_reply="451 4.3.0 Queue full, try DATA later",
        data_reply_times=1,
        disable_extensions=() if pipelining else {"PIPELINING"},
    )
    make_route(server)
    first, second = queue_one(subject="first"), queue_one(subject="second")
    DeliveryEngine().run()
    attempt = only_attempt(first)
    assert first.status == Message.Status.DEFERRED
    assert (attempt.outcome, attempt.stage, attempt.smtp_code) == ("transient", "data", 451)
    second.refresh_from_db()
    assert second.status == Message.Status.SENT
    assert server.sessions == 1 and len(server.messages) == 1


@pytest.mark.parametrize(
    "options",
    [{"rset_reply": "421 4.3.2 Shutting down"}, {"drop_on_rset": True}],
    ids=["421", "dropped"],
)
def test_a_failed_rset_ends_the_session_and_the_next_message_opens_a_new_one(
    smtp_server, make_route, options
):
    # The first message's only recipient is refused, so the transaction is reset.
    server = smtp_server(rcpt_replies={"gone@example.com": "550 5.1.1 no such user"}, **options)
    make_route(server)
    refused, delivered = queue_one(to="gone@example.com"), queue_one()
    DeliveryEngine().run()
    refused.refresh_from_db()
    delivered.refresh_from_db()
    assert refused.status == Message.Status.FAILED
    assert delivered.status == Message.Status.SENT
    assert delivered.attempts.get().outcome == "delivered"
    assert server.sessions == 2


def test_a_non_ascii_address_goes_out_with_smtputf8(smtp_server, make_route):
    server = smtp_server()
    make_route(server)
    message = queue_to("jörg@example.com")
    assert DeliveryEngine().run().sent == 1
    (received,) = server.messages
    assert received.rcpt_tos == ("jörg@example.com",)
    assert "SMTPUTF8" in received.mail_options
    message.refresh_from_db()
    assert message.status == Message.Status.SENT


def test_a_non_ascii_address_to_a_relay_without_smtputf8_fails_with_the_reason(
    smtp_server, make_route
):
    server = smtp_server(disable_extensions={"SMTPUTF8"})
    make_route(server)
    message = queue_to("jörg@example.com")
    DeliveryEngine().run()
    attempt = only_attempt(message)
    assert message.status == Message.Status.FAILED
    assert attempt.outcome == "route_fault"
    assert "does not offer SMTPUTF8" in attempt.reply and "jörg@example.com" in attempt.reply
    assert message.recipients.get().status == Recipient.Status.FAILED
    assert server.transactions == 0


def test_a_non_ascii_address_goes_to_the_route_that_offers_smtputf8(smtp_server, make_route):
    ascii_only = smtp_server(disable_extensions={"SMTPUTF8"})
    utf8 = smtp_server()
    make_route(ascii_only, name="ascii", priority=1)
    make_route(utf8, name="utf8", priority=2)
    message = queue_to("jörg@example.com")
    DeliveryEngine().run()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert len(utf8.messages) == 1
    assert message.attempts.get(route_name="ascii").outcome == "route_fault"
