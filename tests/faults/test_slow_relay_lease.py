"""A relay slower than the lease: no second worker may take what the first is still sending
(item 11).

The relay waits longer than the whole lease before it answers the final dot.
While the worker waits, the test (a second worker) tries to claim: the lease
must still hold, renewed by the session that is working, so the claim takes
nothing the first worker goes on to deliver.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from django_smtprelay.models import Message
from tests.faults.harness import add_route, delivered, queue, reliability, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.services, pytest.mark.django_db(transaction=True)]

LEASE = 2  # seconds
DOT_DELAY = 4.0  # the relay's answer to the final dot: twice the lease


def test_a_session_outliving_its_lease_keeps_its_messages(smtp_server, workers):
    relay = smtp_server(dot_delay=DOT_DELAY)
    add_route(relay)
    by_id = queue(1, "slow")
    worker = workers.start(LEASE_SECONDS=LEASE)
    wait_until(lambda: relay.transactions >= 1, 20, "the worker to start sending")
    time.sleep(LEASE + 0.5)  # the claim's lease is over; the relay has not answered yet
    assert not relay.attempts, "the relay answered early: the test no longer spans the lease"
    _token, taken = Message.objects.claim(10, timedelta(minutes=5))
    result = worker.finish(timeout=30)
    assert result["returncode"] == 0, (result, worker.stderr())

    # Everything the relay accepted came from the first worker, after the claim above.
    sent_by_first = {by_id[mid] for mid in delivered(relay)}
    both = sent_by_first & set(taken)
    reliability(
        "slow-relay", lease=f"{LEASE}s", relay_wait=f"{DOT_DELAY}s", claimed_twice=len(both)
    )
    assert not both, f"claimed by a second worker while the first was sending them: {both}"
