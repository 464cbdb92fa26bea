"""The few calls the delivery engine makes about route health.

The engine should not need to know about breakers, windows and scores; it
asks four questions per batch and route:

* :meth:`RouteHealthService.order`: the candidate routes, by priority, and
  within one priority in a weighted random order that favours healthier ones;
* :meth:`RouteHealthService.usable`: may this route be used now (circuit)?
* :meth:`RouteHealthService.before_send`: how long to wait before the next
  send on this route (rate limits); plus ``open_session``/``close_session``
  for the concurrent-connection cap;
* :meth:`RouteHealthService.after_result`: what happened, for all of the above.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import datetime
from itertools import groupby
from typing import Any, TypeVar

from django.core.cache import BaseCache
from django.utils import timezone

from ..conf import app_settings
from ..replies import Outcome
from . import store
from .circuit import BreakerPolicy, BreakerState, CircuitBreaker
from .per_destination import DestinationHealth, classify, shares
from .ratelimit import ConnectionSlot, RateLimiter, RateLimits
from .score import HealthScores, RouteScore

R = TypeVar("R")

# Outcomes that show the route did its job (the reply was about the recipient
# or the message, not about the relay).
ROUTE_OK = {"delivered", "transient", "permanent"}
# Outcomes that count against the route: no usable session, or a session lost
# after the final dot.
ROUTE_BAD = {"route_fault", "uncertain"}
# How long (by the ``now`` passed in) ``order`` reuses scores it computed.
SCORE_TTL = 5.0


class RouteHealthService:
    """Circuit breakers, rate limits and health scores behind one small interface.

    Cheap to create (once per batch is fine): all state is in the cache and
    the ``RouteHealth`` rows. ``now`` defaults to ``timezone.now()``; tests pass it.
    """

    def __init__(
        self,
        *,
        policy: BreakerPolicy | None = None,
        cache: BaseCache | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = timezone.now,
    ) -> None:
        self._policy = policy
        self._cache = cache
        self._rng = rng or random.Random()
        self._clock = clock
        self.scores = HealthScores(cache)
        self.destinations = DestinationHealth(cache, policy)
        self._memo: dict[tuple[str, ...], tuple[float, dict[str, RouteScore]]] = {}
        # (route names, group) -> (when, shares, the choice as attempts record it)
        self._dest_memo: dict[tuple, tuple[float, dict[str, float], dict[str, Any]]] = {}

    def breaker(self, route_name: str) -> CircuitBreaker:
        return CircuitBreaker(route_name, self._policy, self._cache)

    def limiter(self, route_name: str, limits: RateLimits | None = None) -> RateLimiter:
        return RateLimiter(route_name, limits, self._cache)

    def usable(self, route_name: str, now: datetime | None = None) -> bool:
        """Whether the route's circuit lets a session through now.

        False while the circuit is open. After the cool-down exactly one caller
        (in all workers) gets True: it holds the probe and must send one
        session and report it with :meth:`after_result`. Call it once per
        route and batch, not per message.
        """
        return self.breaker(route_name).allow(now or self._clock())

    def before_send(
        self, route_name: str, limits: RateLimits | None = None, now: datetime | None = None
    ) -> float:
        """0.0 if one message may go now (and it is counted), else seconds to wait.

        ``limits`` default to ``SMTPRELAY["RATE_LIMITS"][route_name]``.
        """
        return self.limiter(route_name, limits).acquire(now or self._clock())

    def open_session(
        self, route_name: str, limits: RateLimits | None = None, now: datetime | None = None
    ) -> ConnectionSlot | None:
        """A connection slot for one session, or None when ``max_connections`` are in use."""
        return self.limiter(route_name, limits).open_connection(now or self._clock())

    def close_session(self, slot: ConnectionSlot) -> None:
        """Give a slot from :meth:`open_session` back."""
        self.limiter(slot.route_name, RateLimits()).close_connection(slot)

    def after_result(
        self,
        route_name: str,
        outcome: Outcome | str,
        throttle: bool = False,
        latency: float = 0.0,
        reason: str = "",
        now: datetime | None = None,
        *,
        limits: RateLimits | None = None,
        group: str = "",
    ) -> None:
        """Report one send (or a session that failed) on the route.

        ``outcome`` is a ``replies.Outcome`` or its value. A throttling reply
        slows the route down and lowers its score but is not a route fault
        for the circuit; ``route_fault`` and ``uncertain`` count against the
        circuit and the score; the other outcomes show the route works.
        ``limits`` are the route's, as given to :meth:`before_send`.

        With the recipients' destination ``group``, the send also counts in
        that group's health on the route, and a throttling reply is that
        receiver's word about the route: it lowers the route's share of the
        group's mail, not its limits or its score for everyone.
        """
        now = now or self._clock()
        value = str(outcome)
        if value not in ROUTE_OK | ROUTE_BAD:
            raise ValueError(
                f"unknown outcome {outcome!r}; expected one of {sorted(ROUTE_OK | ROUTE_BAD)}"
            )
        if group:
            self.destinations.record(route_name, group, classify(value, throttle), latency, now)
            if throttle:  # that receiver's word about the route, not a fault of the route
                self.scores.record(route_name, True, latency, now)
                return
        if throttle:
            self._slow_down(route_name, limits, reason, now)
        elif value in ROUTE_BAD:
            self.breaker(route_name).record_fault(reason or value, now)
        else:
            self.breaker(route_name).record_success(now)
        self.scores.record(route_name, value in ROUTE_OK and not throttle, latency, now)

    def record_successes(
        self,
        route_name: str,
        count: int,
        latency_total: float,
        now: datetime | None = None,
        *,
        limits: RateLimits | None = None,
        counted: bool = False,
        groups: dict[str, tuple[int, float]] | None = None,
    ) -> None:
        """Report ``count`` sends the relay did its job for, at once.

        ``counted``: the sends went through :meth:`before_send`, which counted them.
        ``groups``: how many of them (and their latency) went to each destination group.

        The same as ``count`` calls of :meth:`after_result` with a good outcome,
        in a few cache operations: the engine reports a session's successes
        together and each fault or throttle as it happens.
        """
        if count <= 0:
            return
        now = now or self._clock()
        self.breaker(route_name).record_successes(count, now)
        self.scores.record_many(route_name, count, count, latency_total, now)
        for group, (sends, latency) in (groups or {}).items():
            if group and sends:
                self.destinations.record(route_name, group, "accepted", latency, now, sends)
        if not counted:
            self.limiter(route_name, limits).count_sends(count, now)

    def paced(
        self, route_name: str, limits: RateLimits | None = None, now: datetime | None = None
    ) -> bool:
        """Whether sends on the route must ask :meth:`before_send` (limits or a slow-down)."""
        limiter = self.limiter(route_name, limits)
        return limiter.limits.has_rate or limiter.slowed(now or self._clock()) is not None

    def order(self, routes: Sequence[R], now: datetime | None = None) -> list[R]:
        """``routes`` by priority; within one priority, a weighted random order by health.

        Items are route names or objects with ``name`` (and ``priority``, else
        all are one priority), such as ``RouteSpec``; they come back as given.
        """
        now = now or self._clock()
        ordered = sorted(routes, key=_priority)
        result: list[R] = []
        for _, group_iter in groupby(ordered, key=_priority):
            group = list(group_iter)
            if len(group) > 1:
                group = self._shuffle(group, now)
            result.extend(group)
        return result

    def order_for(
        self, routes: Sequence[R], group: str, now: datetime | None = None
    ) -> tuple[list[R], dict[str, Any] | None]:
        """:meth:`order` for mail to one destination ``group``, and why.

        Within one priority the shares are the operator's weight x the
        route's health x its standing with the group
        (:mod:`.per_destination`); a route whose circuit for the group is
        open is left out. The second value is what the attempts record: the
        group and, per route, its share and the figures behind it (one
        object for every message ordered alike, None with nothing to choose).
        """
        now = now or self._clock()
        ordered = sorted(routes, key=_priority)
        result: list[R] = []
        explained: list[dict[str, Any]] = []
        for _, group_iter in groupby(ordered, key=_priority):
            members = list(group_iter)
            names = tuple(_name(r) for r in members)
            key = (names, group)
            cached = self._dest_memo.get(key)
            if cached is None or abs(now.timestamp() - cached[0]) > SCORE_TTL:
                cached = (now.timestamp(), *self.destination_shares(members, group, now))
                self._dest_memo[key] = cached
            share_of = cached[1]
            keyed = []
            for n, r in zip(names, members, strict=True):
                share = share_of[n]
                if share > 0:
                    keyed.append((self._rng.random() ** (1 / share), r))
            keyed.sort(key=lambda pair: pair[0], reverse=True)
            result.extend(r for _, r in keyed)
            explained.extend(cached[2]["routes"])
        if len(explained) < 2:
            return result, None
        if len(explained) == len(cached[2]["routes"]):
            return result, cached[2]  # one priority: the memo's own object
        return result, {"destination": group, "routes": explained}

    def destination_shares(
        self, members: list[Any], group: str, now: datetime, *, persist: bool = True
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """The shares of ``group``'s mail for routes of one priority, and why
        (see :meth:`order_for`); ``persist=False`` writes nothing (the admin)."""
        names = [_name(r) for r in members]
        route_scores = self.scores.scores(names, now, persist=persist)
        health = self.scores.weights(names, now=now, scores=route_scores)
        weights_in = {
            n: max(getattr(r, "weight", 1), 0) for n, r in zip(names, members, strict=True)
        }
        weights = {n: health[n] * weights_in[n] for n in names}
        standing = self.destinations.scores(names, group, now)
        share_of = shares(weights, standing) if len(names) > 1 else dict.fromkeys(names, 1.0)
        if len(names) == 1 and standing[names[0]].open_until is not None:
            share_of = {names[0]: 0.0}
        routes = []
        for n in names:
            figures = standing[n].figures
            routes.append(
                {
                    "route": n,
                    "share": round(share_of[n], 3),
                    "weight": weights_in[n],
                    "health": route_scores[n].score,
                    "factor": standing[n].factor,
                    "sends": figures.sends,
                    "why": standing[n].reason[:300],
                }
            )
        return share_of, {"destination": group, "routes": routes}

    def state(self, route_name: str) -> BreakerState:
        return self.breaker(route_name).state()

    # internal

    def _shuffle(self, group: list[R], now: datetime) -> list[R]:
        """Weighted random order without replacement (Efraimidis-Spirakis keys)."""
        names = tuple(_name(r) for r in group)
        cached = self._memo.get(names)
        if cached is None or abs(now.timestamp() - cached[0]) > SCORE_TTL:
            cached = (now.timestamp(), self.scores.scores(list(names), now))
            self._memo[names] = cached
        shares = self.scores.weights(list(names), now=now, scores=cached[1])
        # The configured weight (RouteSpec.weight) scales the health share.
        keyed = []
        for n, r in zip(names, group, strict=True):
            share = shares[n] * max(getattr(r, "weight", 1), 0)
            keyed.append((self._rng.random() ** (1 / share) if share > 0 else -1.0, r))
        keyed.sort(key=lambda pair: pair[0], reverse=True)
        return [r for _, r in keyed]

    def _slow_down(
        self, route_name: str, limits: RateLimits | None, reason: str, now: datetime
    ) -> None:
        limiter = self.limiter(route_name, limits)
        before = limiter.slowed(now)
        slow = limiter.slow_down(
            app_settings.throttle_factor, app_settings.throttle_duration, reason, now
        )
        if before is None or before.factor != slow.factor:
            limits = limiter.effective(now)
            why = f"limits x{slow.factor:g} ({_describe(limits)}) after: {reason}"
            until = store.from_timestamp(slow.until)
            store.save_health(route_name, throttled_until=until, throttle_reason=why[:2000])


def _name(route: Any) -> str:
    return route if isinstance(route, str) else route.name


def _priority(route: Any) -> int:
    return 0 if isinstance(route, str) else getattr(route, "priority", 0)


def _describe(limits: RateLimits) -> str:
    parts = [
        f"{value}/{unit}"
        for value, unit in (
            (limits.per_second, "s"),
            (limits.per_minute, "min"),
            (limits.per_hour, "h"),
        )
        if value is not None
    ]
    if limits.max_connections is not None:
        parts.append(f"{limits.max_connections} connections")
    return ", ".join(parts) or "no limit"
