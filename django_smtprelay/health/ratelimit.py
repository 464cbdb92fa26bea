"""Rate limits per route, shared by every worker through the cache.

Relays cap how fast an account may send (messages per second, minute or
hour) and how many sessions it may hold; going over earns 421s and 4.7.x
deferrals, and eventually a worse reputation. Limits are fixed-window
counters: a send takes one unit of every window it is limited by with an
atomic ``incr``, and gives them back if any window is full, so no window
ever grants more than its limit whatever the number of workers.

Concurrent sessions take one of ``max_connections`` slot keys with ``add``.
Each slot expires after ``connection_ttl``, so a worker that dies in a
session frees its slot by itself; a session that lasts longer must
:meth:`RateLimiter.renew` its slot.

After a throttling reply :meth:`RateLimiter.slow_down` multiplies the route's
limits by a factor for a while. A route with no rate limit configured gets a
temporary per-minute limit instead: the factor times the number of sends seen
in the last full minute (or the current one, if higher), at least 1 a minute.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timedelta

from django.core.cache import BaseCache
from django.utils import timezone

from ..conf import app_settings
from . import store

# A slow-down is compounded (factor applied again) only when the route still
# throttles this long after the last compounding; replies from many workers
# to the same burst only extend it.
COMPOUND_AFTER = 60.0
# Limits never go below 1/16 of what is configured, however long it throttles.
MIN_FACTOR = 1 / 16


@dataclass(frozen=True)
class RateLimits:
    """A route's limits; None means unlimited."""

    per_second: int | None = None
    per_minute: int | None = None
    per_hour: int | None = None
    max_connections: int | None = None

    @classmethod
    def for_route(cls, route_name: str) -> RateLimits:
        """The limits in ``SMTPRELAY["RATE_LIMITS"][route_name]`` (none if absent)."""
        return cls(**app_settings.rate_limits.get(route_name, {}))

    @property
    def has_rate(self) -> bool:
        return any(v is not None for v in (self.per_second, self.per_minute, self.per_hour))

    def scaled(self, factor: float) -> RateLimits:
        """Every limit times ``factor``, rounded down but never below 1."""
        values = {
            f.name: None if v is None else max(1, math.floor(v * factor))
            for f in fields(self)
            for v in [getattr(self, f.name)]
        }
        return RateLimits(**values)


@dataclass(frozen=True)
class SlowDown:
    """A route slowed after a throttling reply."""

    factor: float
    until: float  # timestamp
    reason: str
    since: float  # when the factor was last compounded
    per_minute: int | None = None  # the temporary limit of a route without one


@dataclass(frozen=True)
class RateUsage:
    """Sends counted in the current second, minute and hour, and sessions open."""

    this_second: int
    this_minute: int
    this_hour: int
    connections: int = 0


@dataclass(frozen=True)
class ConnectionSlot:
    """One of a route's concurrent-connection slots, held until closed or expired."""

    route_name: str
    key: str
    token: str


class RateLimiter:
    """Limits of one route; cheap to create, all state is shared."""

    def __init__(
        self,
        route_name: str,
        limits: RateLimits | None = None,
        cache: BaseCache | None = None,
        connection_ttl: timedelta = timedelta(minutes=10),
    ) -> None:
        self.route_name = route_name
        self.limits = limits if limits is not None else RateLimits.for_route(route_name)
        self._cache = cache
        self.connection_ttl = connection_ttl

    @property
    def cache(self) -> BaseCache:
        return self._cache or store.get_cache()

    def effective(self, now: datetime) -> RateLimits:
        """The limits in force now, after any slow-down."""
        slow = self.slowed(now)
        if slow is None:
            return self.limits
        if not self.limits.has_rate and slow.per_minute is not None:
            return replace(self.limits.scaled(slow.factor), per_minute=slow.per_minute)
        return self.limits.scaled(slow.factor)

    def acquire(self, now: datetime) -> float:
        """0 if a send may go now (and it is counted), else seconds to wait (nothing counted)."""
        cache, limits, ts = self.cache, self.effective(now), now.timestamp()
        taken: list[str] = []
        windows = ((1, limits.per_second), (60, limits.per_minute), (3600, limits.per_hour))
        for period, limit in windows:
            if limit is None:
                continue
            window = int(ts // period)
            name = self._key("rl", period, window)
            taken.append(name)
            if store.bump(cache, name, 1, timeout=2 * period + 1) > limit:
                for done in taken:
                    store.unbump(cache, done)
                return max((window + 1) * period - ts, 0.001)
        if limits.per_minute is None:  # sends per minute are always counted, see slow_down()
            store.bump(cache, self._key("rl", 60, int(ts // 60)), 1, timeout=121)
        return 0.0

    def count_sends(self, count: int, now: datetime) -> None:
        """Count sends that did not go through :meth:`acquire` (an unpaced route)."""
        store.bump(self.cache, self._key("rl", 60, int(now.timestamp() // 60)), count, timeout=121)

    def open_connection(self, now: datetime | None = None) -> ConnectionSlot | None:
        """Take a connection slot, or None if ``max_connections`` are open already."""
        limit = self.effective(now or timezone.now()).max_connections
        token = uuid.uuid4().hex
        if limit is None:
            return ConnectionSlot(self.route_name, "", token)
        ttl = self.connection_ttl.total_seconds()
        for index in range(limit):
            name = self._key("rl-conn", index)
            if self.cache.add(name, token, timeout=ttl):
                return ConnectionSlot(self.route_name, name, token)
        return None

    def renew(self, slot: ConnectionSlot) -> None:
        """Keep a long session's slot for another ``connection_ttl``."""
        if slot.key and self.cache.get(slot.key) == slot.token:
            self.cache.touch(slot.key, timeout=self.connection_ttl.total_seconds())

    def close_connection(self, slot: ConnectionSlot) -> None:
        """Give the slot back (unless it expired and another session holds it now)."""
        if slot.key and self.cache.get(slot.key) == slot.token:
            self.cache.delete(slot.key)

    @contextmanager
    def connection(self, now: datetime | None = None) -> Iterator[ConnectionSlot | None]:
        """``with limiter.connection() as slot:``; ``slot`` is None when all are taken."""
        slot = self.open_connection(now)
        try:
            yield slot
        finally:
            if slot is not None:
                self.close_connection(slot)

    def slow_down(
        self,
        factor: float = 0.5,
        duration: timedelta = timedelta(minutes=10),
        reason: str = "",
        now: datetime | None = None,
    ) -> SlowDown:
        """Reduce the route's limits by ``factor`` for ``duration`` after a throttling reply.

        Returns the slow-down in force; the caller persists it when it is new.
        """
        now = now or timezone.now()
        ts = now.timestamp()
        current = self.slowed(now)
        until = ts + duration.total_seconds()
        if current is None:
            per_minute = None
            if not self.limits.has_rate:
                per_minute = max(1, math.floor(self._observed_per_minute(ts) * factor))
            new = SlowDown(factor, until, reason, ts, per_minute)
        elif ts - current.since >= COMPOUND_AFTER:
            per_minute = current.per_minute
            if per_minute is not None:
                per_minute = max(1, math.floor(per_minute * factor))
            new = SlowDown(max(current.factor * factor, MIN_FACTOR), until, reason, ts, per_minute)
        else:
            new = replace(current, until=max(until, current.until))
        self.cache.set(self._key("rl-slow"), asdict(new), timeout=max(new.until - ts, 1))
        return new

    def slowed(self, now: datetime) -> SlowDown | None:
        """The slow-down in force at ``now``, if any."""
        record = self.cache.get(self._key("rl-slow"))
        if record is None or record["until"] <= now.timestamp():
            return None
        return SlowDown(**record)

    def usage(self, now: datetime) -> RateUsage:
        """How much of each window and connection slot is taken now; reads only."""
        ts = now.timestamp()
        windows = {period: int(ts // period) for period in (1, 60, 3600)}
        slots = self.limits.max_connections or 0
        keys = [self._key("rl", p, w) for p, w in windows.items()]
        keys += [self._key("rl-conn", i) for i in range(slots)]
        values = self.cache.get_many(keys)
        sent = [int(values.get(self._key("rl", p, w), 0)) for p, w in windows.items()]
        connections = sum(self._key("rl-conn", i) in values for i in range(slots))
        return RateUsage(*sent, connections=connections)

    # internal

    def _key(self, kind: str, *parts: object) -> str:
        return store.key(kind, self.route_name, *parts)

    def _observed_per_minute(self, ts: float) -> int:
        window = int(ts // 60)
        values = self.cache.get_many([self._key("rl", 60, w) for w in (window - 1, window)])
        return max((int(v) for v in values.values()), default=0)
