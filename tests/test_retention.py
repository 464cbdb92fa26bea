"""Retention: bodies and attempts of old finished messages are purged; the rows stay."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage
from django.core.management import call_command
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_smtprelay import retention, tasks
from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.models import DeliveryAttempt, Message, MessageContent, Recipient

pytestmark = pytest.mark.django_db

OLD = timedelta(days=31)


def queue(subject: str, to: str = "ok@example.com") -> Message:
    EmailMessage(subject, "Body", "sender@example.com", [to]).send()
    return Message.objects.latest("pk")


def age(message: Message, by: timedelta = OLD) -> None:
    """Move the message's whole life ``by`` into the past."""
    Message.objects.filter(pk=message.pk).update(
        created_at=F("created_at") - by,
        next_attempt_at=F("next_attempt_at") - by,
        sent_at=F("sent_at") - by,
    )


@pytest.fixture
def history(smtp_server, make_route):
    """Real results: sent, failed, deferred and cancelled messages, most of them old."""
    server = smtp_server(
        rcpt_replies={
            "bad@example.com": "550 5.7.1 rejected",
            "later@example.com": "451 4.7.1 try later",
        }
    )
    make_route(server)
    made = {
        "sent": queue("sent"),
        "failed": queue("failed", "bad@example.com"),
        "deferred": queue("deferred", "later@example.com"),
        "recent": queue("recent"),
    }
    DeliveryEngine().run()
    made["cancelled"] = queue("cancelled")
    Message.objects.filter(pk=made["cancelled"].pk).cancel()
    made["queued"] = queue("queued")
    for name, message in made.items():
        if name != "recent":
            age(message)
    return made


def status(message: Message) -> str:
    return Message.objects.get(pk=message.pk).status


def test_old_finished_messages_lose_body_and_attempts_and_keep_their_rows(history):
    assert status(history["sent"]) == "sent" and status(history["failed"]) == "failed"
    assert status(history["deferred"]) == "deferred"
    report = retention.purge()
    assert report.messages == 3  # sent, failed, cancelled
    assert report.attempts == 2  # the sent and the failed message's tries
    gone = [history[k].pk for k in ("sent", "failed", "cancelled")]
    assert not MessageContent.objects.filter(message_id__in=gone).exists()
    assert not DeliveryAttempt.objects.filter(message_id__in=gone).exists()
    # The rows stay with their final state, reason and recipients.
    failed = Message.objects.get(pk=history["failed"].pk)
    assert failed.status == "failed" and "550 5.7.1 rejected" in failed.last_error
    assert Recipient.objects.get(message=failed).status == "failed"
    assert Message.objects.count() == 6


def test_open_and_recent_messages_are_never_touched(history):
    retention.purge()
    for name in ("deferred", "queued", "recent"):
        message = history[name]
        assert MessageContent.objects.filter(message_id=message.pk).exists(), name
    assert DeliveryAttempt.objects.filter(message_id=history["deferred"].pk).count() == 1
    assert DeliveryAttempt.objects.filter(message_id=history["recent"].pk).count() == 1
    # Even a message being sent right now under a lease.
    Message.objects.filter(pk=history["queued"].pk).update(status=Message.Status.SENDING)
    assert retention.purge().messages == 0
    assert MessageContent.objects.filter(message_id=history["queued"].pk).exists()


def test_a_second_run_finds_nothing_left(history):
    assert retention.purge().messages == 3
    assert retention.purge().messages == 0


def test_purge_goes_in_bounded_chunks(smtp_server, make_route):
    make_route(smtp_server())
    for i in range(5):
        queue(f"m{i}")
    DeliveryEngine().run()
    for message in Message.objects.all():
        age(message)
    with CaptureQueriesContext(connection) as queries:
        report = retention.purge(chunk=2)
    assert (report.messages, report.attempts) == (5, 5)
    deletes = [q["sql"] for q in queries if q["sql"].startswith("DELETE")]
    assert len(deletes) == 6, "attempts and contents of 2 + 2 + 1 messages"
    assert MessageContent.objects.count() == 0


def test_dry_run_counts_and_deletes_nothing(history):
    out = StringIO()
    call_command("smtprelay_purge", "--dry-run", stdout=out)
    assert out.getvalue().startswith("Would purge the content and attempts of 3 messages")
    assert "(2 attempts)" in out.getvalue()
    assert MessageContent.objects.count() == 6
    assert DeliveryAttempt.objects.count() == 4
    call_command("smtprelay_purge", stdout=out)
    assert "Purged the content and attempts of 3 messages" in out.getvalue()
    assert MessageContent.objects.count() == 3


def test_the_setting_moves_the_cutoff_and_none_keeps_everything(history, relay_settings):
    relay_settings(RETENTION_DAYS=60)
    assert retention.purge().messages == 0
    relay_settings(RETENTION_DAYS=None)
    out = StringIO()
    call_command("smtprelay_purge", stdout=out)
    assert "Retention is off" in out.getvalue()
    assert MessageContent.objects.count() == 6
    relay_settings(RETENTION_DAYS=7)
    assert tasks.purge() == 3, "the Celery task purges with the setting"
    assert tasks.purge.name == "django_smtprelay.purge"


@pytest.mark.parametrize("value", [0, -1, "30", True])
def test_a_bad_retention_setting_names_the_value(relay_settings, value):
    relay_settings(RETENTION_DAYS=value)
    with pytest.raises(ImproperlyConfigured, match=rf"RETENTION_DAYS.*{value!r}"):
        retention.purge()


def test_an_old_message_that_finished_recently_keeps_its_body_and_attempts(history):
    # Queued long ago but sent only now (scheduled far ahead, or sent again):
    # the retention counts from its last activity, not from when it was queued.
    sent = history["sent"]
    Message.objects.filter(pk=sent.pk).update(
        next_attempt_at=timezone.now(), sent_at=timezone.now()
    )
    retention.purge()
    assert MessageContent.objects.filter(message=sent).exists()
    assert DeliveryAttempt.objects.filter(message=sent).exists()
    assert not MessageContent.objects.filter(message=history["failed"]).exists()


def test_a_queued_message_without_content_fails_alone_and_the_batch_goes_on(
    smtp_server, make_route
):
    server = smtp_server()
    make_route(server)
    gone, kept = queue("gone"), queue("kept")
    MessageContent.objects.filter(message=gone).delete()  # a purge raced a resend, say
    report = DeliveryEngine().run()
    assert report.sent == 1 and report.failed == 1
    gone.refresh_from_db()
    assert gone.status == Message.Status.FAILED
    assert "content was deleted" in gone.last_error
    assert gone.attempt_count == 0, "no attempt was made"
    assert status(kept) == Message.Status.SENT and len(server.messages) == 1
