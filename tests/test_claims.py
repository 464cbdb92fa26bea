"""The claim/lease protocol: one worker per message, expired leases are taken over."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.core.mail import send_mass_mail
from django.db import close_old_connections
from django.utils import timezone

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.models import Message
from django_smtprelay.models.messages import Claim
from django_smtprelay.transports import get_transport


def queue(n: int) -> None:
    send_mass_mail([(f"S{i}", "B", "from@example.com", [f"to{i}@example.com"]) for i in range(n)])


@pytest.mark.django_db
def test_a_claimed_message_is_not_claimed_again_until_its_lease_expires():
    queue(3)
    now = timezone.now()
    token, ids = Message.objects.claim(10, timedelta(minutes=5), now=now)
    assert len(ids) == 3
    assert Message.objects.claim(10, timedelta(minutes=5), now=now)[1] == []
    assert set(Message.objects.leased_by(token).values_list("pk", flat=True)) == set(ids)
    # The worker died: after expiry another worker takes all of them.
    later = now + timedelta(minutes=5, seconds=1)
    _token2, ids2 = Message.objects.claim(10, timedelta(minutes=5), now=later)
    assert sorted(ids2) == sorted(ids)
    assert not Message.objects.leased_by(token).exists()


@pytest.mark.django_db
def test_claims_respect_the_limit_and_priority():
    queue(5)
    Message.objects.filter(subject="S3").update(priority=Message.Priority.HIGH)
    _token, ids = Message.objects.claim(2, timedelta(minutes=5))
    assert len(ids) == 2
    assert Message.objects.get(subject="S3").pk in ids


@pytest.mark.django_db
def test_a_crashed_worker_message_is_delivered_by_the_next_one(smtp_server, make_route):
    server = smtp_server()
    make_route(server)
    queue(1)
    now = timezone.now()
    Message.objects.claim(10, timedelta(minutes=5), now=now)  # and then the worker crashed
    assert DeliveryEngine(clock=lambda: now).run().claimed == 0
    report = DeliveryEngine(clock=lambda: now + timedelta(minutes=6)).run()
    assert report.sent == 1
    assert len(server.messages) == 1


@pytest.mark.django_db
def test_results_are_not_written_over_a_lease_that_was_lost(smtp_server, make_route):
    server = smtp_server()
    make_route(server)
    queue(1)

    def stealing_transport(route):
        # While this worker connects, another one takes the message over.
        Message.objects.update(lease_token=None, status=Message.Status.QUEUED)
        return get_transport(route)

    token, ids = Message.objects.claim(10, timedelta(minutes=5))
    report = DeliveryEngine(transport_factory=stealing_transport).deliver_batch(token, ids)
    assert len(server.messages) == 1
    assert report.lost_leases == 1
    message = Message.objects.get()
    assert message.status == Message.Status.QUEUED, "the new owner's state is kept"
    assert message.attempts.count() == 1, "what happened is still recorded"


@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_never_send_a_message_twice(smtp_server, make_route):
    server = smtp_server()
    make_route(server)
    queue(60)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            DeliveryEngine(batch_size=7).run()
        except BaseException as exc:  # surfaced to the test below
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert Message.objects.filter(status=Message.Status.SENT).count() == 60
    subjects = [m.data.split(b"Subject: ")[1].split(b"\r\n")[0] for m in server.messages]
    assert len(subjects) == 60
    assert len(set(subjects)) == 60, "a message was sent twice"


@pytest.mark.django_db(transaction=True)
def test_a_batch_that_outlives_its_lease_renews_it(smtp_server, make_route, relay_settings):
    # Six sends of half a second each against a two-second lease: without
    # renewal another worker could take the batch's last messages half-way.
    relay_settings(LEASE_SECONDS=2)
    server = smtp_server(dot_delay=0.5)
    make_route(server)
    queue(6)
    stolen: list[int] = []

    def other_worker() -> None:
        try:
            time.sleep(2.4)
            stolen.extend(Message.objects.claim(10, timedelta(seconds=2))[1])
        finally:
            close_old_connections()

    thief = threading.Thread(target=other_worker)
    thief.start()
    report = DeliveryEngine().run()
    thief.join()
    assert stolen == []
    assert report.sent == 6 and report.lost_leases == 0
    assert len(server.messages) == 6


def held_and_due(lease_left: timedelta, now):
    """One message being sent under a lease that ends ``lease_left`` after ``now``, sorted
    first (priority Now, due long ago), and one retry due behind it."""
    queue(2)
    held, due = Message.objects.order_by("pk")
    Message.objects.filter(pk=held.pk).update(
        status=Message.Status.SENDING,
        priority=Message.Priority.NOW,
        next_attempt_at=now - timedelta(hours=1),
        lease_token=uuid.uuid4(),
        lease_expires_at=now + lease_left,
    )
    Message.objects.filter(pk=due.pk).update(status=Message.Status.DEFERRED, next_attempt_at=now)
    return held, due


# A lease that ends exactly now is still held (expired means "before now"), as due() says.
@pytest.mark.parametrize("lease_left", [timedelta(0), timedelta(minutes=1)])
@pytest.mark.django_db
def test_a_live_lease_is_never_claimed_nor_takes_the_room_of_a_due_retry(lease_left):
    now = timezone.now()
    held, due = held_and_due(lease_left, now)
    before = Message.objects.values().get(pk=held.pk)
    claim = Message.objects.claim(1, timedelta(minutes=5), now=now)
    assert claim.ids == [due.pk]
    assert claim.taken_over == frozenset()
    assert Message.objects.values().get(pk=held.pk) == before


@pytest.mark.django_db
def test_an_expired_lease_is_taken_over_in_due_order_and_flagged():
    now = timezone.now()
    held, due = held_and_due(-timedelta(microseconds=1), now)
    claim = Message.objects.claim(1, timedelta(minutes=5), now=now)
    assert (claim.ids, claim.taken_over) == ([held.pk], frozenset({held.pk}))
    taken = Message.objects.get(pk=held.pk)
    assert (taken.lease_token, taken.possible_duplicate) == (claim.token, True)
    assert taken.lease_expires_at == now + timedelta(minutes=5)
    assert not Message.objects.get(pk=due.pk).possible_duplicate


@pytest.mark.parametrize(
    ("limit", "new", "retries", "taken"),
    [
        (10, 10, 10, (8, 2)),  # new mail fills its share (80%), retries the rest
        (10, 3, 10, (3, 7)),  # retries take the room new mail leaves
        (10, 10, 1, (9, 1)),  # and new mail what retries leave
        (10, 12, 0, (10, 0)),
        (10, 0, 12, (0, 10)),
        (1, 1, 1, (1, 0)),  # a batch of one still takes new mail
        (2, 2, 2, (1, 1)),
    ],
)
@pytest.mark.django_db
def test_new_mail_fills_at_most_its_share_of_a_batch_while_retries_are_due(
    limit, new, retries, taken
):
    now = timezone.now()
    queue(new + retries)
    retry_ids = list(Message.objects.order_by("pk").values_list("pk", flat=True)[:retries])
    Message.objects.filter(pk__in=retry_ids).update(
        status=Message.Status.DEFERRED, next_attempt_at=now - timedelta(minutes=1)
    )
    Message.objects.update(created_at=now - timedelta(minutes=2))
    Message.objects.exclude(pk__in=retry_ids).update(next_attempt_at=now)
    claim = Message.objects.claim(limit, timedelta(minutes=5), now=now)
    claimed_retries = len(set(claim.ids) & set(retry_ids))
    assert (len(claim.ids) - claimed_retries, claimed_retries) == taken
    assert len(set(claim.ids)) == len(claim.ids)


def test_a_claim_survives_pickling_and_copying_whole():
    import copy
    import pickle

    token = uuid.uuid4()
    claim = Claim(token, [3, 1, 2], taken_over=[2, 9])  # 9 was not won: not taken over
    # A tuple subclass loses its extra attributes when pickled or copied, unless told how.
    copies = (pickle.loads(pickle.dumps(claim)), copy.copy(claim), copy.deepcopy(claim))  # noqa: S301
    for again in copies:
        assert (again.token, again.ids, again.taken_over) == (token, [3, 1, 2], frozenset({2}))
        assert tuple(again) == (token, [3, 1, 2])


@pytest.mark.django_db
def test_unfinished_is_every_message_not_sent_failed_or_cancelled():
    queue(6)
    statuses = list(Message.Status)
    for message, status in zip(Message.objects.order_by("pk"), statuses, strict=True):
        Message.objects.filter(pk=message.pk).update(status=status)
    assert set(Message.objects.unfinished().values_list("status", flat=True)) == {
        "queued",
        "sending",
        "deferred",
    }


@pytest.mark.django_db
def test_due_is_new_mail_and_retries_whose_time_has_come_and_expired_leases_only():
    now = timezone.now()
    queue(6)
    ready, later, retry, held, expired, sent = Message.objects.order_by("pk")
    Message.objects.update(next_attempt_at=now)  # due exactly now is due
    Message.objects.filter(pk=later.pk).update(next_attempt_at=now + timedelta(seconds=1))
    Message.objects.filter(pk=retry.pk).update(status=Message.Status.DEFERRED, next_attempt_at=now)
    for row, minutes in ((held, 1), (expired, -1)):
        Message.objects.filter(pk=row.pk).update(
            status=Message.Status.SENDING,
            lease_token=uuid.uuid4(),
            lease_expires_at=now + timedelta(minutes=minutes),
        )
    # A final message keeps the lease it was sent under; it is never due again.
    Message.objects.filter(pk=sent.pk).update(
        status=Message.Status.SENT, lease_expires_at=now - timedelta(minutes=1)
    )
    due = set(Message.objects.due(now).values_list("pk", flat=True))
    assert due == {ready.pk, retry.pk, expired.pk}


@pytest.mark.django_db
def test_a_claim_takes_at_most_n_rows_oldest_due_first():
    now = timezone.now()
    queue(4)
    rows = list(Message.objects.order_by("pk"))
    # Due in the reverse of their creation, so ids alone would pick the wrong ones.
    for age, row in enumerate(rows):
        Message.objects.filter(pk=row.pk).update(next_attempt_at=now - timedelta(minutes=age))
    # The ids come as a set would (in due order on PostgreSQL, not on SQLite).
    claim = Message.objects.claim(2, timedelta(minutes=5), now=now)
    assert set(claim.ids) == {rows[3].pk, rows[2].pk}
    assert set(Message.objects.claim(10, timedelta(minutes=5), now=now).ids) == {
        rows[1].pk,
        rows[0].pk,
    }


@pytest.mark.django_db
def test_retries_of_both_kinds_compete_by_priority_then_by_due_time():
    now = timezone.now()
    queue(2)
    deferred, expired = Message.objects.order_by("pk")
    lease = {"lease_token": uuid.uuid4(), "lease_expires_at": now - timedelta(seconds=1)}

    def state(deferred_at, deferred_priority, expired_at, expired_priority):
        Message.objects.filter(pk=deferred.pk).update(
            status=Message.Status.DEFERRED,
            next_attempt_at=now - deferred_at,
            priority=deferred_priority,
            lease_token=None,
            lease_expires_at=None,
        )
        Message.objects.filter(pk=expired.pk).update(
            status=Message.Status.SENDING,
            next_attempt_at=now - expired_at,
            priority=expired_priority,
            **lease,
        )

    P = Message.Priority
    # Same priority: the one due first wins, though its id is the higher.
    state(timedelta(minutes=1), P.NORMAL, timedelta(minutes=2), P.NORMAL)
    assert Message.objects.claim(1, timedelta(minutes=5), now=now).ids == [expired.pk]
    state(timedelta(minutes=2), P.NORMAL, timedelta(minutes=1), P.NORMAL)
    assert Message.objects.claim(1, timedelta(minutes=5), now=now).ids == [deferred.pk]
    # A higher priority wins over an earlier due time.
    state(timedelta(hours=1), P.LOW, timedelta(minutes=1), P.HIGH)
    assert Message.objects.claim(1, timedelta(minutes=5), now=now).ids == [expired.pk]


@pytest.mark.django_db
def test_a_claim_that_wins_nothing_still_has_a_token_of_its_own():
    first = Message.objects.claim(10, timedelta(minutes=5))
    second = Message.objects.claim(10, timedelta(minutes=5))
    assert first.ids == second.ids == []
    assert isinstance(first.token, uuid.UUID) and isinstance(second.token, uuid.UUID)
    assert first.token != second.token


@pytest.mark.django_db
def test_a_tie_in_priority_and_due_time_goes_to_the_message_queued_first():
    now = timezone.now()
    queue(6)
    pks = list(Message.objects.order_by("pk").values_list("pk", flat=True))
    # Rewritten newest first: on PostgreSQL the rows' physical order is then the
    # reverse of their ids, so only the id decides the tie.
    for pk in reversed(pks):
        Message.objects.filter(pk=pk).update(next_attempt_at=now)
    assert Message.objects.claim(1, timedelta(minutes=5), now=now).ids == pks[:1]
