"""Each ESP's real event payloads, posted to a route's webhook URL, change our records."""

from __future__ import annotations

import logging

import pytest

from django_smtprelay.models import Message, Recipient, RecipientEvent, Suppression
from tests.tracking import payloads
from tests.tracking.conftest import BASIC, post

pytestmark = pytest.mark.django_db

PM_ID = "883953f4-6105-42a2-a16a-77a8eac79483"
SES_ID = "0102018c7c2a1b2c-5b1d2f3e-8a4b-4c7d-9e0f-1a2b3c4d5e6f-000000"


def test_postmark_delivery_is_an_event_on_the_recipient(client, esp_route, accepted):
    route = esp_route("postmark")
    message = accepted(route, ["ann@example.net"], provider_id=PM_ID)
    response = post(client, route, payloads.postmark_delivery(PM_ID, "ann@example.net"))
    assert response.status_code == 200
    event = RecipientEvent.objects.get()
    assert event.recipient.message_id == message.pk
    assert (event.kind, event.esp) == ("delivered", "postmark")
    assert event.at.isoformat().startswith("2026-11-30T10:15:02")
    assert event.recipient.status == Recipient.Status.DELIVERED


def test_postmark_hard_bounce_fails_a_delivered_recipient_and_suppresses_it(
    client, esp_route, accepted
):
    route = esp_route("postmark")
    message = accepted(route, ["Ann@Example.net"], provider_id=PM_ID)
    response = post(client, route, payloads.postmark_bounce(PM_ID, "ann@example.net"))
    assert response.status_code == 200
    rcpt = message.recipients.get()
    assert rcpt.status == Recipient.Status.FAILED
    assert (rcpt.smtp_code, rcpt.enhanced_code) == (550, "5.1.1")
    assert "does not exist" in rcpt.reply
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    suppression = Suppression.objects.get()
    assert suppression.address == "ann@example.net"
    assert suppression.source == Suppression.Source.BOUNCE
    assert "bounced" in suppression.reason and "5.1.1" in suppression.reason


def test_a_soft_bounce_fails_the_recipient_but_suppresses_nothing(client, esp_route, accepted):
    route = esp_route("postmark")
    message = accepted(route, ["ann@example.net"], provider_id=PM_ID)
    post(client, route, payloads.postmark_bounce(PM_ID, "ann@example.net", type_="SoftBounce"))
    assert message.recipients.get().status == Recipient.Status.FAILED
    assert RecipientEvent.objects.get().hard is False
    assert not Suppression.objects.exists()


def test_the_same_event_posted_twice_is_one_event(client, esp_route, accepted):
    route = esp_route("postmark")
    accepted(route, ["ann@example.net"], provider_id=PM_ID)
    for _ in range(2):
        assert (
            post(client, route, payloads.postmark_bounce(PM_ID, "ann@example.net")).status_code
            == 200
        )
        assert (
            post(client, route, payloads.postmark_delivery(PM_ID, "ann@example.net")).status_code
            == 200
        )
    assert sorted(RecipientEvent.objects.values_list("kind", flat=True)) == ["bounced", "delivered"]
    assert Suppression.objects.count() == 1


def test_only_the_named_recipient_of_a_shared_provider_id_fails(client, esp_route, accepted):
    route = esp_route("postmark")
    message = accepted(route, ["ann@example.net", "bob@example.net"], provider_id=PM_ID)
    post(client, route, payloads.postmark_bounce(PM_ID, "bob@example.net"))
    states = dict(message.recipients.values_list("address", "status"))
    assert states == {"ann@example.net": "delivered", "bob@example.net": "failed"}
    message.refresh_from_db()
    assert message.status == Message.Status.SENT  # ann still got it


def test_postmark_complaint_suppresses_unless_turned_off(
    client, esp_route, accepted, relay_settings
):
    route = esp_route("postmark")
    accepted(route, ["ann@example.net"], provider_id=PM_ID)
    relay_settings(SUPPRESS_ON_COMPLAINT=False)
    post(client, route, payloads.postmark_complaint(PM_ID, "ann@example.net"))
    assert RecipientEvent.objects.get().kind == "complained"
    assert not Suppression.objects.exists()
    relay_settings(SUPPRESS_ON_COMPLAINT=True)
    accepted(route, ["cy@example.net"], provider_id="other-id-123")
    post(client, route, payloads.postmark_complaint("other-id-123", "cy@example.net"))
    assert Suppression.objects.get().source == Suppression.Source.COMPLAINT


def test_hard_bounce_suppression_can_be_turned_off(client, esp_route, accepted, relay_settings):
    relay_settings(SUPPRESS_ON_HARD_BOUNCE=False)
    route = esp_route("postmark")
    accepted(route, ["ann@example.net"], provider_id=PM_ID)
    post(client, route, payloads.postmark_bounce(PM_ID, "ann@example.net"))
    assert RecipientEvent.objects.get().hard is True
    assert not Suppression.objects.exists()


def test_unknown_ids_are_counted_and_logged_never_errors(client, esp_route, accepted, caplog):
    from django_smtprelay.tracking.apply import unmatched_count

    route = esp_route("postmark")
    accepted(route, ["ann@example.net"], provider_id=PM_ID)
    with caplog.at_level(logging.INFO, logger="django_smtprelay.tracking"):
        for _ in range(3):
            response = post(client, route, payloads.postmark_bounce("no-such-id", "x@example.net"))
            assert response.status_code == 200
    assert not RecipientEvent.objects.exists()
    assert unmatched_count(route.pk) == 3
    assert "no-such-id" in caplog.text


def test_an_event_for_another_esps_recipient_does_not_match(client, esp_route, accepted):
    postmark = esp_route("postmark")
    sendgrid = esp_route("sendgrid")
    accepted(sendgrid, ["ann@example.net"], provider_id=PM_ID)
    post(client, postmark, payloads.postmark_bounce(PM_ID, "ann@example.net"))
    assert not RecipientEvent.objects.exists()


def test_our_id_in_the_metadata_matches_without_a_provider_id(client, esp_route, accepted):
    from django_smtprelay.tracking import esp_metadata

    route = esp_route("postmark")
    message = accepted(route, ["ann@example.net", "bob@example.net"])
    rcpt = message.recipients.get(address="bob@example.net")
    _metadata, merge = esp_metadata(message.pk, [(rcpt.pk, rcpt.address)])
    post(
        client,
        route,
        payloads.postmark_bounce("unknown-to-us", "bob@example.net", Metadata=merge[rcpt.address]),
    )
    rcpt.refresh_from_db()
    assert rcpt.status == Recipient.Status.FAILED


# Credentials ---------------------------------------------------------------


@pytest.mark.parametrize("credentials", [None, "hooks:wrong", "someone:open-sesame-42"])
def test_a_post_without_the_routes_credentials_is_refused_and_logged_without_the_secret(
    client, esp_route, accepted, caplog, credentials
):
    route = esp_route("postmark")
    accepted(route, ["ann@example.net"], provider_id=PM_ID)
    with caplog.at_level(logging.WARNING):
        response = post(
            client,
            route,
            payloads.postmark_bounce(PM_ID, "ann@example.net"),
            credentials=credentials,
        )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert not RecipientEvent.objects.exists()
    assert Recipient.objects.get().status == Recipient.Status.DELIVERED
    assert "Refused a tracking webhook post to route postmark-route" in caplog.text
    assert "open-sesame" not in caplog.text


def test_a_route_without_a_secret_refuses_every_post(client, esp_route, accepted):
    route = esp_route("postmark", secret="")
    accepted(route, ["ann@example.net"], provider_id=PM_ID)
    response = post(
        client, route, payloads.postmark_bounce(PM_ID, "ann@example.net"), credentials=""
    )
    assert response.status_code == 401
    assert not RecipientEvent.objects.exists()


def test_a_renamed_route_asks_for_its_secret_again(client, esp_route, accepted):
    route = esp_route("postmark")
    accepted(route, ["ann@example.net"], provider_id=PM_ID)
    route.name = "renamed"
    route.save()
    response = post(client, route, payloads.postmark_bounce(PM_ID, "ann@example.net"))
    assert response.status_code == 401
    assert not RecipientEvent.objects.exists()


def test_unknown_route_or_route_without_esp_is_not_found(client, esp_route):
    route = esp_route("postmark")
    route.esp = ""
    route.save()
    assert (
        post(client, route, payloads.postmark_delivery(PM_ID, "a@example.net")).status_code == 404
    )
    response = client.post(
        "/smtprelay/webhooks/nope/tracking/", b"{}", content_type="application/json"
    )
    assert response.status_code == 404


# Amazon SES (SNS) -----------------------------------------------------------


def test_ses_permanent_bounce_fails_each_bounced_recipient(client, esp_route, accepted):
    route = esp_route("amazon_ses")
    message = accepted(route, ["ann@example.net", "bob@example.net"], provider_id=SES_ID)
    response = post(
        client, route, payloads.ses_bounce(SES_ID, ["ann@example.net", "bob@example.net"])
    )
    assert response.status_code == 200
    assert set(message.recipients.values_list("status", flat=True)) == {"failed"}
    assert RecipientEvent.objects.filter(kind="bounced", hard=True).count() == 2
    assert set(Suppression.objects.values_list("address", flat=True)) == {
        "ann@example.net",
        "bob@example.net",
    }
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED


def test_ses_transient_bounce_is_soft(client, esp_route, accepted):
    route = esp_route("amazon_ses")
    accepted(route, ["ann@example.net"], provider_id=SES_ID)
    post(client, route, payloads.ses_bounce(SES_ID, ["ann@example.net"], bounce_type="Transient"))
    assert RecipientEvent.objects.get().hard is False
    assert not Suppression.objects.exists()


def test_ses_retried_notification_is_applied_once(client, esp_route, accepted):
    route = esp_route("amazon_ses")
    accepted(route, ["ann@example.net"], provider_id=SES_ID)
    payload = payloads.ses_delivery(SES_ID, ["ann@example.net"])
    for _ in range(3):
        assert post(client, route, payload).status_code == 200
    assert RecipientEvent.objects.get().kind == "delivered"


def test_ses_complaint_is_recorded_and_suppressed(client, esp_route, accepted):
    route = esp_route("amazon_ses")
    accepted(route, ["ann@example.net"], provider_id=SES_ID)
    post(client, route, payloads.ses_complaint(SES_ID, ["ann@example.net"]))
    event = RecipientEvent.objects.get()
    assert (event.kind, event.description) == ("complained", "abuse")
    assert Suppression.objects.get().source == Suppression.Source.COMPLAINT


def test_ses_bad_credentials_are_refused(client, esp_route, accepted):
    route = esp_route("amazon_ses")
    accepted(route, ["ann@example.net"], provider_id=SES_ID)
    response = post(
        client, route, payloads.ses_bounce(SES_ID, ["ann@example.net"]), credentials="x:y"
    )
    assert response.status_code == 401
    assert not RecipientEvent.objects.exists()


# Mailgun (signed) -----------------------------------------------------------

MG_KEY = "key-mailgun-signing-0123456789abcdef"
MG_MSG_ID = "20261130101500.1.ABCDEF@mg.example.com"


def test_mailgun_signed_failure_matches_by_message_id_header(client, esp_route, accepted):
    route = esp_route("mailgun", secret="", signing_key=MG_KEY)
    message = accepted(route, ["ann@example.net"], headers={"Message-ID": f"<{MG_MSG_ID}>"})
    payload = payloads.mailgun_event(MG_KEY, "failed", MG_MSG_ID, "ann@example.net")
    response = post(client, route, payload, credentials=None)
    assert response.status_code == 200
    rcpt = message.recipients.get()
    assert rcpt.status == Recipient.Status.FAILED
    assert rcpt.enhanced_code == "5.1.1"
    assert Suppression.objects.get().address == "ann@example.net"


def test_mailgun_temporary_failure_is_a_deferral(client, esp_route, accepted):
    route = esp_route("mailgun", secret="", signing_key=MG_KEY)
    message = accepted(route, ["ann@example.net"], headers={"Message-ID": f"<{MG_MSG_ID}>"})
    payload = payloads.mailgun_event(
        MG_KEY,
        "failed",
        MG_MSG_ID,
        "ann@example.net",
        severity="temporary",
        code=452,
        message="4.2.2 mailbox full",
    )
    post(client, route, payload, credentials=None)
    assert RecipientEvent.objects.get().kind == "deferred"
    assert message.recipients.get().status == Recipient.Status.DELIVERED


def test_mailgun_bad_signature_is_refused(client, esp_route, accepted):
    route = esp_route("mailgun", secret="", signing_key=MG_KEY)
    accepted(route, ["ann@example.net"], headers={"Message-ID": f"<{MG_MSG_ID}>"})
    payload = payloads.mailgun_event("key-not-the-routes", "failed", MG_MSG_ID, "ann@example.net")
    response = post(client, route, payload, credentials=None)
    assert response.status_code == 401
    assert not RecipientEvent.objects.exists()


def test_mailgun_with_basic_auth_too_needs_both(client, esp_route, accepted):
    route = esp_route("mailgun", signing_key=MG_KEY)
    accepted(route, ["ann@example.net"], headers={"Message-ID": f"<{MG_MSG_ID}>"})
    signed = payloads.mailgun_event(
        MG_KEY, "delivered", MG_MSG_ID, "ann@example.net", code=250, message="OK"
    )
    assert post(client, route, signed, credentials=None).status_code == 401
    assert post(client, route, signed, credentials=BASIC).status_code == 200
    assert RecipientEvent.objects.get().kind == "delivered"


def test_mailgun_route_without_signing_key_refuses(client, esp_route, accepted):
    route = esp_route("mailgun")
    payload = payloads.mailgun_event(MG_KEY, "delivered", MG_MSG_ID, "ann@example.net")
    assert post(client, route, payload).status_code == 401


# SendGrid (a batch of events per post) ---------------------------------------


def test_sendgrid_batch_applies_each_event_by_smtp_id(client, esp_route, accepted):
    route = esp_route("sendgrid")
    message = accepted(
        route,
        ["ann@example.net", "bob@example.net"],
        headers={"Message-ID": "<sg.1234@shop.example.com>"},
    )
    payload = payloads.sendgrid_events(
        payloads.sendgrid_event("delivered", "<sg.1234@shop.example.com>", "ann@example.net"),
        payloads.sendgrid_event("bounce", "<sg.1234@shop.example.com>", "bob@example.net"),
        payloads.sendgrid_event("open", "<sg.1234@shop.example.com>", "ann@example.net"),
        payloads.sendgrid_event("unsubscribe", "<sg.1234@shop.example.com>", "ann@example.net"),
    )
    assert post(client, route, payload).status_code == 200
    states = dict(message.recipients.values_list("address", "status"))
    assert states == {"ann@example.net": "delivered", "bob@example.net": "failed"}
    kinds = sorted(RecipientEvent.objects.values_list("recipient__address", "kind"))
    assert kinds == [
        ("ann@example.net", "delivered"),
        ("ann@example.net", "opened"),
        ("ann@example.net", "unsubscribed"),
        ("bob@example.net", "bounced"),
    ]
    assert dict(Suppression.objects.values_list("address", "source")) == {
        "ann@example.net": "unsubscribe",
        "bob@example.net": "bounce",
    }


def test_sendgrid_bad_credentials_are_refused(client, esp_route, accepted):
    route = esp_route("sendgrid")
    payload = payloads.sendgrid_events(
        payloads.sendgrid_event("delivered", "<a@b>", "ann@example.net")
    )
    assert post(client, route, payload, credentials="hooks:guess").status_code == 401
    assert post(client, route, payload, credentials=None).status_code == 401


def test_an_event_without_a_time_zone_is_taken_as_utc(esp_route, accepted):
    from datetime import datetime

    from django_smtprelay.tracking.apply import APPLIED, Event, apply

    route = esp_route("postmark")
    accepted(route, ["ann@example.net"], provider_id=PM_ID)
    naive = datetime(2026, 11, 30, 10, 0, 0)
    event = Event(
        kind="opened", esp="postmark", recipient="ann@example.net", message_id=PM_ID, at=naive
    )
    assert apply(event) == APPLIED
    assert RecipientEvent.objects.get().at.isoformat() == "2026-11-30T10:00:00+00:00"


def test_two_copies_racing_past_the_read_are_one_event(esp_route, accepted, monkeypatch):
    """The read that spares a retry its write can be passed by a concurrent copy:
    the insert-or-ignore settles it, with no error and one row."""
    from django_smtprelay.tracking import store
    from django_smtprelay.tracking.apply import APPLIED, DUPLICATE, Event, apply

    route = esp_route("postmark")
    accepted(route, ["ann@example.net"], provider_id=PM_ID)
    event = Event(kind="clicked", esp="postmark", recipient="ann@example.net", message_id=PM_ID)
    monkeypatch.setattr(store, "_seen_sql", lambda alias: "SELECT 1 WHERE 1 = 0 AND %s = ''")
    assert apply(event) == APPLIED
    assert apply(event) == DUPLICATE
    assert RecipientEvent.objects.count() == 1


def test_a_bounce_for_a_cancelled_recipient_is_recorded_but_does_not_reopen_it(
    client, esp_route, accepted
):
    route = esp_route("postmark")
    message = accepted(route, ["ann@example.net"], provider_id=PM_ID)
    Recipient.objects.filter(message=message).update(status=Recipient.Status.CANCELLED)
    assert (
        post(client, route, payloads.postmark_bounce(PM_ID, "ann@example.net")).status_code == 200
    )
    assert RecipientEvent.objects.get().kind == "bounced"
    rcpt = message.recipients.get()
    assert (rcpt.status, rcpt.reply) == (Recipient.Status.CANCELLED, "")
    message.refresh_from_db()
    assert message.status == Message.Status.SENT


def test_the_failure_keeps_the_reply_codes_and_the_events_time(client, esp_route, accepted):
    route = esp_route("postmark")
    message = accepted(route, ["ann@example.net"], provider_id=PM_ID)
    post(client, route, payloads.postmark_bounce(PM_ID, "ann@example.net"))
    rcpt = message.recipients.get()
    assert rcpt.updated_at == RecipientEvent.objects.get().at
    message.refresh_from_db()
    assert message.last_error == rcpt.reply
    assert rcpt.reply.startswith("postmark: bounced: smtp;550 5.1.1")
