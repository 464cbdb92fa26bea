"""A check of the mail queue for django-health-check (4.0 or later).

A site lists it among its health checks; no ``INSTALLED_APPS`` entry is needed::

    from health_check.views import HealthCheckView

    path("ht/", HealthCheckView.as_view(checks=[
        "health_check.checks.Database",
        "django_smtprelay.contrib.health_check.MailQueue",
    ])),

It fails (the view answers 500) when a due queued message has waited longer
than ``SMTPRELAY["HEALTH_CHECK_QUEUED_SECONDS"]`` (no worker is taking the
queue), or when no enabled route can take mail (every circuit open). It reads
what the dashboard and the metrics read (:mod:`django_smtprelay.figures`,
:func:`django_smtprelay.health.overview.route_overview`) and writes nothing.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from asgiref.sync import sync_to_async
from django.db import DatabaseError
from django.utils import timezone

try:
    from health_check.base import HealthCheck
    from health_check.exceptions import ServiceUnavailable
except ImportError as exc:  # not installed, or django-health-check 3.x (another plugin API)
    raise ImportError(
        "django_smtprelay.contrib.health_check needs django-health-check 4.0 or later: "
        'pip install "django-health-check>=4"',
        name=exc.name,
    ) from exc

from ..conf import app_settings
from ..figures import queue_ages
from ..health.overview import route_overview
from ..models.health import RouteHealth


@dataclasses.dataclass
class MailQueue(HealthCheck):
    """The queue is being delivered, and some enabled route can take mail.

    Args:
        max_queued_age: how long a due queued message may wait; by default
            ``SMTPRELAY["HEALTH_CHECK_QUEUED_SECONDS"]``.
    """

    max_queued_age: timedelta | None = None

    async def run(self) -> None:
        # In the request's thread (thread_sensitive): the ORM's connection is
        # the request's own, closed with it.
        problems = await sync_to_async(self.problems)()
        if problems:
            raise ServiceUnavailable("; ".join(problems))

    def problems(self, now: datetime | None = None) -> list[str]:
        """What is wrong with the mail queue now; empty when it is healthy."""
        now = now or timezone.now()
        limit = self.max_queued_age or app_settings.health_check_queued
        try:
            waited = queue_ages(now).oldest_queued
            routes = [r for r in route_overview(now) if r.enabled]
        except DatabaseError as exc:
            raise ServiceUnavailable(
                f"the mail queue could not be read: {type(exc).__name__}"
            ) from exc
        problems = []
        if waited is not None and waited > limit:
            problems.append(
                f"a due message has waited {waited.total_seconds():.0f} s for a worker "
                f"(limit {limit.total_seconds():.0f} s): are the workers (or smtprelay_send) "
                "and beat running?"
            )
        if not routes:
            problems.append("no route is enabled: queued mail cannot be sent")
        elif all(r.state != RouteHealth.State.CLOSED for r in routes):
            names = ", ".join(f"{r.name} ({r.circuit.reason or r.state})" for r in routes)
            problems.append(f"every enabled route's circuit is open: {names}")
        return problems
