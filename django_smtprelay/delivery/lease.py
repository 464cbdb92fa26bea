"""Keeping a batch's lease alive while the relay takes its time.

A lease must outlive every wait on a relay, and a single wait (a connect, a
STARTTLS, a reply to the final dot) can take the route's whole timeout; a
session with several slow steps can outlast any lease renewed only between
sends. A small thread renews the lease every quarter of it for as long as
the batch is delivered, whatever the sending thread is waiting for. It only
ever runs one short ``UPDATE``; the sending thread, never blocked by it,
finds out between sends which messages (if any) were lost anyway
(:meth:`Batch.check_lease`).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db import DatabaseError, connections

from ..models import Message

logger = logging.getLogger("django_smtprelay.delivery")


class LeaseHeartbeat:
    """Renews the lease ``token`` every ``lease / 4`` until :meth:`stop`."""

    def __init__(self, token: uuid.UUID, lease: timedelta, clock: Callable[[], datetime]) -> None:
        self.token, self.lease, self.clock = token, lease, clock
        self.renewals = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"smtprelay-lease-{token}", daemon=True
        )

    def start(self) -> LeaseHeartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop renewing. Waits briefly: a renewal under way finishes on its own."""
        self._stopped.set()
        self._thread.join(timeout=1.0)

    def _run(self) -> None:
        interval = self.lease.total_seconds() / 4
        try:
            while not self._stopped.wait(interval):
                self.renew()
        finally:
            # The thread's own connection (Django's are per thread).
            connections.close_all()

    def renew(self) -> int:
        """Extend the lease on the rows it still holds; how many it held."""
        try:
            held = Message.objects.leased_by(self.token).update(
                lease_expires_at=self.clock() + self.lease
            )
        except DatabaseError:
            # The sending thread meets the same database and handles it; a
            # missed renewal only brings the lease's end closer.
            logger.warning("Could not renew lease %s", self.token, exc_info=True)
            return 0
        self.renewals += 1
        return held
