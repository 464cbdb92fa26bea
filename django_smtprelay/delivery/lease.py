"""Keeping a batch's lease alive while the relay takes its time, and no longer.

A lease must outlive every wait on a relay, and a single wait (a connect, a
STARTTLS, a reply to the final dot) can take the route's whole timeout, so a
lease renewed only between sends can run out mid-send. A small thread renews
it every quarter of the lease, but only while the sending thread is within
the time its current step may take (:meth:`LeaseHeartbeat.expect`): a relay
that holds a session open for ever (a tarpit) lets the lease run out, and
another worker takes the messages (flagged as possible duplicates).

The sending thread finds out between sends which messages, if any, were
lost anyway (:meth:`Batch.check_lease`), and renews the lease itself when the
heartbeat's renewals have been failing.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db import DatabaseError, connections, transaction

from ..models import Message

logger = logging.getLogger("django_smtprelay.delivery")


def renew(token: uuid.UUID, lease: timedelta, now: datetime) -> int:
    """Extend the lease ``token`` on the rows it still holds; how many were extended.

    Rows that a result write has locked are skipped (they are being finished),
    so a renewal never waits for, or deadlocks with, the batch's own writes.
    """
    held = Message.objects.leased_by(token)
    with transaction.atomic(using=held.db):
        locked = held.select_for_update(skip_locked=True).order_by().values("pk")
        return Message.objects.filter(pk__in=locked).update(lease_expires_at=now + lease)


class LeaseHeartbeat:
    """Renews the lease ``token`` every ``lease / 4`` while the batch makes progress."""

    def __init__(self, token: uuid.UUID, lease: timedelta, clock: Callable[[], datetime]) -> None:
        self.token, self.lease, self.clock = token, lease, clock
        self.renewals = 0
        now = time.monotonic()
        self.renewed_at = now  # the claim set the lease
        self._busy_until = now + lease.total_seconds()  # loading the batch
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"smtprelay-lease-{token}", daemon=True
        )

    def start(self) -> LeaseHeartbeat:
        self._thread.start()
        return self

    def expect(self, seconds: float) -> None:
        """The sending thread starts a step that may take up to ``seconds``."""
        self._busy_until = time.monotonic() + seconds

    def stop(self) -> None:
        """Stop renewing. Waits briefly: a renewal under way finishes on its own."""
        self._stopped.set()
        self._thread.join(timeout=1.0)

    def _run(self) -> None:
        interval = self.lease.total_seconds() / 4
        try:
            while not self._stopped.wait(interval):
                if time.monotonic() > self._busy_until:
                    # The sending thread is stuck past what its step may take.
                    continue
                try:
                    renew(self.token, self.lease, self.clock())
                except DatabaseError:
                    # A missed renewal only brings the lease's end closer; the
                    # sending thread renews itself when renewals keep failing.
                    logger.warning("Could not renew lease %s", self.token, exc_info=True)
                    connections[Message.objects.db].close_if_unusable_or_obsolete()
                    continue
                self.renewals += 1
                self.renewed_at = time.monotonic()
        finally:
            # The thread's own connection (Django's are per thread).
            connections.close_all()
