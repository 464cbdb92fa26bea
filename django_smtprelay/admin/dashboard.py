"""The dashboard on the app's admin index: the queue, the last day and month, routes, errors.

Every figure comes from a bounded read: the queue's from
:mod:`django_smtprelay.figures` (which the metrics view and the health check
share), the rest from the hourly statistics (see
:mod:`django_smtprelay.models.stats`). Nothing here scans the
messages or the attempts, so the page costs the same with ten messages or
millions, and its number of queries does not grow with the history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any
from urllib.parse import urlencode

from django.db.models import F, Max, Min, OuterRef, Subquery, Sum
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from ..conf import app_settings
from ..delivery.stats import hour_of
from ..figures import OPEN_STATES, queue_ages, queue_counts, route_activity
from ..health import RouteHealthService
from ..models import (
    DeliveryAttempt,
    ErrorStat,
    Message,
    MessageStat,
    Route,
    RouteHealth,
    SenderDomain,
)
from ..models.stats import LATENCY_BOUNDS
from ..routing import DJANGO_SETTINGS_ROUTE
from .charts import Slot, bar_chart

TOP_ERRORS = 10
_BUCKET_LABELS = [f"< {b:g} s" for b in LATENCY_BOUNDS] + [f"≥ {LATENCY_BOUNDS[-1]:g} s"]


@dataclass
class RouteRow:
    """One route as the dashboard shows it."""

    name: str
    enabled: bool
    priority: int
    url: str = ""
    circuit: str = RouteHealth.State.CLOSED
    circuit_label: str = ""
    circuit_reason: str = ""
    score: float | None = None
    score_reason: str = ""
    attempts: int = 0
    success_rate: float | None = None
    mean_latency: float | None = None
    median_latency: str = ""
    last_error: dict[str, Any] | None = None


@dataclass
class Dashboard:
    now: datetime
    queue: list[tuple[str, str, int]] = field(default_factory=list)  # status, label, count
    oldest_queued: timedelta | None = None
    oldest_deferred: timedelta | None = None
    hourly_chart: str = ""
    daily_chart: str = ""
    totals_24h: dict[str, int] = field(default_factory=dict)
    routes: list[RouteRow] = field(default_factory=list)
    top_errors: list[dict[str, Any]] = field(default_factory=list)
    failing_domains: list[SenderDomain] = field(default_factory=list)


def build_dashboard(now: datetime | None = None) -> Dashboard:
    """Everything the dashboard shows, read in a fixed number of queries (plus one
    cache read per route for its circuit)."""
    now = now or timezone.now()
    dash = Dashboard(now=now)
    _charts(dash)
    _queue(dash)
    _routes(dash)
    dash.top_errors = top_errors(now - timedelta(hours=24))
    dash.failing_domains = list(
        SenderDomain.objects.filter(
            verdict__in=(SenderDomain.Verdict.FAILING, SenderDomain.Verdict.UNKNOWN)
        ).only("domain", "verdict", "checked_at")
    )
    return dash


def _queue(dash: Dashboard) -> None:
    # Only the open states are counted in the table (a range of a partial
    # index): the finished ones, which grow without bound, come from the last
    # 24 hours' statistics (read by _charts).
    counts = queue_counts()
    dash.queue = [(s.value, s.label, counts[s.value]) for s in OPEN_STATES] + [
        (s.value, _("%(state)s (24 h)") % {"state": s.label}, dash.totals_24h.get(s.value, 0))
        for s in (Message.Status.SENT, Message.Status.FAILED)
    ]
    ages = queue_ages(dash.now, counts)
    dash.oldest_queued, dash.oldest_deferred = ages.oldest_queued, ages.oldest_deferred


def _charts(dash: Dashboard) -> None:
    this_hour = hour_of(dash.now.astimezone(dt_timezone.utc))
    first_day = this_hour.replace(hour=0) - timedelta(days=29)
    hours = [this_hour - timedelta(hours=h) for h in range(23, -1, -1)]
    days = [first_day + timedelta(days=d) for d in range(30)]
    by_hour: dict[datetime, dict[str, int]] = {h: {} for h in hours}
    by_day: dict[datetime, dict[str, int]] = {d: {} for d in days}
    rows = MessageStat.objects.filter(hour__gte=first_day).values_list("hour", "status", "count")
    for hour, status, count in rows:
        hour = hour.astimezone(dt_timezone.utc)
        day = by_day.get(hour.replace(hour=0))
        if day is not None:
            day[status] = day.get(status, 0) + count
        slot = by_hour.get(hour)
        if slot is not None:
            slot[status] = slot.get(status, 0) + count
            dash.totals_24h[status] = dash.totals_24h.get(status, 0) + count
    dash.hourly_chart = bar_chart(
        [Slot(f"{h:%H}", f"{h:%Y-%m-%d %H:00} UTC", by_hour[h]) for h in hours],
        "Messages per hour, last 24 hours (UTC)",
        label_every=3,
    )
    dash.daily_chart = bar_chart(
        [Slot(f"{d:%d}", f"{d:%Y-%m-%d}", by_day[d]) for d in days],
        "Messages per day, last 30 days (UTC)",
        label_every=3,
    )


def _routes(dash: Dashboard) -> None:
    since_day = dash.now - timedelta(hours=24)
    recent_errors = ErrorStat.objects.filter(hour__gte=hour_of(since_day)).order_by("-last_seen")
    last_error = recent_errors.filter(route_name=OuterRef("name"))
    routes = list(
        Route.objects.order_by("priority", "name")
        .annotate(
            error_text=Subquery(last_error.values("text")[:1]),
            error_code=Subquery(last_error.values("smtp_code")[:1]),
            error_enhanced=Subquery(last_error.values("enhanced_code")[:1]),
            error_seen=Subquery(last_error.values("last_seen")[:1]),
        )
        .values("pk", "name", "enabled", "priority", *_ERROR_FIELDS)
    )
    if not routes and app_settings.use_django_email_settings:
        # Without Route rows the site's EMAIL_* settings are the one route.
        routes = [{"pk": None, "name": DJANGO_SETTINGS_ROUTE, "enabled": True, "priority": 0}]
        row = recent_errors.filter(route_name=DJANGO_SETTINGS_ROUTE).values(
            error_text=F("text"),
            error_code=F("smtp_code"),
            error_enhanced=F("enhanced_code"),
            error_seen=F("last_seen"),
        )
        routes[0].update(row.first() or {})
    health = {
        h.route_name: h
        for h in RouteHealth.objects.filter(route_name__in=[r["name"] for r in routes])
    }
    service = RouteHealthService()
    # Since the start of the previous hour: the hourly rows' resolution.
    recent = route_activity(dash.now - timedelta(hours=1))
    for r in routes:
        row = RouteRow(name=r["name"], enabled=r["enabled"], priority=r["priority"])
        if r["pk"]:
            row.url = reverse("admin:django_smtprelay_route_change", args=[r["pk"]])
        state = service.breaker(row.name).state()
        row.circuit = state.state
        row.circuit_label = RouteHealth.State(state.state).label
        row.circuit_reason = state.reason
        if h := health.get(row.name):
            row.score, row.score_reason = h.score, h.score_reason
        if act := recent.get(row.name):
            row.attempts = act.attempts
            row.success_rate = act.success_rate
            row.mean_latency = act.mean_latency
            row.median_latency = _median_bucket(act.buckets or [], act.attempts)
        if r.get("error_seen"):
            row.last_error = {
                "text": r["error_text"],
                "code": r["error_code"] or "",
                "enhanced": r["error_enhanced"],
                "seen": r["error_seen"],
            }
        dash.routes.append(row)


_ERROR_FIELDS = ("error_text", "error_code", "error_enhanced", "error_seen")


def _median_bucket(buckets: list[int], total: int) -> str:
    """The latency bucket that holds the median attempt."""
    seen = 0
    for label, n in zip(_BUCKET_LABELS, buckets, strict=True):
        seen += n
        if seen * 2 >= total:
            return label
    return _BUCKET_LABELS[-1]


def top_errors(since: datetime, limit: int = TOP_ERRORS) -> list[dict[str, Any]]:
    """The most frequent failures since ``since``, by route, outcome, codes and
    normalised reply, each with a link to the attempts behind it."""
    start = hour_of(since)
    rows = (
        ErrorStat.objects.filter(hour__gte=start)
        .order_by()
        .values("route_name", "outcome", "smtp_code", "enhanced_code", "text")
        .annotate(n=Sum("count"), last=Max("last_seen"), example=Min("example_message_id"))
        .order_by("-n", "route_name")[:limit]
    )
    changelist = reverse("admin:django_smtprelay_deliveryattempt_changelist")
    labels = dict(DeliveryAttempt.Outcome.choices)
    errors = []
    for row in rows:
        query: dict[str, Any] = {
            # __exact, as the list filters spell them, so the sidebar shows them chosen.
            "route_name__exact": row["route_name"],
            "outcome__exact": row["outcome"],
            "started_at__gte": start.isoformat(),
        }
        # A partial delivery's attempt row carries the accepted reply's code,
        # not the refusal's: route, outcome and time find it.
        if row["outcome"] != DeliveryAttempt.Outcome.PARTIAL:
            if row["smtp_code"]:
                query["smtp_code"] = row["smtp_code"]
            else:
                query["smtp_code__isnull"] = "1"
            if row["enhanced_code"]:
                query["enhanced_code"] = row["enhanced_code"]
        url = f"{changelist}?{urlencode(query)}"
        errors.append({**row, "outcome_label": labels.get(row["outcome"], ""), "url": url})
    return errors
