"""A circuit breaker per route, shared by every worker.

A relay that is down costs every message a connect timeout before it fails
over. After ``failure_threshold`` route faults in a row, or an error rate of
``error_rate`` or more over ``window`` (once at least ``min_volume`` sends
were seen), the route's circuit opens: nobody uses it for ``cooldown``. Then
exactly one caller, across all processes, wins a probe (half-open). A probe
that works closes the circuit; one that fails reopens it for twice the
previous cool-down, up to ``max_cooldown``.

Counters live in the cache (atomic ``incr``/``add``). The state is written to
the :class:`~django_smtprelay.models.RouteHealth` row on each transition
only, and cached for a few seconds, so it survives a worker restart, shows in
the admin, and costs no database write per message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.cache import BaseCache

from .. import signals
from ..conf import app_settings
from ..models import RouteHealth
from . import store

State = RouteHealth.State

# The error-rate window is counted in this many fixed buckets.
WINDOW_BUCKETS = 5
# How long a process trusts the cached state before it reads the row again.
# With a shared cache transitions are seen at once; this bounds how stale a
# per-process cache (LocMemCache) or a state changed in the admin can be.
STATE_TTL = 10


@dataclass(frozen=True)
class BreakerPolicy:
    """When a route's circuit opens and for how long."""

    failure_threshold: int = 5
    error_rate: float = 0.5
    window: timedelta = timedelta(minutes=5)
    min_volume: int = 20
    cooldown: timedelta = timedelta(minutes=2)
    max_cooldown: timedelta = timedelta(minutes=30)
    # A probe that has not reported by then is presumed lost (its worker
    # died): the next caller gets a new probe. Keep it above a session's length.
    probe_timeout: timedelta = timedelta(minutes=5)

    @classmethod
    def from_settings(cls) -> BreakerPolicy:
        return cls(
            failure_threshold=app_settings.breaker_failure_threshold,
            error_rate=app_settings.breaker_error_rate,
            window=app_settings.breaker_window,
            min_volume=app_settings.breaker_min_volume,
            cooldown=app_settings.breaker_cooldown,
            max_cooldown=app_settings.breaker_max_cooldown,
        )


@dataclass(frozen=True)
class BreakerState:
    """A route's circuit as the breaker sees it now."""

    state: str = State.CLOSED
    opened_at: datetime | None = None  # the last (re)opening
    until: datetime | None = None  # end of the cool-down
    reason: str = ""
    consecutive_faults: int = 0

    @property
    def cooldown(self) -> timedelta | None:
        if self.opened_at is None or self.until is None:
            return None
        return self.until - self.opened_at


class CircuitBreaker:
    """The circuit of one route; cheap to create, all state is shared."""

    def __init__(
        self, route_name: str, policy: BreakerPolicy | None = None, cache: BaseCache | None = None
    ) -> None:
        self.route_name = route_name
        self._policy = policy
        self._cache = cache

    @property
    def policy(self) -> BreakerPolicy:
        return self._policy or BreakerPolicy.from_settings()

    @property
    def cache(self) -> BaseCache:
        return self._cache or store.get_cache()

    def allow(self, now: datetime) -> bool:
        """Whether a send may use the route now.

        True while closed. After the cool-down, True for exactly one caller in
        every ``probe_timeout`` (the probe), who must then report its result.
        """
        st = self._load()
        if st.state == State.CLOSED:
            return True
        if st.until is not None and now < st.until:
            return False
        since = (now - st.until).total_seconds() if st.until else 0.0
        epoch = int(since // self.policy.probe_timeout.total_seconds())
        until_ts = int(st.until.timestamp()) if st.until else 0
        token = store.key("cb-probe", self.route_name, until_ts, epoch)
        if not self.cache.add(token, 1, timeout=self.policy.probe_timeout.total_seconds() * 2):
            return False
        if st.state == State.OPEN:
            self._transition(State.HALF_OPEN, st.opened_at, st.until, st.reason, 0)
        return True

    def record_success(self, now: datetime) -> None:
        """A send that the relay answered: counts toward the error rate; closes a probe."""
        cache = self.cache
        cache.set(self._key("cb-row"), 0, timeout=self._window_s())
        self._count(now, fault=False)
        if self._load().state == State.HALF_OPEN:
            self._reset_counters(now)
            self._transition(State.CLOSED, None, None, f"probe succeeded at {now:%H:%M:%S}", 0)

    def record_successes(self, count: int, now: datetime) -> None:
        """``count`` good sends at once (a session's worth)."""
        cache = self.cache
        cache.set(self._key("cb-row"), 0, timeout=self._window_s())
        size = self._window_s() / WINDOW_BUCKETS
        timeout = self._window_s() * (1 + 1 / WINDOW_BUCKETS) + 1
        store.bump(cache, self._key("cb-n", int(now.timestamp() // size)), count, timeout)
        if self._load().state == State.HALF_OPEN:
            self._reset_counters(now)
            self._transition(State.CLOSED, None, None, f"probe succeeded at {now:%H:%M:%S}", 0)

    def record_fault(self, reason: str, now: datetime) -> None:
        """A route fault (no connection, TLS, AUTH, refused sender ...); may open the circuit."""
        policy, cache = self.policy, self.cache
        row_key = self._key("cb-row")
        in_a_row = store.bump(cache, row_key, 1, timeout=self._window_s())
        cache.touch(row_key, timeout=self._window_s())
        total, faults = self._count(now, fault=True)
        st = self._load()
        if st.state == State.OPEN:
            return  # a send that started before the circuit opened
        if st.state == State.HALF_OPEN:
            previous = st.cooldown or policy.cooldown
            cooldown = min(previous * 2, policy.max_cooldown)
            why = f"probe failed: {reason}"
        elif in_a_row >= policy.failure_threshold:
            cooldown = policy.cooldown
            why = f"{in_a_row} route faults in a row; last: {reason}"
        elif total >= policy.min_volume and faults / total >= policy.error_rate:
            cooldown = policy.cooldown
            why = (
                f"{faults} of {total} sends were route faults ({faults / total:.0%}) "
                f"in the last {_human(policy.window)}; last: {reason}"
            )
        else:
            return
        self._transition(State.OPEN, now, now + cooldown, why, in_a_row)

    def state(self) -> BreakerState:
        """The circuit's state, with the live count of faults in a row."""
        st = self._load()
        live = self.cache.get(self._key("cb-row"))
        if live is None:
            return st
        return BreakerState(st.state, st.opened_at, st.until, st.reason, int(live))

    # internal

    def _key(self, kind: str, *parts: object) -> str:
        return store.key(kind, self.route_name, *parts)

    def _window_s(self) -> float:
        return self.policy.window.total_seconds()

    def _buckets(self, now: datetime) -> list[int]:
        size = self._window_s() / WINDOW_BUCKETS
        last = int(now.timestamp() // size)
        return list(range(last - WINDOW_BUCKETS + 1, last + 1))

    def _count(self, now: datetime, *, fault: bool) -> tuple[int, int]:
        """Count one send in the current bucket; with a fault, return the window's totals."""
        cache, buckets = self.cache, self._buckets(now)
        timeout = self._window_s() * (1 + 1 / WINDOW_BUCKETS) + 1
        store.bump(cache, self._key("cb-n", buckets[-1]), 1, timeout)
        if not fault:
            return 0, 0
        store.bump(cache, self._key("cb-f", buckets[-1]), 1, timeout)
        keys = [self._key(kind, b) for b in buckets for kind in ("cb-n", "cb-f")]
        values = cache.get_many(keys)
        total = sum(int(values.get(self._key("cb-n", b), 0)) for b in buckets)
        faults = sum(int(values.get(self._key("cb-f", b), 0)) for b in buckets)
        return total, faults

    def _reset_counters(self, now: datetime) -> None:
        keys = [self._key(kind, b) for b in self._buckets(now) for kind in ("cb-n", "cb-f")]
        self.cache.delete_many([*keys, self._key("cb-row")])

    def _load(self) -> BreakerState:
        record = self.cache.get(self._key("cb-state"))
        if record is None:
            row = (
                RouteHealth.objects.filter(route_name=self.route_name)
                .values("state", "opened_at", "open_until", "reason", "consecutive_faults")
                .first()
            )
            record = _record(
                row["state"] if row else State.CLOSED,
                row["opened_at"] if row else None,
                row["open_until"] if row else None,
                row["reason"] if row else "",
                row["consecutive_faults"] if row else 0,
            )
            # add, not set: never overwrite a transition another worker just made.
            self.cache.add(self._key("cb-state"), record, timeout=STATE_TTL)
        return BreakerState(
            state=record["state"],
            opened_at=store.from_timestamp(record["opened_at"]),
            until=store.from_timestamp(record["until"]),
            reason=record["reason"],
            consecutive_faults=record["faults"],
        )

    def _transition(
        self,
        state: str,
        opened_at: datetime | None,
        until: datetime | None,
        reason: str,
        faults: int,
    ) -> None:
        reason = reason[:2000]
        store.save_health(
            self.route_name,
            state=state,
            opened_at=opened_at,
            open_until=until,
            reason=reason,
            consecutive_faults=faults,
        )
        record = _record(state, opened_at, until, reason, faults)
        self.cache.set(self._key("cb-state"), record, timeout=STATE_TTL)
        signals.route_state_changed.send(
            sender=CircuitBreaker, route_name=self.route_name, state=state, reason=reason
        )


def read_states(
    rows: dict[str, RouteHealth], cache: BaseCache | None = None
) -> dict[str, BreakerState]:
    """The circuits of the routes named in ``rows`` (their RouteHealth rows, or None), read only.

    For the admin: one cache read for all of them, nothing written (the
    breaker's own ``state()`` caches what it reads from the row).
    """
    cache = cache or store.get_cache()
    names = list(rows)
    keys = {name: (store.key("cb-state", name), store.key("cb-row", name)) for name in names}
    values = cache.get_many([k for pair in keys.values() for k in pair])
    states = {}
    for name in names:
        record, live = (values.get(k) for k in keys[name])
        row = rows[name]
        if record is None:
            record = _record(
                row.state if row else State.CLOSED,
                row.opened_at if row else None,
                row.open_until if row else None,
                row.reason if row else "",
                row.consecutive_faults if row else 0,
            )
        states[name] = BreakerState(
            state=record["state"],
            opened_at=store.from_timestamp(record["opened_at"]),
            until=store.from_timestamp(record["until"]),
            reason=record["reason"],
            consecutive_faults=int(live) if live is not None else record["faults"],
        )
    return states


def close_now(route_names: Iterable[str], reason: str, now: datetime) -> int:
    """Close the circuits of ``route_names`` at once (the admin's action); returns rows changed.

    One UPDATE, then the cached state and counters are dropped so that every
    worker reads the closed state (at once with a shared cache; within
    ``STATE_TTL`` seconds with a per-process one).
    """
    names = list(route_names)
    count = RouteHealth.objects.filter(route_name__in=names).update(
        state=State.CLOSED,
        open_until=None,
        reason=reason[:2000],
        consecutive_faults=0,
        updated_at=now,
    )
    for name in names:
        breaker = CircuitBreaker(name)
        breaker._reset_counters(now)
        breaker.cache.delete(breaker._key("cb-state"))
    return count


def _record(
    state: str, opened_at: datetime | None, until: datetime | None, reason: str, faults: int
) -> dict[str, Any]:
    return {
        "state": str(state),
        "opened_at": opened_at.timestamp() if opened_at else None,
        "until": until.timestamp() if until else None,
        "reason": reason,
        "faults": faults,
    }


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"
