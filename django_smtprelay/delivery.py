"""The delivery engine: claim, route, send, classify, record. Independent of Celery.

One :class:`DeliveryEngine` run claims due messages in batches (a lease per
batch), sends each batch over one connection per route, moves a message to
the next route at once on a route fault, and writes results in bulk every
``FLUSH_EVERY`` sends (renewing the lease on what is left of the batch).
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .conf import app_settings
from .models import DeliveryAttempt, Message, Recipient
from .replies import Outcome
from .routing import Router, RouteSpec
from .transports import get_transport
from .transports.base import Envelope, Reply, SendResult, Transport, TransportError

logger = logging.getLogger("django_smtprelay.delivery")

Attempt = DeliveryAttempt.Outcome


@dataclass
class RunReport:
    """What one run did; the command prints it and the benchmark reads it."""

    claimed: int = 0
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    attempts: int = 0
    sessions: int = 0
    lost_leases: int = 0

    def merge(self, other: RunReport) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class _Rcpt:
    pk: int
    address: str
    status: str
    smtp_code: int | None = None
    enhanced_code: str = ""
    reply: str = ""
    route_pk: int | None = None
    changed: bool = False


@dataclass
class _Item:
    """One claimed message on its way through the routes."""

    pk: int
    sender: str
    data: bytes
    expires_at: datetime
    attempt_count: int
    routes: list[RouteSpec]
    rcpts: list[_Rcpt]
    open_addresses: list[str] = field(default_factory=list)  # still looking for a route
    last_reply: str = ""
    done: bool = False

    @property
    def by_address(self) -> dict[str, _Rcpt]:
        return {r.address: r for r in self.rcpts}


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
        self.rng = rng or random.Random()  # jitter, not security

    def run(
        self, message_ids: Iterable[int] | None = None, *, max_batches: int | None = None
    ) -> RunReport:
        """Claim and deliver batches until nothing (of ``message_ids``) is due."""
        report = RunReport()
        queryset = Message.objects.all()
        if message_ids is not None:
            queryset = queryset.filter(pk__in=list(message_ids))
        batches = 0
        while max_batches is None or batches < max_batches:
            token, ids = queryset.claim(self.batch_size, app_settings.lease, now=self.clock())
            if not ids:
                break
            batches += 1
            report.merge(self.deliver_batch(token, ids))
        return report

    # -- one batch -----------------------------------------------------------

    def deliver_batch(self, token: uuid.UUID, ids: list[int]) -> RunReport:
        self.report = RunReport(claimed=len(ids))
        self.token = token
        self._attempts: list[DeliveryAttempt] = []
        self._finished: list[_Item] = []
        self._since_flush = 0
        router = self._router or Router()
        items = self._load(token, ids, router)
        dead: set[str] = set()
        while True:
            groups: dict[str, tuple[RouteSpec, list[_Item]]] = {}
            for item in items:
                if item.done:
                    continue
                while item.routes and item.routes[0].name in dead:
                    item.routes.pop(0)
                if not item.open_addresses or not item.routes:
                    self._finish(item)
                    continue
                route = item.routes[0]
                groups.setdefault(route.name, (route, []))[1].append(item)
            if not groups:
                break
            for route, group in groups.values():
                if not self._send_group(route, group):
                    dead.add(route.name)
        self._flush()
        return self.report

    def _load(self, token: uuid.UUID, ids: list[int], router: Router) -> list[_Item]:
        rows = Message.objects.filter(pk__in=ids, lease_token=token).values_list(
            "pk", "from_email", "raw", "expires_at", "attempt_count", "route_hint"
        )
        rcpts: dict[int, list[_Rcpt]] = {}
        for pk, message_id, address, status in Recipient.objects.filter(
            message_id__in=ids
        ).values_list("pk", "message_id", "address", "status"):
            rcpts.setdefault(message_id, []).append(_Rcpt(pk, address, status))
        items = []
        for pk, sender, raw, expires_at, attempts, hint in rows:
            own = rcpts.get(pk, [])
            routes = router.candidates(hint)
            items.append(
                _Item(
                    pk=pk,
                    sender=sender,
                    data=bytes(raw),
                    expires_at=expires_at,
                    attempt_count=attempts,
                    routes=routes,
                    rcpts=own,
                    open_addresses=[
                        r.address
                        for r in own
                        if r.status in (Recipient.Status.PENDING, Recipient.Status.DEFERRED)
                    ],
                    last_reply="" if routes else f"no enabled route matches {hint!r}",
                )
            )
        return items

    def _send_group(self, route: RouteSpec, group: list[_Item]) -> bool:
        """Send ``group`` over one session of ``route``; False if the route is down."""
        transport = self.transport_factory(route)
        try:
            for index, item in enumerate(group):
                if not getattr(transport, "is_open", False):
                    started = time.monotonic()
                    try:
                        transport.open()
                        self.report.sessions += 1
                    except TransportError as exc:
                        for failed in group[index:]:
                            self._route_fault(failed, route, exc, started)
                        return False
                started_at, started = self.clock(), time.monotonic()
                envelope = Envelope(item.sender, list(item.open_addresses), item.data)
                result = transport.send(envelope)
                self._apply(item, route, result, started_at, time.monotonic() - started)
            return True
        finally:
            transport.close()

    def _route_fault(
        self, item: _Item, route: RouteSpec, exc: TransportError, started: float
    ) -> None:
        self._record(
            item,
            route,
            Attempt.ROUTE_FAULT,
            exc.reply,
            self.clock(),
            time.monotonic() - started,
            [
                {"address": a, "outcome": Outcome.ROUTE_FAULT.value, "reply": str(exc.reply)}
                for a in item.open_addresses
            ],
        )
        item.last_reply = f"{route.name}: {exc.verdict.reason}: {exc.reply}"
        item.routes.pop(0)

    def _apply(
        self, item: _Item, route: RouteSpec, result: SendResult, started_at: datetime, took: float
    ) -> None:
        by_address = item.by_address
        still_open: list[str] = []
        per_rcpt = []
        outcomes = set()
        for rr in result.recipients:
            rcpt = by_address[rr.address]
            outcome = rr.verdict.outcome
            outcomes.add(outcome)
            per_rcpt.append(
                {"address": rr.address, "outcome": outcome.value, "reply": str(rr.reply)}
            )
            if outcome == Outcome.ROUTE_FAULT:
                still_open.append(rr.address)
                continue
            rcpt.changed = True
            rcpt.smtp_code = rr.reply.code
            rcpt.enhanced_code = rr.reply.enhanced
            rcpt.route_pk = route.pk
            if outcome == Outcome.DELIVERED:
                rcpt.status = Recipient.Status.DELIVERED
                rcpt.reply = ""
            else:
                rcpt.status = (
                    Recipient.Status.FAILED
                    if outcome == Outcome.PERMANENT
                    else Recipient.Status.DEFERRED
                )
                rcpt.reply = f"{route.name}: {rr.reply}"[:2000]
                item.last_reply = rcpt.reply
        item.open_addresses = still_open
        if still_open:
            item.last_reply = f"{route.name}: {result.verdict.reason}: {result.reply}"
            item.routes.pop(0)
        if outcomes == {Outcome.DELIVERED}:
            overall = Attempt.DELIVERED
        elif Outcome.DELIVERED in outcomes:
            overall = Attempt.PARTIAL
        else:
            overall = Attempt(result.outcome.value)
        self._record(
            item,
            route,
            overall,
            result.reply,
            started_at,
            took,
            per_rcpt,
            possible_duplicate=Outcome.UNCERTAIN in outcomes,
        )
        if not still_open:
            self._finish(item)

    def _record(
        self,
        item: _Item,
        route: RouteSpec,
        outcome: str,
        reply: Reply,
        started_at: datetime,
        took: float,
        recipients: list[dict[str, str]],
        *,
        possible_duplicate: bool = False,
    ) -> None:
        self._attempts.append(
            DeliveryAttempt(
                message_id=item.pk,
                route_id=route.pk,
                route_name=route.name,
                started_at=started_at,
                duration=timedelta(seconds=took),
                outcome=outcome,
                stage=str(reply.stage),
                smtp_code=reply.code,
                enhanced_code=reply.enhanced,
                reply=reply.text[:4000],
                exception=reply.exception,
                recipients=recipients,
                possible_duplicate=possible_duplicate,
            )
        )
        self.report.attempts += 1
        self._since_flush += 1
        if self._since_flush >= app_settings.flush_every:
            self._flush()

    def _finish(self, item: _Item) -> None:
        """Decide the message's state once no route is left to try for it."""
        item.done = True
        for address in item.open_addresses:  # route faults everywhere: retry later
            rcpt = item.by_address[address]
            rcpt.status, rcpt.changed = Recipient.Status.DEFERRED, True
            rcpt.reply = item.last_reply[:2000]
        item.open_addresses = []
        self._finished.append(item)

    # -- writing results -----------------------------------------------------

    def _flush(self) -> None:
        attempts, finished = self._attempts, self._finished
        self._attempts, self._finished, self._since_flush = [], [], 0
        if not attempts and not finished:
            return
        now = self.clock()
        with transaction.atomic():
            DeliveryAttempt.objects.bulk_create(attempts)
            held = set(
                Message.objects.leased_by(self.token)
                .filter(pk__in=[i.pk for i in finished])
                .values_list("pk", flat=True)
            )
            lost = [i.pk for i in finished if i.pk not in held]
            if lost:
                self.report.lost_leases += len(lost)
                logger.warning("Lease lost before results were written for messages %s", lost)
            self._write(now, [i for i in finished if i.pk in held])
            Message.objects.leased_by(self.token).update(lease_expires_at=now + app_settings.lease)

    def _write(self, now: datetime, items: list[_Item]) -> None:
        delivered: dict[tuple[int | None, int | None], list[int]] = {}
        other: list[Recipient] = []
        sent: list[int] = []
        updated: list[Message] = []
        for item in items:
            for r in item.rcpts:
                if not r.changed:
                    continue
                if r.status == Recipient.Status.DELIVERED:
                    delivered.setdefault((r.route_pk, r.smtp_code), []).append(r.pk)
                    continue
                other.append(r)
            state = self._message_state(item, now)
            if state is None:
                sent.append(item.pk)
            else:
                updated.append(state)
        for (route_pk, code), pks in delivered.items():
            Recipient.objects.filter(pk__in=pks).update(
                status=Recipient.Status.DELIVERED,
                route_id=route_pk,
                smtp_code=code,
                enhanced_code="",
                reply="",
                updated_at=now,
            )
        if other:
            Recipient.objects.bulk_update(
                [
                    Recipient(
                        pk=r.pk,
                        status=r.status,
                        smtp_code=r.smtp_code,
                        enhanced_code=r.enhanced_code,
                        reply=r.reply,
                        route_id=r.route_pk,
                        updated_at=now,
                    )
                    for r in other
                ],
                ["status", "smtp_code", "enhanced_code", "reply", "route", "updated_at"],
            )
        if sent:
            self.report.sent += len(sent)
            Message.objects.filter(pk__in=sent).update(
                status=Message.Status.SENT,
                sent_at=now,
                attempt_count=F("attempt_count") + 1,
                last_error="",
                lease_token=None,
                lease_expires_at=None,
            )
        if updated:
            Message.objects.bulk_update(
                updated,
                [
                    "status",
                    "sent_at",
                    "attempt_count",
                    "last_error",
                    "next_attempt_at",
                    "lease_token",
                    "lease_expires_at",
                ],
            )

    def _message_state(self, item: _Item, now: datetime) -> Message | None:
        """The message's new row, or None for the fast path: sent with nothing to say."""
        statuses = {r.status for r in item.rcpts}
        deferred = Recipient.Status.DEFERRED in statuses or Recipient.Status.PENDING in statuses
        if deferred and now >= item.expires_at:
            for r in item.rcpts:
                if r.status in (Recipient.Status.DEFERRED, Recipient.Status.PENDING):
                    r.status, r.changed = Recipient.Status.FAILED, True
                    r.reply = f"gave up after {app_settings.max_lifetime}: {r.reply}"[:2000]
            statuses = {r.status for r in item.rcpts}
            deferred = False
        if not deferred and statuses == {Recipient.Status.DELIVERED}:
            return None  # the common case: one UPDATE for all of them
        attempt_count = item.attempt_count + 1
        row = Message(
            pk=item.pk,
            attempt_count=attempt_count,
            last_error=item.last_reply[:4000],
            lease_token=None,
            lease_expires_at=None,
            next_attempt_at=now,
            sent_at=None,
        )
        if deferred:
            row.status = Message.Status.DEFERRED
            row.next_attempt_at = now + self.backoff(attempt_count)
            self.report.deferred += 1
        elif Recipient.Status.DELIVERED in statuses:
            row.status, row.sent_at = Message.Status.SENT, now
            self.report.sent += 1
        else:
            row.status = Message.Status.FAILED
            row.last_error = row.last_error or "every recipient failed"
            self.report.failed += 1
        return row

    def backoff(self, attempt: int) -> timedelta:
        """Delay before retry ``attempt`` (1-based): exponential, capped, with jitter."""
        base = app_settings.retry_base.total_seconds()
        cap = app_settings.retry_max.total_seconds()
        delay = min(cap, base * 2 ** max(0, attempt - 1))
        jitter = app_settings.retry_jitter
        if jitter:
            delay *= 1 + self.rng.uniform(-jitter, jitter)
        return timedelta(seconds=max(0.0, delay))


def deliver_due(message_ids: Iterable[int] | None = None, **kwargs: object) -> RunReport:
    """Deliver everything due (or just ``message_ids``); the entry point for tasks."""
    return DeliveryEngine(**kwargs).run(message_ids)  # type: ignore[arg-type]
