"""Figures about the queue and the deliveries, shared by the admin dashboard,
the metrics view and the health check, so that all three say the same.

Every read is bounded by the open queue or by the hourly statistics, never by
the history of messages or attempts:

* the queue: one grouped count of the open states, over the partial index
  ``smtprelay_msg_open`` (open messages only, however many were sent);
* the oldest due queued message: the smallest ``next_attempt_at`` among the
  queued messages that are due, a range of the ``smtprelay_msg_due`` index;
* the oldest deferred message: the smallest ``created_at`` among the deferred
  ones, one probe of ``smtprelay_msg_open``;
* attempts and messages: sums of the hourly statistics
  (:mod:`django_smtprelay.models.stats`), which grow by the hour and the
  route, not by the message. The all-time sums (the metrics' counters) keep
  the sealed hours' part in the cache for an hour, so a scrape reads the last
  two hours' rows, not years of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Min, Q, Sum

from .delivery.stats import hour_of
from .health import store
from .models import DeliveryAttempt, DeliveryStat, Message, MessageStat
from .models.stats import LATENCY_COLUMNS

OPEN_STATES = (Message.Status.QUEUED, Message.Status.SENDING, Message.Status.DEFERRED)
# Attempts that reached the recipients' server through the route.
SUCCESS_OUTCOMES = (DeliveryAttempt.Outcome.DELIVERED, DeliveryAttempt.Outcome.PARTIAL)
# What MessageStat counts (see its docstring): finished messages, and first deferrals.
COUNTED_STATES = (Message.Status.SENT, Message.Status.DEFERRED, Message.Status.FAILED)


def _open() -> Q:
    # The partial index's own predicate, spelled out: SQLite uses a partial
    # index only when the query repeats its WHERE term.
    return Q(status__in=OPEN_STATES)


def queue_counts() -> dict[str, int]:
    """Messages in each open state (queued, sending, deferred), zeros included."""
    counts = dict(
        Message.objects.filter(_open())
        .order_by()
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    return {str(s): counts.get(s, 0) for s in OPEN_STATES}


@dataclass(frozen=True)
class QueueAges:
    """How long the queue's oldest messages have waited; None when there is none."""

    # Since the oldest due queued message became due: new mail, a requeued
    # message, or a scheduled one whose time came. Mail scheduled for later
    # does not count until its time comes.
    oldest_queued: timedelta | None
    # Since the oldest deferred message was queued: how close it is to its
    # lifetime (MAX_LIFETIME_SECONDS).
    oldest_deferred: timedelta | None


def queue_ages(now: datetime, counts: dict[str, int] | None = None) -> QueueAges:
    """The ages of the oldest due queued and the oldest deferred message.

    ``counts`` (from :func:`queue_counts`) spares the query of a state that is empty.
    """
    queued = deferred = None
    if counts is None or counts.get(Message.Status.QUEUED):
        due = Message.objects.filter(
            status=Message.Status.QUEUED, next_attempt_at__lte=now
        ).aggregate(t=Min("next_attempt_at"))["t"]
        queued = now - due if due else None
    if counts is None or counts.get(Message.Status.DEFERRED):
        first = (
            Message.objects.filter(_open())
            .filter(status=Message.Status.DEFERRED)
            .aggregate(t=Min("created_at"))["t"]
        )
        deferred = now - first if first else None
    return QueueAges(queued, deferred)


@dataclass(frozen=True)
class AttemptFigures:
    """Attempts of one route with one outcome, and how long they took."""

    route: str
    outcome: str
    count: int
    seconds: float
    buckets: tuple[int, ...]  # per LATENCY_BOUNDS, the last one open


def _attempt_sums(where: Q) -> dict[tuple[str, str], tuple[float, ...]]:
    """(route, outcome) -> (count, seconds, *buckets) over the hourly rows ``where``."""
    rows = (
        DeliveryStat.objects.filter(where)
        .order_by()
        .values("route_name", "outcome")
        .annotate(
            n=Sum("count"), seconds=Sum("duration_total"), **{c: Sum(c) for c in LATENCY_COLUMNS}
        )
    )
    return {
        (r["route_name"], r["outcome"]): (
            r["n"],
            r["seconds"] or 0.0,
            *(r[c] or 0 for c in LATENCY_COLUMNS),
        )
        for r in rows
        if r["n"]
    }


def _figures(sums: dict[tuple[str, str], tuple[float, ...]]) -> list[AttemptFigures]:
    return [
        AttemptFigures(route, outcome, int(n), seconds, tuple(int(b) for b in buckets))
        for (route, outcome), (n, seconds, *buckets) in sorted(sums.items())
    ]


def attempt_figures(since: datetime) -> list[AttemptFigures]:
    """Attempts by route and outcome since the start of ``since``'s hour, in
    route and outcome order. One grouped query."""
    return _figures(_attempt_sums(Q(hour__gte=hour_of(since))))


# Hours older than this rarely take more attempts (the worker writes an
# attempt's statistics within a flush of it, a third of a lease at most), so a
# sum over them can be kept for an hour instead of read at every scrape.
SEALED_AFTER = timedelta(hours=2)


def _all_time(
    name: str, now: datetime, read: Callable[[Q], dict[Any, tuple[float, ...]]]
) -> dict[Any, tuple[float, ...]]:
    """``read`` over every hour: the sealed hours' sums from the cache (read
    from the database once an hour), the recent hours' from the database.

    The result only grows: a late write to a sealed hour (a worker that stalled
    for hours) is counted when the next hour's sums are read, never lost."""
    boundary = hour_of(now - SEALED_AFTER)
    cache = store.get_cache()
    key = f"smtprelay:totals:{name}:{boundary:%Y%m%d%H}"
    sealed = cache.get(key)
    if sealed is None:
        sealed = read(Q(hour__lt=boundary))
        cache.set(key, sealed, timeout=SEALED_AFTER.total_seconds())
    totals = dict(sealed)
    for k, recent in read(Q(hour__gte=boundary)).items():
        old = totals.get(k)
        totals[k] = (
            recent if old is None else tuple(a + b for a, b in zip(old, recent, strict=True))
        )
    return totals


def attempt_totals(now: datetime) -> list[AttemptFigures]:
    """Every attempt ever counted, by route and outcome (the metrics' counters):
    two small queries, and once an hour a sum over the older hours."""
    return _figures(_all_time("attempts", now, _attempt_sums))


@dataclass
class RouteActivity:
    """One route's attempts over a span, summed over the outcomes."""

    attempts: int = 0
    successes: int = 0
    seconds: float = 0.0
    buckets: list[int] | None = None

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.attempts if self.attempts else None

    @property
    def mean_latency(self) -> float | None:
        return self.seconds / self.attempts if self.attempts else None


def route_activity(since: datetime) -> dict[str, RouteActivity]:
    """Per route: attempts, successes, seconds and latency buckets since the
    start of ``since``'s hour (the hourly rows' resolution)."""
    result: dict[str, RouteActivity] = {}
    for fig in attempt_figures(since):
        act = result.setdefault(fig.route, RouteActivity(buckets=[0] * len(LATENCY_COLUMNS)))
        act.attempts += fig.count
        act.seconds += fig.seconds
        if fig.outcome in SUCCESS_OUTCOMES:
            act.successes += fig.count
        assert act.buckets is not None
        act.buckets = [a + b for a, b in zip(act.buckets, fig.buckets, strict=True)]
    return result


def _message_sums(where: Q) -> dict[str, tuple[float, ...]]:
    rows = MessageStat.objects.filter(where).order_by().values_list("status")
    return {status: (n,) for status, n in rows.annotate(n=Sum("count")).values_list("status", "n")}


def message_totals(now: datetime) -> dict[str, int]:
    """Every message counted sent, deferred (the first time) or failed; zeros included."""
    totals = _all_time("messages", now, _message_sums)
    return {str(s): int(totals.get(s, (0,))[0]) for s in COUNTED_STATES}
