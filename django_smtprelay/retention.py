"""Retention: the bodies and attempts of old finished messages are purged.

What goes: a message's content (its bytes) and its delivery attempts, once
the message is final (sent, failed or cancelled) and was queued more than
``RETENTION_DAYS`` ago. What stays: the message row with its final state and
last error, its recipients, and the statistics, so counts and the admin's
history remain. A message that is queued, deferred or being sent is never
touched.

The work goes in chunks of ``CHUNK`` messages, one short transaction each, so
no statement grows with the backlog and no lock is held for long. Messages
already purged have no content row left, so each run reads only what is
still to purge.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connections, transaction
from django.db.models import Q
from django.utils import timezone

from .conf import app_settings
from .models import DeliveryAttempt, Message, MessageContent
from .models.bulk import ids_in
from .models.messages import MessageQuerySet

# Messages per transaction: one bounded DELETE each for attempts and contents.
CHUNK = 1000


@dataclass
class PurgeReport:
    """What one purge removed (or, with ``dry_run``, would remove)."""

    cutoff: datetime | None
    messages: int = 0
    attempts: int = 0


def purgeable(cutoff: datetime) -> MessageQuerySet:
    """Final messages that still have a body and whose last activity is before ``cutoff``.

    Not only queued before it: a message scheduled far ahead, or sent again
    by an operator, finishes long after it was queued, and its attempts are
    kept for the whole retention from then. ``next_attempt_at`` is when it
    was last due (queued, scheduled, retried or sent again), ``sent_at`` when
    it was sent.
    """
    return Message.objects.filter(
        Q(sent_at__isnull=True) | Q(sent_at__lt=cutoff),
        status__in=Message.FINAL_STATES,
        created_at__lt=cutoff,
        next_attempt_at__lt=cutoff,
        content__isnull=False,
    )


def purge(*, now: datetime | None = None, dry_run: bool = False, chunk: int = CHUNK) -> PurgeReport:
    """Purge the content and attempts of finished messages older than the retention."""
    retention = app_settings.retention
    if retention is None:
        return PurgeReport(cutoff=None)
    cutoff = (now or timezone.now()) - retention
    report = PurgeReport(cutoff=cutoff)
    if dry_run:
        report.messages = purgeable(cutoff).count()
        report.attempts = DeliveryAttempt.objects.filter(
            message__in=purgeable(cutoff).values("pk")
        ).count()
        return report
    while True:
        with transaction.atomic():
            ids = _take(cutoff, chunk)
            if not ids:
                return report
            # Nothing refers to these rows: each is one DELETE ... WHERE message_id IN (...).
            report.attempts += DeliveryAttempt.objects.filter(ids_in(ids, "message_id")).delete()[0]
            report.messages += MessageContent.objects.filter(ids_in(ids, "message_id")).delete()[0]


def _take(cutoff: datetime, chunk: int) -> list[int]:
    """The next chunk of ids to purge, locked where the database can, so that
    a message requeued at the same moment waits for (or is skipped by) this
    transaction and never loses its body while it is queued again."""
    qs = purgeable(cutoff).order_by("pk")
    if connections[qs.db].features.has_select_for_update:
        # Only the message rows: the content join is not locked (nor lockable
        # through a nullable side on PostgreSQL).
        qs = qs.select_for_update(of=("self",), skip_locked=True)
    return list(qs.values_list("pk", flat=True)[:chunk])
