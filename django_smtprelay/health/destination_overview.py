"""Each destination group's routes at a glance, for the admin: read, never written.

The groups shown are those that recent attempts were routed for (their
``route_choice``), newest first; for each, the routes that were candidates
then, with the live figures of the window from the health cache and the
share of the group's traffic each would get now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from ..models import DeliveryAttempt, Route
from ..routing import RouteSpec
from .per_destination import BUCKET_SECONDS, WINDOW_BUCKETS, DestinationFigures
from .service import RouteHealthService

PER_KIND = ("accepted", "deferred", "throttled", "failed", "faults")
# How many recent routed attempts are read to find the groups (newest first).
RECENT_ATTEMPTS = 2000
# The most groups one page shows.
MAX_GROUPS = 50


@dataclass(frozen=True)
class DestinationRouteRow:
    """One route's standing with one group, now."""

    route_name: str
    priority: int
    weight: int
    share: float
    factor: float
    health: float
    reason: str
    figures: DestinationFigures
    circuit_open_until: datetime | None

    @property
    def percent(self) -> dict[str, str]:
        """Each kind of result's share of the sends, in words ("" with no sends)."""
        rates = {kind: self.figures.rate(kind) for kind in PER_KIND}
        return {k: "" if v is None else f"{v:.0%}" for k, v in rates.items()}

    @property
    def latency_ms(self) -> str:
        latency = self.figures.latency
        return "" if latency is None else f"{latency * 1000:.0f}"


@dataclass(frozen=True)
class DestinationOverview:
    group: str
    rows: list[DestinationRouteRow]
    window_minutes: int = BUCKET_SECONDS * WINDOW_BUCKETS // 60


def destination_overview(now: datetime | None = None) -> list[DestinationOverview]:
    """The groups recent attempts were routed for, each with its candidate routes."""
    now = now or timezone.now()
    recent = (
        DeliveryAttempt.objects.filter(route_choice__isnull=False)
        .order_by("-pk")
        .values_list("route_choice", flat=True)[:RECENT_ATTEMPTS]
    )
    candidates: dict[str, list[str]] = {}
    for choice in recent:
        if not isinstance(choice, dict) or not choice.get("destination"):
            continue
        group = str(choice["destination"])
        if group not in candidates and len(candidates) < MAX_GROUPS:
            candidates[group] = [str(r.get("route", "")) for r in choice.get("routes", [])]
    specs = {r.name: RouteSpec.from_route(r) for r in Route.objects.filter(enabled=True)}
    service = RouteHealthService()
    result = []
    for group, names in candidates.items():
        members = [specs[n] for n in names if n in specs]
        by_priority: dict[int, list[RouteSpec]] = {}
        for spec in members:
            by_priority.setdefault(spec.priority, []).append(spec)
        rows = []
        for priority, peers in sorted(by_priority.items()):
            shares, why = service.destination_shares(peers, group, now, persist=False)
            standing = service.destinations.scores([p.name for p in peers], group, now)
            explained = {r["route"]: r for r in why["routes"]}
            for spec in peers:
                mine = standing[spec.name]
                rows.append(
                    DestinationRouteRow(
                        route_name=spec.name,
                        priority=priority,
                        weight=spec.weight,
                        share=shares[spec.name],
                        factor=mine.factor,
                        health=float(explained[spec.name]["health"]),
                        reason=mine.reason,
                        figures=mine.figures,
                        circuit_open_until=(
                            datetime.fromtimestamp(mine.open_until, tz=now.tzinfo)
                            if mine.open_until is not None
                            else None
                        ),
                    )
                )
        if rows:
            result.append(DestinationOverview(group, rows))
    return result
