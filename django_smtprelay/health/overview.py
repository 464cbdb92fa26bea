"""Every route's health at a glance, for the admin: read from the cache and rows, never written.

A route that has never failed has no ``RouteHealth`` row, yet an operator
asking "is any relay down?" needs to see it (closed, score 1, its limits)
next to the one that is. The list is every route, enabled or not, the
route made of Django's ``EMAIL_*`` settings when no route is enabled, and
any route name that still has a health row (a route since renamed or
deleted).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.core.cache.backends.locmem import LocMemCache
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from ..conf import app_settings
from ..models import Route, RouteHealth
from ..routing import RouteSpec
from . import store
from .circuit import BreakerState, read_states
from .ratelimit import RateLimiter, RateLimits, RateUsage
from .score import MIN_SAMPLES, HealthScores, RouteScore
from .service import _describe

State = RouteHealth.State


@dataclass(frozen=True)
class RouteOverview:
    """One route's circuit, score and rate limits, now."""

    name: str
    route: Route | None  # None: the EMAIL_* settings route, or a name with only a health row
    enabled: bool  # takes traffic
    note: str
    circuit: BreakerState
    circuit_text: str
    score: RouteScore
    score_saved_at: datetime | None  # the score is the last one saved, not live
    limits: str
    usage: str
    slowed: str
    health: RouteHealth | None

    @property
    def state(self) -> str:
        return str(self.circuit.state)


def cache_is_per_process() -> bool:
    """Whether the health cache is this process's memory, which workers do not share."""
    return isinstance(store.get_cache(), LocMemCache)


def route_overview(now: datetime | None = None) -> list[RouteOverview]:
    """Every route, in failover order (enabled first, then by priority and name)."""
    now = now or timezone.now()
    routes = list(Route.objects.order_by("-enabled", "priority", "name"))
    rows = {row.route_name: row for row in RouteHealth.objects.all()}
    entries: list[tuple[str, Route | None, RouteSpec | None, str]] = [
        (r.name, r, RouteSpec.from_route(r), "") for r in routes
    ]
    if not any(r.enabled for r in routes) and app_settings.use_django_email_settings:
        try:
            spec = RouteSpec.from_django_settings()
        except ImproperlyConfigured as exc:
            entries.append(("django-settings", None, None, f"Django's settings: {exc}"))
        else:
            note = "Django's EMAIL_* settings: used while no route is enabled"
            entries.append((spec.name, None, spec, note))
    known = {name for name, *_ in entries}
    for name in sorted(set(rows) - known):
        entries.append((name, None, None, "no route of this name (renamed or deleted?)"))
    circuits = read_states({name: rows.get(name) for name, *_ in entries})
    scores = _scores(entries, now)
    result = []
    for name, route, spec, note in entries:
        row = rows.get(name)
        score, saved_at = scores[name], None
        if score.sends < MIN_SAMPLES and row is not None and row.score_reason:
            score = RouteScore(name, row.score, row.score_reason)
            saved_at = row.updated_at
        limiter = RateLimiter(name, _limits(spec, name))
        result.append(
            RouteOverview(
                name=name,
                route=route,
                enabled=route.enabled if route is not None else spec is not None,
                note=note,
                circuit=circuits[name],
                circuit_text=_circuit_text(circuits[name], now)
                or ("" if route is None or route.enabled else "the route is disabled"),
                score=score,
                score_saved_at=saved_at,
                limits=_describe(limiter.limits),
                usage=_usage(limiter.limits, limiter.usage(now)),
                slowed=_slowed(limiter, now),
                health=row,
            )
        )
    return result


def _scores(
    entries: list[tuple[str, Route | None, RouteSpec | None, str]], now: datetime
) -> dict[str, RouteScore]:
    """Scores as the engine makes them: enabled routes against their priority's peers."""
    groups: dict[object, list[str]] = defaultdict(list)
    for name, route, spec, _note in entries:
        if spec is not None and (route is None or route.enabled):
            groups[spec.priority].append(name)
        else:
            groups[name].append(name)  # alone: it takes no traffic
    scores = HealthScores()
    result: dict[str, RouteScore] = {}
    for names in groups.values():
        result.update(scores.scores(names, now, persist=False))
    return result


def _limits(spec: RouteSpec | None, name: str) -> RateLimits:
    if spec is not None and any(
        (spec.max_per_second, spec.max_per_minute, spec.max_per_hour, spec.max_connections)
    ):
        return RateLimits(
            spec.max_per_second, spec.max_per_minute, spec.max_per_hour, spec.max_connections
        )
    return RateLimits.for_route(name)


def _circuit_text(st: BreakerState, now: datetime) -> str:
    if st.state == State.CLOSED:
        faults = st.consecutive_faults
        tail = (
            f"; {faults} route fault{'s' if faults != 1 else ''} in a row so far" if faults else ""
        )
        return (st.reason + tail) if st.reason else tail[2:]
    if st.state == State.OPEN and st.until is not None and st.until > now:
        return f"not sending until {_clock(st.until)}: {st.reason}"
    return f"cool-down over: the next send probes it ({st.reason})"


def _usage(limits: RateLimits, usage: RateUsage) -> str:
    parts = [f"{usage.this_minute} sent this minute"]
    if limits.per_second is not None:
        parts.append(f"{usage.this_second}/{limits.per_second} this second")
    if limits.per_minute is not None:
        parts[0] = f"{usage.this_minute}/{limits.per_minute} this minute"
    if limits.per_hour is not None:
        parts.append(f"{usage.this_hour}/{limits.per_hour} this hour")
    if limits.max_connections is not None:
        parts.append(f"{usage.connections}/{limits.max_connections} connections open")
    return ", ".join(parts)


def _slowed(limiter: RateLimiter, now: datetime) -> str:
    slow = limiter.slowed(now)
    if slow is None:
        return ""
    until = store.from_timestamp(slow.until)
    assert until is not None
    effective = _describe(limiter.effective(now))
    return f"slowed x{slow.factor:g} ({effective}) until {_clock(until)} after: {slow.reason}"


def _clock(moment: datetime) -> str:
    return f"{timezone.localtime(moment):%H:%M:%S %Z}"
