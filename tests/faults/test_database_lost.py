"""The database connection lost mid-batch: the worker stops (bounded), nothing is lost or
marked sent that the relay did not accept."""

from __future__ import annotations

import time

import pytest
from django.db import connection

from django_smtprelay.models import DeliveryAttempt, Message
from tests.faults.harness import (
    add_route,
    delivered,
    leases_expired,
    only,
    queue,
    reliability,
    sent_ids,
    settled,
    statuses,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.services, pytest.mark.django_db(transaction=True)]

MESSAGES = 300
CUT_AFTER = 130  # accepted by the relay: the second batch of 100 is under way
WORKER = {"BATCH_SIZE": 100, "FLUSH_EVERY": 25, "LEASE_SECONDS": 2}


def terminate_backend(application_name: str) -> int:
    """``pg_terminate_backend`` every connection of that application; how many there were."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            [application_name],
        )
        return sum(bool(ok) for (ok,) in cursor.fetchall())


def test_a_worker_that_loses_its_database_stops_and_another_delivers_the_rest(smtp_server, workers):
    relay = smtp_server(dot_delay=0.01)
    add_route(relay)
    by_id = queue(MESSAGES, "db-lost")
    first = workers.start(application_name="smtprelay-fault-db-lost", **WORKER)
    wait_until(lambda: len(relay.messages) >= CUT_AFTER, 30, "the first deliveries")
    # The sending thread's connection, and the lease heartbeat's once it has renewed.
    assert terminate_backend("smtprelay-fault-db-lost") >= 1

    # It must not hang: it recovers and drains, or it exits with the database's error.
    cut_at = time.monotonic()
    result = first.finish(timeout=20)
    stopped_after = time.monotonic() - cut_at
    assert result["returncode"] in (0, 3), (result, first.stderr())
    if result["returncode"] == 3:
        assert "OperationalError" in result["error"] or "InterfaceError" in result["error"], result
    accepted_at_stop = settled(relay)
    sent_at_stop = sent_ids()
    not_accepted = sent_at_stop - set(accepted_at_stop)
    assert not not_accepted, f"marked sent, never accepted: {only(not_accepted)}"
    held = set(
        Message.objects.filter(status=Message.Status.SENDING).values_list("message_id", flat=True)
    )

    wait_until(leases_expired, 10, "the lost worker's lease to run out")
    second = workers.start(**WORKER)
    assert second.finish(timeout=60)["returncode"] == 0, second.stderr()

    counts = delivered(relay)
    missing = set(by_id) - set(counts)
    assert not missing, f"{len(missing)} messages never delivered: {only(missing)}"
    assert statuses() == {Message.Status.SENT: MESSAGES}
    assert sent_ids() <= set(counts)
    twice = {mid for mid, n in counts.items() if n > 1}
    in_flight = set(accepted_at_stop) & held
    assert twice <= in_flight, f"resent but not in flight at the cut: {only(twice - in_flight)}"
    assert max(counts.values()) <= 2
    flagged = DeliveryAttempt.objects.filter(possible_duplicate=True).count()
    reliability(
        "database-lost",
        faults=1,
        messages=MESSAGES,
        worker_exit=result.get("error", "recovered").split(":")[0],
        stopped_after=f"{stopped_after:.1f}s",
        held_at_cut=len(held),
        duplicates=len(twice),
        flagged=flagged,
    )
