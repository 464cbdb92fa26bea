"""Claim, route, send: the engine's loop over batches and routes.

A :class:`~.batch.Batch` holds what one claim won and records what happens
to it; a :class:`~.session.RouteSession` sends a group of its parts over one
route. The engine claims batches and hands each route its group, until no
part has a route left to try.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from django.utils import timezone

from ..conf import app_settings
from ..health import RouteHealthService
from ..models import Message
from ..models.messages import Claim
from ..routing import Router, RouteSpec
from ..transports import get_transport
from ..transports.base import Transport
from .batch import Batch
from .results import ResultWriter
from .session import RouteSession
from .state import RunReport


class DeliveryEngine:
    """Delivers due messages. Tests and the ``smtprelay_send`` command drive it directly."""

    def __init__(
        self,
        *,
        router: Router | None = None,
        clock: Callable[[], datetime] = timezone.now,
        batch_size: int | None = None,
        transport_factory: Callable[[RouteSpec], Transport] = get_transport,
        rng: random.Random | None = None,
    ) -> None:
        self._router = router
        self.clock = clock
        self.batch_size = batch_size or app_settings.batch_size
        self.transport_factory = transport_factory
        self.rng = rng or random.Random()  # jitter and load sharing, not security

    def run(
        self, message_ids: Iterable[int] | None = None, *, max_batches: int | None = None
    ) -> RunReport:
        """Claim and deliver batches until nothing (of ``message_ids``) is due."""
        report = RunReport()
        queryset = Message.objects.all()
        if message_ids is not None:
            queryset = queryset.filter(pk__in=list(message_ids))
        writer = ResultWriter(report, self.clock, self.backoff)
        batches = 0
        try:
            while max_batches is None or batches < max_batches:
                claim = queryset.claim(self.batch_size, app_settings.lease, now=self.clock())
                if not claim.ids:
                    break
                batches += 1
                self._deliver(claim, report, writer)
        finally:
            writer.close()
        return report

    def deliver_batch(
        self, token: Claim | object, ids: list[int] | None = None, *, taken_over: Iterable[int] = ()
    ) -> RunReport:
        """Deliver a batch already claimed: a :class:`Claim`, or its token and ids.

        Results are written before this returns.
        """
        claim = token if isinstance(token, Claim) else Claim(token, ids or [], taken_over)  # type: ignore[arg-type]
        report = RunReport()
        writer = ResultWriter(report, self.clock, self.backoff)
        try:
            self._deliver(claim, report, writer)
        finally:
            writer.close()
        return report

    def _deliver(self, claim: Claim, report: RunReport, writer: ResultWriter) -> None:
        health = RouteHealthService(clock=self.clock, rng=self.rng)
        with Batch(claim, report=report, writer=writer, clock=self.clock) as batch:
            batch.load(self._router or Router(), health)
            dead: set[str] = set()  # routes found down: not tried again in this batch
            while groups := batch.by_first_route(dead):
                for route, group in groups:
                    session = RouteSession(
                        batch,
                        route,
                        group,
                        health=health,
                        transport_factory=self.transport_factory,
                        clock=self.clock,
                    )
                    if not session.run():
                        dead.add(route.name)
            batch.flush()

    def backoff(self, attempt: int) -> timedelta:
        """Delay before retry ``attempt`` (1-based): exponential, capped, with jitter."""
        base = app_settings.retry_base.total_seconds()
        cap = app_settings.retry_max.total_seconds()
        delay = min(cap, base * 2 ** max(0, attempt - 1))
        jitter = app_settings.retry_jitter
        if jitter:
            delay *= 1 + self.rng.uniform(-jitter, jitter)
        return timedelta(seconds=max(0.0, delay))
