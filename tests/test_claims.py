"""The claim/lease protocol: one worker per message, expired leases are taken over."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.core.mail import send_mass_mail
from django.db import close_old_connections
from django.utils import timezone

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.models import Message
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
