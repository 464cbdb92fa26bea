"""A worker killed with SIGKILL mid-batch: its lease runs out and another worker finishes.

One scenario runs once per module (a few seconds of real processes); the
tests below each check one promise about it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from django_smtprelay.models import DeliveryAttempt, Message, Route
from tests.faults.harness import (
    Workers,
    add_route,
    assert_test_database,
    delivered,
    leases_expired,
    on_test_database,
    only,
    queue,
    reliability,
    require_postgresql,
    sent_ids,
    settled,
    statuses,
    wait_until,
)
from tests.smtpserver import SMTPTestServer

# The tests read what the module's scenario saw (the mark makes pytest-django set
# the test database up for the module's fixture).
pytestmark = [pytest.mark.slow, pytest.mark.services, pytest.mark.django_db(transaction=True)]

MESSAGES = 300
KILL_AFTER = 130  # accepted by the relay: the second batch of 100 is under way
WORKER = {"BATCH_SIZE": 100, "FLUSH_EVERY": 25, "LEASE_SECONDS": 2}


@dataclass
class Killed:
    """What the scenario saw: at the kill, and after the second worker."""

    by_id: dict[str, int]
    held_at_kill: set[str]  # status sending under the killed worker's lease
    accepted_at_kill: Counter[str]
    sent_at_kill: set[str]
    counts: Counter[str]  # the relay's log at the end
    final: Counter[str]
    attempts: dict[str, list[bool]]  # Message-ID -> possible_duplicate of each attempt, in order


def kill_and_recover(relay: SMTPTestServer, workers: Workers) -> Killed:
    """Queue, start a worker, SIGKILL it mid-batch, let the lease run out, start another."""
    assert_test_database()
    add_route(relay)
    by_id = queue(MESSAGES, "killed")
    first = workers.start(**WORKER)
    wait_until(lambda: len(relay.messages) >= KILL_AFTER, 30, "the first deliveries")
    first.kill()
    accepted_at_kill = settled(relay)
    sending = Message.objects.filter(status=Message.Status.SENDING)
    held_at_kill = set(sending.values_list("message_id", flat=True))
    sent_at_kill = sent_ids()
    wait_until(leases_expired, 10, "the killed worker's lease to run out")
    second = workers.start(**WORKER)
    result = second.finish(timeout=60)
    assert result["returncode"] == 0, (result, second.stderr())
    attempts: dict[str, list[bool]] = {}
    for mid, dup in DeliveryAttempt.objects.order_by("started_at", "pk").values_list(
        "message__message_id", "possible_duplicate"
    ):
        attempts.setdefault(mid, []).append(dup)
    return Killed(
        by_id,
        held_at_kill,
        accepted_at_kill,
        sent_at_kill,
        delivered(relay),
        statuses(),
        attempts,
    )


@pytest.fixture(scope="module")
def killed(
    django_db_setup: None, django_db_blocker, tls_certs, tmp_path_factory
) -> Iterator[Killed]:
    require_postgresql()
    relay = SMTPTestServer(tls_certs=tls_certs, dot_delay=0.01).start()
    workers = Workers(tmp_path_factory.mktemp("killed"))
    try:
        with django_db_blocker.unblock():
            seen = kill_and_recover(relay, workers)
        yield seen
    finally:
        workers.stop_all()
        relay.stop()
        with django_db_blocker.unblock():
            if on_test_database():
                Message.objects.all().delete()
                Route.objects.all().delete()


def test_a_killed_worker_leaves_its_batch_mid_way(killed: Killed):
    assert killed.held_at_kill, "the kill landed between batches; nothing was in flight"
    assert killed.sent_at_kill <= set(killed.accepted_at_kill), "sent, but never accepted"
    assert len(killed.sent_at_kill) < MESSAGES


def test_after_a_kill_every_message_is_delivered_and_only_in_flight_ones_twice(killed: Killed):
    counts = killed.counts
    missing = set(killed.by_id) - set(counts)
    assert not missing, f"{len(missing)} messages never delivered: {only(missing)}"
    assert killed.final == {Message.Status.SENT: MESSAGES}
    twice = {mid for mid, n in counts.items() if n > 1}
    # In flight: accepted by the relay while the killed worker still held the
    # message, its result not yet written.
    in_flight = set(killed.accepted_at_kill) & killed.held_at_kill
    assert twice <= in_flight, f"resent but not in flight at the kill: {only(twice - in_flight)}"
    assert max(counts.values()) <= 2
    flagged = sum(any(flags) for flags in killed.attempts.values())
    reliability(
        "worker-killed",
        faults=1,
        messages=MESSAGES,
        held_at_kill=len(killed.held_at_kill),
        in_flight=len(in_flight),
        duplicates=len(twice),
        flagged=flagged,
    )


def test_resends_after_a_lease_takeover_are_flagged_possible_duplicates(killed: Killed):
    twice = {mid for mid, n in killed.counts.items() if n > 1}
    unflagged = {mid for mid in twice if not killed.attempts[mid][-1]}
    assert not unflagged, f"resends not flagged possible_duplicate: {only(unflagged)}"
    # Every message taken over from the dead lease may have reached the relay.
    unflagged = {mid for mid in killed.held_at_kill if not killed.attempts[mid][-1]}
    assert not unflagged, f"takeovers not flagged possible_duplicate: {only(unflagged)}"
