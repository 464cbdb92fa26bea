"""Cancelling: every message no worker holds, with every open recipient, in one go."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.core.mail import send_mail
from django.utils import timezone

from django_smtprelay.models import Message, Recipient

pytestmark = pytest.mark.django_db

S, R = Message.Status, Recipient.Status
LEASE = timedelta(minutes=5)


def queue(subject: str, status: str = S.QUEUED, lease_minutes: int | None = None) -> Message:
    send_mail(subject, "Body", "from@example.com", ["a@example.com", "b@example.com"])
    message = Message.objects.get(subject=subject)
    lease = {}
    if lease_minutes is not None:
        lease = {
            "lease_token": uuid.uuid4(),
            "lease_expires_at": timezone.now() + timedelta(minutes=lease_minutes),
        }
    Message.objects.filter(pk=message.pk).update(status=status, **lease)
    return message


def recipient_states(message: Message) -> list[str]:
    return list(message.recipients.order_by("pk").values_list("status", flat=True))


def test_cancel_gives_every_open_recipient_a_final_state_and_skips_the_held_and_final():
    queued = queue("queued")
    deferred = queue("deferred", S.DEFERRED)
    deferred.recipients.filter(address="a@example.com").update(status=R.DELIVERED)
    deferred.recipients.filter(address="b@example.com").update(status=R.DEFERRED)
    orphaned = queue("lease expired", S.SENDING, lease_minutes=-1)
    held = queue("being sent", S.SENDING, lease_minutes=5)
    sent = queue("sent", S.SENT)
    sent.recipients.update(status=R.DELIVERED)
    held_before = Message.objects.values().get(pk=held.pk)

    assert Message.objects.all().cancel() == 3

    for message in (queued, orphaned):
        row = Message.objects.get(pk=message.pk)
        assert (row.status, row.lease_token, row.lease_expires_at) == (S.CANCELLED, None, None)
        assert recipient_states(message) == [R.CANCELLED, R.CANCELLED]
        assert all(r.updated_at for r in message.recipients.all())
    assert Message.objects.get(pk=deferred.pk).status == S.CANCELLED
    assert recipient_states(deferred) == [R.DELIVERED, R.CANCELLED]
    assert Message.objects.values().get(pk=held.pk) == held_before
    assert recipient_states(held) == [R.PENDING, R.PENDING]
    assert Message.objects.get(pk=sent.pk).status == S.SENT
    assert recipient_states(sent) == [R.DELIVERED, R.DELIVERED]


def test_a_queryset_filtered_on_the_status_cancels_the_recipients_too():
    deferred = queue("deferred", S.DEFERRED)
    assert Message.objects.filter(status=S.DEFERRED).cancel() == 1
    assert recipient_states(deferred) == [R.CANCELLED, R.CANCELLED]


def test_recipients_left_open_under_a_message_cancelled_before_are_closed():
    earlier = queue("cancelled before the fix", S.CANCELLED)
    assert Message.objects.all().cancel() == 0
    assert recipient_states(earlier) == [R.CANCELLED, R.CANCELLED]


def test_a_message_a_worker_claims_while_cancel_runs_is_left_to_the_worker(monkeypatch):
    from django_smtprelay.models import messages

    queue("claimed meanwhile")
    other = queue("not claimed", S.DEFERRED)
    claims = []
    ids_in = messages.ids_in

    def claim_first(ids):
        # Between cancel()'s read of the ids and its guarded write, a worker
        # claims the first message (as another process would).
        if not claims:
            claims.append(None)  # the claim below goes through here too
            claims[0] = Message.objects.filter(subject="claimed meanwhile").claim(1, LEASE)
        return ids_in(ids)

    monkeypatch.setattr(messages, "ids_in", claim_first)
    assert Message.objects.all().cancel() == 1
    (token, (claimed_pk,)) = claims[0]
    row = Message.objects.get(pk=claimed_pk)
    assert (row.status, row.lease_token) == (S.SENDING, token)
    assert recipient_states(row) == [R.PENDING, R.PENDING]
    assert Message.objects.get(pk=other.pk).status == S.CANCELLED


def test_a_lease_ending_exactly_now_still_holds_its_message():
    now = timezone.now()
    held = queue("lease ends now", S.SENDING)
    Message.objects.filter(pk=held.pk).update(lease_token=uuid.uuid4(), lease_expires_at=now)
    assert Message.objects.all().cancel(now=now) == 0
    assert Message.objects.get(pk=held.pk).status == S.SENDING
    assert Message.objects.all().cancel(now=now + timedelta(microseconds=1)) == 1


def test_the_admin_names_a_message_its_content_and_its_attempts_by_what_they_say():
    from django_smtprelay.models import DeliveryAttempt, MessageContent

    message = queue("Invoice 42")
    assert str(message) == "Invoice 42"
    assert str(Message(subject="")) == "(no subject)"
    content = MessageContent.objects.get(message=message)
    assert str(content) == f"content of message {message.pk} ({len(bytes(content.raw))} bytes)"
    assert str(message.recipients.order_by("pk").first()) == "a@example.com"
    refused = DeliveryAttempt(route_name="relay", outcome="permanent", smtp_code=550)
    assert str(refused) == "relay: permanent 550"
    assert str(DeliveryAttempt(route_name="relay", outcome="route_fault")) == "relay: route_fault"


def test_a_final_message_with_an_old_lease_is_never_cancelled():
    sent = queue("sent under a lease that has since ended", S.SENT, lease_minutes=-1)
    assert Message.objects.all().cancel() == 0
    assert Message.objects.get(pk=sent.pk).status == S.SENT


def test_cancel_counts_every_chunk_and_closes_only_its_own_messages_recipients(monkeypatch):
    from django_smtprelay.models.messages import MessageQuerySet

    monkeypatch.setattr(MessageQuerySet, "CANCEL_CHUNK", 2)
    mine = [queue(f"mine {i}") for i in range(5)]
    # Cancelled before, outside the queryset: its open recipients are not this call's.
    other = queue("cancelled before, not selected", S.CANCELLED)
    selected = Message.objects.filter(pk__in=[m.pk for m in mine])
    assert selected.cancel() == 5
    for message in mine:
        assert recipient_states(message) == [R.CANCELLED, R.CANCELLED]
    assert recipient_states(other) == [R.PENDING, R.PENDING]


@pytest.mark.django_db(transaction=True, databases=["default", "relay"])
def test_cancel_through_another_database_alias_writes_there_in_one_transaction():
    from django.db import connections

    queue("queued")
    deferred = queue("deferred", S.DEFERRED)
    relay = connections["relay"]
    writes: list[bool] = []

    def in_a_transaction(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith("UPDATE"):
            writes.append(relay.in_atomic_block)
        return execute(sql, params, many, context)

    with relay.execute_wrapper(in_a_transaction):
        assert Message.objects.using("relay").cancel() == 2
    assert writes == [True, True], "messages and recipients, both inside the transaction"
    assert Message.objects.get(pk=deferred.pk).status == S.CANCELLED
    assert recipient_states(deferred) == [R.CANCELLED, R.CANCELLED]
