"""The lease under faults: stale writers change nothing, a slow relay never
outlives the lease, and a message taken over from a lost worker is flagged."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.core.mail import send_mail, send_mass_mail
from django.db import close_old_connections, connection
from django.utils import timezone

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.delivery.lease import LeaseHeartbeat
from django_smtprelay.models import DeliveryAttempt, Message, Recipient
from django_smtprelay.signals import message_sent
from django_smtprelay.transports.smtp import SMTPTransport


def queue(n: int) -> None:
    send_mass_mail([(f"S{i}", "B", "from@example.com", [f"to{i}@example.com"]) for i in range(n)])


@pytest.mark.django_db(transaction=True)
def test_a_stale_worker_never_overwrites_the_claim_that_replaced_its_lease(smtp_server, make_route):
    server = smtp_server()
    make_route(server)
    queue(1)
    claim = Message.objects.claim(10, timedelta(minutes=5))
    new_token = uuid.uuid4()
    state = {"attempt_written": False, "taken": False}

    def sweep_takes_it_over(execute, sql, params, many, context):
        """Right after the result writer checked its lease, another worker's
        claim takes the message (on PostgreSQL a sweep can, between the check
        and the writes)."""
        result = execute(sql, params, many, context)
        if "deliveryattempt" in sql.lower() and sql.lstrip().upper().startswith("INSERT"):
            state["attempt_written"] = True
        elif state["attempt_written"] and not state["taken"] and "lease_token" in sql:
            state["taken"] = True
            Message.objects.filter(pk__in=claim.ids).update(
                lease_token=new_token, lease_expires_at=timezone.now() + timedelta(minutes=5)
            )
        return result

    with connection.execute_wrapper(sweep_takes_it_over):
        report = DeliveryEngine().deliver_batch(claim)
    assert state["taken"], "the takeover was injected"
    assert len(server.messages) == 1
    message = Message.objects.get()
    assert message.lease_token == new_token, "the new owner's lease is kept"
    assert message.status == Message.Status.SENDING
    assert Recipient.objects.get().status == Recipient.Status.PENDING
    assert report.lost_leases == 1
    assert message.attempts.count() == 1, "what happened is still recorded"


@pytest.mark.django_db(transaction=True)
def test_a_relay_slower_than_the_lease_never_lets_another_worker_take_the_batch(
    smtp_server, make_route, relay_settings
):
    # One reply to the final dot takes longer than the whole lease: only a
    # renewal while the session waits keeps the message from being taken.
    relay_settings(LEASE_SECONDS=2)
    server = smtp_server(dot_delay=3.0)
    make_route(server, timeout=10.0)
    queue(1)
    claim = Message.objects.claim(10, timedelta(seconds=2))
    stolen: list[int] = []

    def other_worker() -> None:
        try:
            deadline = time.monotonic() + 3.5
            while time.monotonic() < deadline and not stolen:
                stolen.extend(Message.objects.claim(10, timedelta(seconds=2)).ids)
                time.sleep(0.2)
        finally:
            close_old_connections()

    thief = threading.Thread(target=other_worker)
    thief.start()
    report = DeliveryEngine().deliver_batch(claim)
    thief.join()
    assert stolen == []
    assert report.sent == 1 and report.lost_leases == 0
    assert len(server.messages) == 1


@pytest.mark.django_db
def test_a_message_taken_over_from_an_expired_lease_is_flagged_when_delivered(
    smtp_server, make_route
):
    server = smtp_server()
    make_route(server)
    send_mail("lost", "B", "from@example.com", ["to@example.com"])
    now = timezone.now()
    Message.objects.claim(10, timedelta(minutes=5), now=now)  # and then the worker died
    send_mail("fresh", "B", "from@example.com", ["to@example.com"])
    later = now + timedelta(minutes=6)
    claim = Message.objects.claim(10, timedelta(minutes=5), now=later)
    lost = Message.objects.get(subject="lost").pk
    assert len(claim.ids) == 2
    assert claim.taken_over == {lost}
    received: list[dict] = []

    def on_sent(**kwargs) -> None:
        received.append(kwargs)

    message_sent.connect(on_sent)
    try:
        DeliveryEngine(clock=lambda: later).deliver_batch(claim)
    finally:
        message_sent.disconnect(on_sent)
    assert len(server.messages) == 2
    flagged = dict(DeliveryAttempt.objects.values_list("message__subject", "possible_duplicate"))
    assert flagged == {"lost": True, "fresh": False}
    assert [r["possible_duplicate_ids"] for r in received] == [[lost]]
    assert sorted(received[0]["message_ids"]) == sorted(claim.ids)


@pytest.mark.django_db
def test_a_takeover_that_fails_is_not_flagged(smtp_server, make_route):
    server = smtp_server(rcpt_replies={"to@example.com": "550 5.1.1 no such user"})
    make_route(server)
    send_mail("lost", "B", "from@example.com", ["to@example.com"])
    now = timezone.now()
    Message.objects.claim(10, timedelta(minutes=5), now=now)
    later = now + timedelta(minutes=6)
    DeliveryEngine(clock=lambda: later).run()
    attempt = DeliveryAttempt.objects.get()
    assert attempt.outcome == DeliveryAttempt.Outcome.PERMANENT
    assert attempt.possible_duplicate is False


@pytest.mark.django_db
def test_a_message_taken_over_and_then_deferred_is_flagged_when_it_is_finally_delivered(
    smtp_server, make_route, refused_port
):
    down = make_route(port=refused_port)
    send_mail("lost", "B", "from@example.com", ["to@example.com"])
    now = timezone.now()
    Message.objects.claim(10, timedelta(minutes=5), now=now)  # and then the worker died
    later = now + timedelta(minutes=6)
    assert DeliveryEngine(clock=lambda: later).run().deferred == 1
    message = Message.objects.get()
    assert message.possible_duplicate is True, "the takeover is kept on the message"
    assert message.attempts.get().possible_duplicate is False, "nothing was sent then"
    # The relay is back: the delivery that follows may be the message's second.
    server = smtp_server()
    down.port = server.port
    down.save()
    received: list[dict] = []

    def on_sent(**kwargs) -> None:
        received.append(kwargs)

    message_sent.connect(on_sent)
    try:
        assert DeliveryEngine(clock=lambda: later + timedelta(hours=1)).run().sent == 1
    finally:
        message_sent.disconnect(on_sent)
    delivered = message.attempts.get(outcome=DeliveryAttempt.Outcome.DELIVERED)
    assert delivered.possible_duplicate is True
    assert received[0]["possible_duplicate_ids"] == [message.pk]


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_renews_only_while_the_sending_thread_is_within_its_step():
    queue(1)
    lease = timedelta(seconds=1.2)
    claim = Message.objects.claim(10, lease)

    def expires_at():
        return Message.objects.get().lease_expires_at

    claimed_until = expires_at()
    heartbeat = LeaseHeartbeat(claim.token, lease, timezone.now).start()
    try:
        heartbeat.expect(0.1)  # a step that should have ended long ago: a stuck relay
        time.sleep(0.9)  # three heartbeat intervals
        assert heartbeat.renewals == 0
        assert expires_at() == claimed_until
        heartbeat.expect(10.0)
        deadline = time.monotonic() + 5
        while heartbeat.renewals == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert heartbeat.renewals >= 1
        assert expires_at() > claimed_until
    finally:
        heartbeat.stop()
        close_old_connections()


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_reconnects_after_losing_its_database_connection():
    if connection.vendor != "postgresql":
        pytest.skip(
            "terminates a PostgreSQL backend: run with SMTPRELAY_TEST_DATABASE=postgres "
            "(PostgreSQL on 127.0.0.1:5432)"
        )
    queue(1)
    lease = timedelta(seconds=1.2)
    claim = Message.objects.claim(10, lease)
    heartbeat = LeaseHeartbeat(claim.token, lease, timezone.now).start()
    heartbeat.expect(30.0)

    def renewals_reach(n: int) -> bool:
        deadline = time.monotonic() + 10
        while heartbeat.renewals < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return heartbeat.renewals >= n

    try:
        assert renewals_reach(1)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert any(ok for (ok,) in cursor.fetchall()), "the heartbeat's backend was found"
        before = heartbeat.renewals
        assert renewals_reach(before + 2), "renewals go on over a new connection"
    finally:
        heartbeat.stop()


@pytest.mark.django_db(transaction=True)
def test_messages_whose_lease_is_lost_mid_batch_are_never_sent_by_the_old_owner(
    smtp_server, make_route, relay_settings
):
    # Another worker takes the batch's last two messages while it is being
    # sent (a sweep with a skewed clock, say). The sending thread checks its
    # lease every third of it and drops them: they are never sent twice.
    relay_settings(LEASE_SECONDS=3)
    server = smtp_server(dot_delay=0.4)
    make_route(server)
    queue(10)
    claim = Message.objects.claim(10, timedelta(seconds=3))
    last_two = sorted(claim.ids)[-2:]
    thief_token = uuid.uuid4()

    def other_worker() -> None:
        try:
            deadline = time.monotonic() + 10
            while len(server.messages) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            Message.objects.filter(pk__in=last_two).update(
                lease_token=thief_token, lease_expires_at=timezone.now() + timedelta(minutes=5)
            )
        finally:
            close_old_connections()

    thief = threading.Thread(target=other_worker)
    thief.start()
    report = DeliveryEngine().deliver_batch(claim)
    thief.join()
    stolen_subjects = set(Message.objects.filter(pk__in=last_two).values_list("subject", flat=True))
    sent_subjects = {
        m.data.split(b"Subject: ")[1].split(b"\r\n")[0].decode() for m in server.messages
    }
    assert not stolen_subjects & sent_subjects, "the old owner sent what it no longer held"
    assert report.lost_leases == 2
    assert report.sent == 8
    assert set(Message.objects.filter(pk__in=last_two).values_list("lease_token", flat=True)) == {
        thief_token
    }


@pytest.mark.django_db(transaction=True)
def test_leases_lost_at_two_checks_are_counted_and_logged_each_time(
    smtp_server, make_route, relay_settings, caplog
):
    """Two messages taken by another worker, then a third: the report counts all
    three, and each check's warning names the batch and the messages it lost."""
    relay_settings(LEASE_SECONDS=3)
    server = smtp_server(dot_delay=0.4)
    make_route(server)
    queue(10)
    claim = Message.objects.claim(10, timedelta(seconds=3))
    ids = sorted(claim.ids)
    rounds = [(2, ids[-2:]), (4, ids[-3:-2])]  # (after how many sent, which ones)

    def other_worker() -> None:
        try:
            for sent, taken in rounds:
                deadline = time.monotonic() + 10
                while len(server.messages) < sent and time.monotonic() < deadline:
                    time.sleep(0.02)
                Message.objects.filter(pk__in=taken).update(
                    lease_token=uuid.uuid4(), lease_expires_at=timezone.now() + timedelta(minutes=5)
                )
        finally:
            close_old_connections()

    thief = threading.Thread(target=other_worker)
    thief.start()
    with caplog.at_level(logging.WARNING, logger="django_smtprelay.delivery"):
        report = DeliveryEngine().deliver_batch(claim)
    thief.join()
    assert report.lost_leases == 3
    assert report.sent == 7
    said = f"message(s) of batch {claim.token}; another worker has them"
    assert [r.getMessage() for r in caplog.records if "Lease lost" in r.getMessage()] == [
        f"Lease lost for 2 {said}: {ids[-2:]}",
        f"Lease lost for 1 {said}: {ids[-3:-2]}",
    ]


@pytest.mark.django_db(transaction=True)
def test_a_message_announced_ahead_and_then_lost_is_discarded_and_the_rest_still_go(
    smtp_server, make_route, relay_settings
):
    """The relay already has the next message's commands (pipelined with the
    previous content) when the check finds its lease lost: the session ends
    without that content, so the relay discards it, and a new one sends the rest."""
    relay_settings(LEASE_SECONDS=3)
    server = smtp_server(dot_delay=0.4)
    make_route(server)
    queue(8)
    claim = Message.objects.claim(10, timedelta(seconds=3))
    ids = sorted(claim.ids)
    taken: list[int] = []

    def takes_the_next_one(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        """The lease check (a SELECT by lease token, not by ids): just before it,
        another worker takes the message after the last one the relay has."""
        is_check = sql.lstrip().upper().startswith("SELECT") and " IN (" not in sql
        if is_check and "lease_token" in sql and not taken and len(server.messages) >= 2:
            taken.append(ids[len(server.messages)])
            Message.objects.filter(pk__in=taken).update(
                lease_token=uuid.uuid4(), lease_expires_at=timezone.now() + timedelta(minutes=5)
            )
        return execute(sql, params, many, context)

    with connection.execute_wrapper(takes_the_next_one):
        report = DeliveryEngine().deliver_batch(claim)
    assert taken, "the takeover was injected"
    subjects = {m.data.split(b"Subject: ")[1].split(b"\r\n")[0].decode() for m in server.messages}
    lost = Message.objects.get(pk=taken[0]).subject
    assert lost not in subjects, "the old owner sent what it no longer held"
    assert report.lost_leases == 1
    assert report.sent == 7, "the messages after it went on a new connection"
    assert len(server.messages) == 7


@pytest.mark.django_db(transaction=True)
def test_an_unexpected_failure_after_a_lease_was_lost_leaves_that_message_alone(
    smtp_server, make_route, relay_settings
):
    """The route fails unexpectedly after the lease check dropped the batch's last
    message: the messages still held go to the next route (here: wait), and the
    one another worker has is not touched (it has no route left here to fault)."""
    relay_settings(LEASE_SECONDS=3)
    server = smtp_server(dot_delay=0.4)
    make_route(server)
    queue(6)
    claim = Message.objects.claim(10, timedelta(seconds=3))
    thief = uuid.uuid4()
    last = max(claim.ids)
    taken: list[int] = []

    def takes_the_last_one(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        is_check = sql.lstrip().upper().startswith("SELECT") and " IN (" not in sql
        if is_check and "lease_token" in sql and not taken and len(server.messages) >= 2:
            taken.append(last)
            Message.objects.filter(pk=last).update(
                lease_token=thief, lease_expires_at=timezone.now() + timedelta(minutes=5)
            )
        return execute(sql, params, many, context)

    class FailsOnceTheLeaseIsLost(SMTPTransport):
        def send(self, envelope, **kwargs):  # type: ignore[no-untyped-def]
            if taken:
                raise RuntimeError("a defect")
            return super().send(envelope, **kwargs)

    with connection.execute_wrapper(takes_the_last_one):
        report = DeliveryEngine(transport_factory=FailsOnceTheLeaseIsLost).deliver_batch(claim)
    assert taken, "the takeover was injected"
    assert report.lost_leases == 1
    assert report.deferred >= 1, "the messages still held wait for another try"
    stolen = Message.objects.get(pk=last)
    assert stolen.lease_token == thief and stolen.status == Message.Status.SENDING
    assert not stolen.attempts.exists()


@pytest.mark.django_db
def test_a_lease_whose_message_has_moved_on_matches_nothing():
    queue(2)
    claim = Message.objects.claim(10, timedelta(minutes=5))
    done = Message.objects.get(pk=claim.ids[0])
    # A result written without clearing the token: the lease is over all the same.
    Message.objects.filter(pk=done.pk).update(status=Message.Status.SENT)
    assert list(Message.objects.leased_by(claim.token).values_list("pk", flat=True)) == [
        claim.ids[1]
    ]


def postgresql_only() -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: set SMTPRELAY_TEST_DATABASE=postgres to run it")


@pytest.mark.django_db(transaction=True, databases=["default", "relay"])
def test_the_claim_skips_a_row_another_worker_has_locked_instead_of_waiting():
    from django.db import connections, transaction

    postgresql_only()
    queue(2)
    locked, free = Message.objects.order_by("pk")
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '3s'")  # a claim that waits fails, not hangs
    try:
        # Another worker (a second connection) is marking the first message.
        with transaction.atomic(using="relay"):
            assert list(
                Message.objects.using("relay")
                .select_for_update()
                .filter(pk=locked.pk)
                .values_list("pk", flat=True)
            ) == [locked.pk]
            started = time.monotonic()
            claim = Message.objects.claim(10, timedelta(minutes=5))
            waited = time.monotonic() - started
        assert claim.ids == [free.pk]
        assert waited < 2, "the claim waited for the lock"
        assert Message.objects.get(pk=locked.pk).status == Message.Status.QUEUED
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
        connections["relay"].close()


@pytest.mark.django_db(transaction=True, databases=["default", "relay"])
def test_a_claim_through_another_database_alias_locks_and_marks_there():
    postgresql_only()
    queue(2)
    taken_over = Message.objects.order_by("pk").first()
    now = timezone.now()
    Message.objects.filter(pk=taken_over.pk).update(
        status=Message.Status.SENDING,
        lease_token=uuid.uuid4(),
        lease_expires_at=now - timedelta(seconds=1),
    )
    claim = Message.objects.using("relay").claim(10, timedelta(minutes=5), now=now)
    assert sorted(claim.ids) == sorted(Message.objects.values_list("pk", flat=True))
    assert claim.taken_over == frozenset({taken_over.pk})
    assert set(Message.objects.leased_by(claim.token).values_list("pk", flat=True)) == set(
        claim.ids
    )
    assert Message.objects.get(pk=taken_over.pk).possible_duplicate
