"""Health scores: shift traffic among routes of one priority toward the healthier.

Routes of equal priority share traffic. One that answers slowly or fails more
often than its peers (while its circuit stays closed) should carry less,
and win its share back as it recovers. Each result is counted in one-minute
buckets in the cache (sends, successes, total latency in milliseconds); the
score compares a route's last :data:`WINDOW_BUCKETS` minutes with the pooled
figures of its peers:

* success factor: ``(success / peers' success) ** 2`` when it is more than
  two points worse, else 1 (62% against 99% gives 0.39);
* latency factor: ``1.5 * (peers' latency + 50 ms) / (latency + 50 ms)``,
  capped at 1 (so only half again slower than the peers costs anything);
* score = the product, never below :data:`FLOOR`, and 1 for a route with
  fewer than :data:`MIN_SAMPLES` sends or no peer to compare with.

Weights turn scores into shares of traffic, and no route's share goes below
:data:`FLOOR` (5%), so a route keeps getting the traffic that shows it has
recovered. Scores are written to ``RouteHealth`` at most every
:data:`PERSIST_EVERY` seconds per route, for the admin.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from django.core.cache import BaseCache
from django.utils import timezone

from . import store

BUCKET_SECONDS = 60
WINDOW_BUCKETS = 5
MIN_SAMPLES = 10
FLOOR = 0.05
SUCCESS_TOLERANCE = 0.02
LATENCY_TOLERANCE = 1.5
LATENCY_SLACK = 0.05  # seconds; keeps 5 ms vs 15 ms from looking like "3 times slower"
PERSIST_EVERY = 30.0


@dataclass(frozen=True)
class RouteScore:
    """How one route compares with its peers, and why."""

    route_name: str
    score: float
    reason: str
    sends: int = 0
    success: float | None = None
    latency: float | None = None  # mean seconds per send


class HealthScores:
    """Counts results per route and scores routes against their peers."""

    def __init__(self, cache: BaseCache | None = None) -> None:
        self._cache = cache
        self._persisted: dict[str, float] = {}  # route -> monotonic time of last check

    @property
    def cache(self) -> BaseCache:
        return self._cache or store.get_cache()

    def record(
        self, route_name: str, ok: bool, latency: float, now: datetime | None = None
    ) -> None:
        """Count one send: ``ok`` when the relay did its job, ``latency`` in seconds."""
        now = now or timezone.now()
        bucket = int(now.timestamp() // BUCKET_SECONDS)
        timeout = BUCKET_SECONDS * (WINDOW_BUCKETS + 1)
        cache = self.cache
        store.bump(cache, store.key("sc-n", route_name, bucket), 1, timeout)
        if ok:
            store.bump(cache, store.key("sc-ok", route_name, bucket), 1, timeout)
        millis = max(0, round(latency * 1000))
        store.bump(cache, store.key("sc-ms", route_name, bucket), millis, timeout)

    def record_many(
        self,
        route_name: str,
        sends: int,
        ok: int,
        latency_total: float,
        now: datetime | None = None,
    ) -> None:
        """Count ``sends`` sends at once, ``ok`` of them good, ``latency_total`` seconds in all."""
        now = now or timezone.now()
        bucket = int(now.timestamp() // BUCKET_SECONDS)
        timeout = BUCKET_SECONDS * (WINDOW_BUCKETS + 1)
        cache = self.cache
        store.bump(cache, store.key("sc-n", route_name, bucket), sends, timeout)
        if ok:
            store.bump(cache, store.key("sc-ok", route_name, bucket), ok, timeout)
        millis = max(0, round(latency_total * 1000))
        store.bump(cache, store.key("sc-ms", route_name, bucket), millis, timeout)

    def scores(
        self, routes: list[str], now: datetime | None = None, *, persist: bool = True
    ) -> dict[str, RouteScore]:
        """Each route's score against the others in ``routes`` (its peers).

        ``persist=False``: only read (the admin's page views write nothing).
        """
        now = now or timezone.now()
        stats = self._stats(routes, now)
        result = {}
        for name in routes:
            sends, ok, millis = stats[name]
            if sends < MIN_SAMPLES:
                reason = f"{sends} sends in the last {WINDOW_BUCKETS} min: too few to judge"
                result[name] = RouteScore(name, 1.0, reason, sends)
                continue
            success, latency = ok / sends, millis / 1000 / sends
            peers = [stats[p] for p in routes if p != name and stats[p][0] >= MIN_SAMPLES]
            result[name] = _compare(name, sends, success, latency, peers)
        if persist:
            self._persist(result, now)
        return result

    def weights(
        self,
        routes: list[str],
        base: dict[str, int] | None = None,
        now: datetime | None = None,
        scores: dict[str, RouteScore] | None = None,
    ) -> dict[str, float]:
        """Shares of traffic (summing to 1) for routes of one priority.

        ``base`` are configured weights (1 each if absent); a route with base
        0 gets nothing. Every other route keeps at least :data:`FLOOR`.
        """
        scores = scores or self.scores(routes, now)
        base = base or {}
        raw = {r: max(0, base.get(r, 1)) * scores[r].score for r in routes}
        live = [r for r in routes if raw[r] > 0]
        if not live:
            return {r: 1 / len(routes) for r in routes} if routes else {}
        floor = min(FLOOR, 1 / len(live))
        shares = {r: 0.0 for r in routes}
        pinned: set[str] = set()
        while True:
            free = [r for r in live if r not in pinned]
            left = 1 - floor * len(pinned)
            total = sum(raw[r] for r in free)
            for r in free:
                shares[r] = left * raw[r] / total
            low = [r for r in free if shares[r] < floor]
            if not low:
                break
            for r in low:
                shares[r] = floor
                pinned.add(r)
        return shares

    # internal

    def _stats(self, routes: list[str], now: datetime) -> dict[str, tuple[int, int, int]]:
        last = int(now.timestamp() // BUCKET_SECONDS)
        buckets = range(last - WINDOW_BUCKETS + 1, last + 1)
        kinds = ("sc-n", "sc-ok", "sc-ms")
        keys = [store.key(k, r, b) for r in routes for k in kinds for b in buckets]
        values = self.cache.get_many(keys)

        def total(kind: str, route: str) -> int:
            return sum(int(values.get(store.key(kind, route, b), 0)) for b in buckets)

        return {r: (total("sc-n", r), total("sc-ok", r), total("sc-ms", r)) for r in routes}

    def _persist(self, scores: dict[str, RouteScore], now: datetime) -> None:
        """Write scores for the admin, at most every PERSIST_EVERY seconds per route."""
        clock = time.monotonic()
        for name, score in scores.items():
            if clock - self._persisted.get(name, -PERSIST_EVERY) < PERSIST_EVERY:
                continue
            self._persisted[name] = clock
            if self.cache.add(store.key("sc-saved", name), 1, timeout=PERSIST_EVERY):
                store.save_health(name, score=round(score.score, 3), score_reason=score.reason)


def _compare(
    name: str, sends: int, success: float, latency: float, peers: list[tuple[int, int, int]]
) -> RouteScore:
    figures = f"success {success:.0%}, {latency * 1000:.0f} ms"
    if not peers:
        return RouteScore(name, 1.0, f"{figures}; no peer to compare with", sends, success, latency)
    peer_sends = sum(p[0] for p in peers)
    peer_success = sum(p[1] for p in peers) / peer_sends
    peer_latency = sum(p[2] for p in peers) / 1000 / peer_sends
    why = []
    success_factor = 1.0
    if success < peer_success - SUCCESS_TOLERANCE:
        success_factor = (success / peer_success) ** 2
        why.append(f"success {success:.0%} vs peers {peer_success:.0%}")
    latency_factor = min(
        1.0, LATENCY_TOLERANCE * (peer_latency + LATENCY_SLACK) / (latency + LATENCY_SLACK)
    )
    if latency_factor < 1:
        why.append(f"latency {latency * 1000:.0f} ms vs peers {peer_latency * 1000:.0f} ms")
    score = max(FLOOR, success_factor * latency_factor)
    reason = "; ".join(why) if why else f"on par with peers ({figures})"
    return RouteScore(name, round(score, 3), reason, sends, success, latency)
