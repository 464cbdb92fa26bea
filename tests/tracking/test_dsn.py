"""A bounce that comes back as mail (RFC 3464 DSN) through an ESP's inbound webhook."""

from __future__ import annotations

import base64
import json

import pytest

from django_smtprelay.models import Message, Recipient, RecipientEvent, Suppression
from django_smtprelay.tracking import HEADER, smtprelay_id
from django_smtprelay.tracking.apply import unmatched_count
from tests.tracking import payloads
from tests.tracking.conftest import post

pytestmark = pytest.mark.django_db


def dsn(
    original_headers: str,
    recipients: list[tuple[str, str, str, str]],
    *,
    report_id: str = "<dsn.1@mx.example.net>",
) -> str:
    """A DSN: ``recipients`` are (address, action, status, diagnostic)."""
    blocks = "\r\n".join(
        f"Final-Recipient: rfc822; {address}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n"
        for address, action, status, diagnostic in recipients
    )
    return (
        "From: MAILER-DAEMON@mx.example.net\r\n"
        "To: bounces@shop.example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: {report_id}\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B1"\r\n'
        "\r\n--B1\r\n"
        "Content-Type: text/plain\r\n\r\n"
        "Your message could not be delivered.\r\n"
        "\r\n--B1\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n"
        "Arrival-Date: Mon, 30 Nov 2026 10:00:00 +0000\r\n\r\n"
        f"{blocks}"
        "\r\n--B1\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n"
        f"{original_headers}"
        "\r\n--B1--\r\n"
    )


def ses_inbound(raw: str) -> tuple[bytes, str, dict[str, str]]:
    """An SES receipt rule's SNS action: the whole mail, base64, in the notification."""
    event = {
        "notificationType": "Received",
        "mail": {
            "timestamp": "2026-11-30T10:30:00.000Z",
            "source": "MAILER-DAEMON@mx.example.net",
            "messageId": "inbound-ses-0001",
            "destination": ["bounces@shop.example.com"],
            "headers": [],
        },
        "receipt": {
            "recipients": ["bounces@shop.example.com"],
            "spamVerdict": {"status": "PASS"},
            "action": {"type": "SNS", "encoding": "BASE64", "topicArn": "arn:aws:sns:x"},
        },
        "content": base64.b64encode(raw.encode()).decode(),
    }
    return payloads.ses_notification(event)


def postmark_inbound(raw: str) -> tuple[bytes, str, dict[str, str]]:
    """Postmark's inbound JSON with the raw mail included (RawEmail)."""
    data = {
        "From": "MAILER-DAEMON@mx.example.net",
        "FromFull": {"Email": "MAILER-DAEMON@mx.example.net", "Name": ""},
        "To": "bounces@shop.example.com",
        "ToFull": [{"Email": "bounces@shop.example.com", "Name": ""}],
        "Subject": "Undelivered Mail Returned to Sender",
        "MessageID": "pm-inbound-1",
        "Date": "Mon, 30 Nov 2026 10:30:00 +0000",
        "TextBody": "Your message could not be delivered.",
        "Headers": [],
        "Attachments": [],
        "RawEmail": raw,
    }
    return json.dumps(data).encode(), "application/json", {}


def test_a_dsn_fails_the_recipient_it_names_by_the_original_message_id(client, esp_route, accepted):
    route = esp_route("amazon_ses")
    message = accepted(
        route,
        ["ann@example.net", "bob@example.net"],
        headers={"Message-ID": "<m1@shop.example.com>"},
    )
    raw = dsn(
        "Message-ID: <m1@shop.example.com>\r\nSubject: Your receipt\r\n",
        [("bob@example.net", "failed", "5.1.1", "550 5.1.1 <bob@example.net>: user unknown")],
    )
    response = post(client, route, ses_inbound(raw), which="inbound")
    assert response.status_code == 200
    states = dict(message.recipients.values_list("address", "status"))
    assert states == {"ann@example.net": "delivered", "bob@example.net": "failed"}
    bob = message.recipients.get(address="bob@example.net")
    assert (bob.smtp_code, bob.enhanced_code) == (550, "5.1.1")
    assert "user unknown" in bob.reply
    event = RecipientEvent.objects.get()
    assert (event.kind, event.source, event.hard) == ("bounced", "dsn", True)
    assert Suppression.objects.get().address == "bob@example.net"


def test_a_dsn_is_matched_by_our_header_and_applied_once(client, esp_route, accepted):
    route = esp_route("postmark")
    message = accepted(route, ["ann@example.net"])
    raw = dsn(
        # The Message-ID was rewritten on the way; our header survived.
        f"Message-ID: <rewritten@esp.example>\r\n{HEADER}: {smtprelay_id(message.pk)}\r\n",
        [("ann@example.net", "failed", "5.2.1", "550 5.2.1 mailbox disabled")],
    )
    for _ in range(2):
        assert post(client, route, postmark_inbound(raw), which="inbound").status_code == 200
    assert message.recipients.get().status == Recipient.Status.FAILED
    assert RecipientEvent.objects.count() == 1
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED


def test_a_delayed_dsn_is_an_event_and_no_failure(client, esp_route, accepted):
    route = esp_route("postmark")
    message = accepted(route, ["ann@example.net"], headers={"Message-ID": "<m2@shop.example.com>"})
    raw = dsn(
        "Message-ID: <m2@shop.example.com>\r\n",
        [("ann@example.net", "delayed", "4.4.1", "451 4.4.1 no answer from host")],
    )
    post(client, route, postmark_inbound(raw), which="inbound")
    assert RecipientEvent.objects.get().kind == "deferred"
    assert message.recipients.get().status == Recipient.Status.DELIVERED
    assert not Suppression.objects.exists()


def test_a_dsn_for_an_unknown_message_is_counted(client, esp_route):
    route = esp_route("postmark")
    raw = dsn(
        "Message-ID: <elsewhere@other.example>\r\n", [("x@example.net", "failed", "5.1.1", "550")]
    )
    assert post(client, route, postmark_inbound(raw), which="inbound").status_code == 200
    assert not RecipientEvent.objects.exists()
    assert unmatched_count(route.pk) == 1


def test_ordinary_inbound_mail_is_left_alone(client, esp_route, accepted):
    route = esp_route("postmark")
    accepted(route, ["ann@example.net"], headers={"Message-ID": "<m3@shop.example.com>"})
    raw = (
        "From: ann@example.net\r\nSubject: Re: receipt\r\n"
        "In-Reply-To: <m3@shop.example.com>\r\n\r\nThanks!\r\n"
    )
    assert post(client, route, postmark_inbound(raw), which="inbound").status_code == 200
    assert not RecipientEvent.objects.exists()


def test_inbound_without_credentials_is_refused(client, esp_route, accepted):
    route = esp_route("postmark")
    message = accepted(route, ["ann@example.net"], headers={"Message-ID": "<m4@shop.example.com>"})
    raw = dsn(
        "Message-ID: <m4@shop.example.com>\r\n", [("ann@example.net", "failed", "5.1.1", "550")]
    )
    response = post(client, route, postmark_inbound(raw), which="inbound", credentials="hooks:nope")
    assert response.status_code == 401
    assert message.recipients.get().status == Recipient.Status.DELIVERED
