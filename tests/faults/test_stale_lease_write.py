"""A stale worker's result write must not touch a message another claim took over (item 10).

The race is made deterministic: just before the first worker's results are
written, a second claim, on its own connection in another thread, takes the
message over as if the first lease had run out, and commits. The first
worker's write then comes too late and must change nothing.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import close_old_connections, connection
from django.utils import timezone

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.models import Message
from tests.faults.harness import add_route, queue

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


class TakeOverBeforeResults:
    """An execute wrapper: before the statement that ends the lease (``lease_token`` set to
    NULL), another connection claims the message with a clock past the lease."""

    def __init__(self) -> None:
        self.taken: list[int] = []
        self.token = None
        self.fired = False

    def __call__(self, execute, sql, params, many, context):
        ends_lease = sql.startswith('UPDATE "django_smtprelay_message"') and (
            '"lease_token" = NULL' in sql
        )
        if ends_lease and not self.fired:
            self.fired = True
            thread = threading.Thread(target=self._claim)
            thread.start()
            thread.join(10)
            assert not thread.is_alive(), "the takeover claim blocked on the stale worker"
        return execute(sql, params, many, context)

    def _claim(self) -> None:
        try:
            later = timezone.now() + timedelta(minutes=10)
            self.token, self.taken = Message.objects.claim(10, timedelta(minutes=5), now=later)
        finally:
            close_old_connections()
            connection.close()


def test_a_stale_result_write_leaves_the_new_claim_alone(smtp_server):
    relay = smtp_server()
    add_route(relay)
    queue(1, "stale")
    takeover = TakeOverBeforeResults()
    with connection.execute_wrapper(takeover):
        report = DeliveryEngine().run()
    assert takeover.fired, "the engine never ended a lease: the test no longer sees the write"
    assert len(relay.messages) == 1
    message = Message.objects.get()
    if not takeover.taken:
        # The writer held the row locked: the takeover could not happen; the first
        # worker's result stands.
        assert message.status == Message.Status.SENT
        return
    assert message.lease_token == takeover.token, "the new claim's lease was cleared"
    assert message.status == Message.Status.SENDING, "the new claim's status was overwritten"
    assert report.lost_leases == 1
    assert message.attempts.count() == 1, "what happened is still recorded"
