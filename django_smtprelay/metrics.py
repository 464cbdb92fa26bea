"""The queue, the deliveries and the routes as Prometheus metrics.

:class:`SMTPRelayCollector` reads everything at each scrape from the
database and the route health cache (the same reads as the admin's
dashboard and *Route health* page), and keeps nothing in the process: the
counters are sums of the hourly statistics, so they survive restarts and
agree between web processes. It needs ``prometheus_client``
(``pip install "django-smtprelay[metrics]"``); :mod:`django_smtprelay.views`
serves it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from django.utils import timezone
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from .figures import attempt_totals, message_totals, queue_ages, queue_counts
from .health.overview import route_overview
from .models.health import RouteHealth
from .models.stats import LATENCY_BOUNDS

_BOUNDS = [f"{b:g}" for b in LATENCY_BOUNDS] + ["+Inf"]


class SMTPRelayCollector(Collector):
    """Collects the metrics afresh at each scrape; ``now`` is for tests."""

    def __init__(self, now: datetime | None = None) -> None:
        self._now = now

    def collect(self) -> Iterator[Metric]:
        now = self._now or timezone.now()
        yield from self._queue(now)
        yield from self._deliveries(now)
        yield from self._routes(now)

    def _queue(self, now: datetime) -> Iterator[Metric]:
        counts = queue_counts()
        queue = GaugeMetricFamily(
            "smtprelay_queue_messages",
            "Messages in the queue by state (queued, sending, deferred), now.",
            labels=["status"],
        )
        for status, count in counts.items():
            queue.add_metric([status], count)
        yield queue
        ages = queue_ages(now, counts)
        yield GaugeMetricFamily(
            "smtprelay_oldest_queued_seconds",
            "Seconds the oldest due queued message has waited for a worker "
            "(0 when none waits; scheduled mail counts from its time).",
            value=ages.oldest_queued.total_seconds() if ages.oldest_queued else 0,
        )
        yield GaugeMetricFamily(
            "smtprelay_oldest_deferred_seconds",
            "Seconds since the oldest deferred message was queued (0 when none is deferred); "
            "it fails at SMTPRELAY MAX_LIFETIME_SECONDS.",
            value=ages.oldest_deferred.total_seconds() if ages.oldest_deferred else 0,
        )

    def _deliveries(self, now: datetime) -> Iterator[Metric]:
        attempts = CounterMetricFamily(
            "smtprelay_attempts",
            "Delivery attempts (one message over one route) by route and outcome: "
            "delivered, partial, transient, permanent, route_fault, uncertain. "
            "From the hourly statistics, so it survives restarts.",
            labels=["route", "outcome"],
        )
        per_route: dict[str, tuple[list[int], float]] = {}
        for fig in attempt_totals(now):
            attempts.add_metric([fig.route, fig.outcome], fig.count)
            buckets, seconds = per_route.get(fig.route, ([0] * len(_BOUNDS), 0.0))
            per_route[fig.route] = (
                [a + b for a, b in zip(buckets, fig.buckets, strict=True)],
                seconds + fig.seconds,
            )
        yield attempts
        duration = HistogramMetricFamily(
            "smtprelay_attempt_duration_seconds",
            "How long delivery attempts took, by route (every outcome).",
            labels=["route"],
        )
        for route, (buckets, seconds) in per_route.items():
            cumulative, running = [], 0
            for bound, n in zip(_BOUNDS, buckets, strict=True):
                running += n
                cumulative.append((bound, running))
            duration.add_metric([route], cumulative, seconds)
        yield duration
        messages = CounterMetricFamily(
            "smtprelay_messages",
            "Messages by what became of them: sent, failed, or deferred for the first "
            "time (a message deferred three times counts once). Cancelled ones are not "
            "counted.",
            labels=["status"],
        )
        for status, count in message_totals(now).items():
            messages.add_metric([status], count)
        yield messages

    def _routes(self, now: datetime) -> Iterator[Metric]:
        circuit = GaugeMetricFamily(
            "smtprelay_route_circuit_open",
            "1 while the route's circuit breaker is open or half-open (not taking its "
            "traffic), 0 while it is closed.",
            labels=["route"],
        )
        score = GaugeMetricFamily(
            "smtprelay_route_score",
            "The route's health score (0 to 1) against the routes of its priority: "
            "its share of their traffic follows it.",
            labels=["route"],
        )
        enabled = GaugeMetricFamily(
            "smtprelay_route_enabled",
            "1 if the route takes traffic (enabled), 0 if not.",
            labels=["route"],
        )
        for route in route_overview(now):
            circuit.add_metric([route.name], int(route.state != RouteHealth.State.CLOSED))
            score.add_metric([route.name], route.score.score)
            enabled.add_metric([route.name], int(route.enabled))
        yield circuit
        yield score
        yield enabled


def exposition(accept: str | None, now: datetime | None = None) -> tuple[bytes, str]:
    """The metrics in the format ``accept`` asks for (Prometheus text by
    default, OpenMetrics when asked), and its content type."""
    from prometheus_client.exposition import choose_encoder

    # A registry per scrape: nothing is kept in the process between scrapes.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SMTPRelayCollector(now))
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
