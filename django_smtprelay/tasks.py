"""Celery tasks: thin, idempotent wrappers over :mod:`django_smtprelay.delivery`.

Tasks take message ids, never objects, and acknowledge late: a task that is
delivered twice claims nothing the second time (the lease protocol decides who
sends), and one lost with its worker is picked up by ``sweep`` once the lease
expires. Schedule ``sweep`` with celery beat, every minute::

    CELERY_BEAT_SCHEDULE = {
        "smtprelay-sweep": {"task": "django_smtprelay.sweep", "schedule": 60.0},
    }
"""

from __future__ import annotations

from celery import shared_task

from . import retention
from .delivery import DeliveryEngine


@shared_task(name="django_smtprelay.deliver", acks_late=True, ignore_result=True)
def deliver(message_ids: list[int]) -> int:
    """Deliver the given queued messages, if they are still due; return how many were sent."""
    return DeliveryEngine().run(message_ids).sent


@shared_task(name="django_smtprelay.sweep", acks_late=True, ignore_result=True)
def sweep(max_batches: int = 50) -> int:
    """Deliver what is due: deferred messages whose time came, expired leases, missed publishes."""
    return DeliveryEngine().run(max_batches=max_batches).sent


@shared_task(name="django_smtprelay.purge", acks_late=True, ignore_result=True)
def purge() -> int:
    """Purge bodies and attempts of finished messages older than ``RETENTION_DAYS``;
    return how many messages were purged. Schedule it hourly or daily with beat."""
    return retention.purge().messages
