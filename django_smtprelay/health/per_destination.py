"""Health per route and destination group: how each receiver answers each route.

A relay whose IPs Microsoft throttles can be perfect for Gmail. Each send is
counted in one-minute buckets of the health cache under its route and its
destination group (:mod:`.destinations`): sends, accepted, deferred,
throttled (421, 4.7.x rate and reputation replies), failed (permanent),
route faults, and latency. Over the last :data:`WINDOW_BUCKETS` buckets (a
sliding window, read at the caller's ``now``, so a test's clock drives it):

* a route's *rate* for a group is its good sends (all but deferrals,
  throttling and route faults) over its sends, pulled toward its peers'
  rate by :data:`PRIOR` sends' worth, so a handful of sends decide little;
* its *factor* is ``(rate / peers' rate) ** EXPONENT`` when it is more than
  :data:`TOLERANCE` worse than its peers (60% against 100% gives 0.017),
  times the latency factor of :mod:`.score`; 1 otherwise;
* shares: the operator's weight times the route's health times the factor,
  normalised over the candidates, and never below :data:`PROBE_SHARE` for a
  route whose circuit for the group is closed, so a route that a destination
  throttles keeps the probing traffic that shows it has recovered. Old
  buckets leave the window, so a recovered route is back to its configured
  share within the window.

A per-destination circuit opens after ``BREAKER_FAILURE_THRESHOLD`` bad
sends in a row to the group, or ``BREAKER_ERROR_RATE`` of at least
``BREAKER_MIN_VOLUME`` sends in the window, for ``BREAKER_COOLDOWN_SECONDS``
(doubling, up to the maximum, when it opens again right after): the route
takes none of that group's mail meanwhile and keeps everyone else's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.core.cache import BaseCache

from . import store
from .circuit import BreakerPolicy
from .score import LATENCY_SLACK, LATENCY_TOLERANCE, MIN_SAMPLES

BUCKET_SECONDS = 60
WINDOW_BUCKETS = 5
PRIOR = 5.0
EXPONENT = 8
TOLERANCE = 0.02
PROBE_SHARE = 0.05
# Kinds of result, each a counter per bucket (sends are their sum: one key fewer,
# and a kind that never happens costs no key at all).
KINDS = ("accepted", "deferred", "throttled", "failed", "fault")
_COUNTERS = (*KINDS, "ms")
_BAD = {"deferred", "throttled", "fault"}


@dataclass(frozen=True)
class DestinationFigures:
    """One route's sends to one group in the window, and what they say."""

    route_name: str
    group: str
    sends: int = 0
    accepted: int = 0
    deferred: int = 0
    throttled: int = 0
    failed: int = 0
    faults: int = 0
    latency_ms: int = 0  # total

    @property
    def good(self) -> int:
        return self.sends - self.deferred - self.throttled - self.faults

    @property
    def latency(self) -> float | None:
        return self.latency_ms / 1000 / self.sends if self.sends else None

    def rate(self, kind: str) -> float | None:
        return getattr(self, kind) / self.sends if self.sends else None


@dataclass(frozen=True)
class DestinationScore:
    """One route's standing for one group, and why."""

    route_name: str
    factor: float
    reason: str
    figures: DestinationFigures
    open_until: float | None = None  # the group's circuit on this route, a timestamp


def classify(outcome: str, throttle: bool) -> str:
    """The kind of result (see :data:`KINDS`) of a send's route-level outcome."""
    if throttle:
        return "throttled"
    return {
        "delivered": "accepted",
        "transient": "deferred",
        "permanent": "failed",
    }.get(outcome, "fault")


class DestinationHealth:
    """Counts sends per route and group, scores routes for a group, keeps the group circuits."""

    def __init__(self, cache: BaseCache | None = None, policy: BreakerPolicy | None = None) -> None:
        self._cache = cache
        self._policy = policy

    @property
    def cache(self) -> BaseCache:
        return self._cache or store.get_cache()

    @property
    def policy(self) -> BreakerPolicy:
        if self._policy is None:
            self._policy = BreakerPolicy.from_settings()
        return self._policy

    def record(
        self,
        route_name: str,
        group: str,
        kind: str,
        latency: float,
        now: datetime,
        count: int = 1,
    ) -> None:
        """Count ``count`` sends of one ``kind`` (with ``latency`` seconds in all)."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind of result {kind!r}; expected one of {KINDS}")
        cache, bucket = self.cache, int(now.timestamp() // BUCKET_SECONDS)
        timeout = BUCKET_SECONDS * (WINDOW_BUCKETS + 1)
        name = _name(route_name, group)
        store.bump(cache, store.key(f"dh-{kind}", name, bucket), count, timeout)
        millis = max(0, round(latency * 1000))
        if millis:
            store.bump(cache, store.key("dh-ms", name, bucket), millis, timeout)
        row = store.key("dc-row", name)
        if kind in _BAD:
            in_a_row = store.bump(cache, row, count, self.policy.window.total_seconds())
            self._maybe_open(route_name, group, in_a_row, now)
        elif kind == "accepted":
            cache.set(row, 0, timeout=self.policy.window.total_seconds())

    def figures(
        self, pairs: list[tuple[str, str]], now: datetime
    ) -> dict[tuple[str, str], DestinationFigures]:
        """The window's figures of each (route, group), in one cache read."""
        last = int(now.timestamp() // BUCKET_SECONDS)
        buckets = range(last - WINDOW_BUCKETS + 1, last + 1)
        keys = [
            store.key(f"dh-{c}", _name(r, g), b)
            for r, g in pairs
            for c in _COUNTERS
            for b in buckets
        ]
        values = self.cache.get_many(keys)

        def total(counter: str, route: str, group: str) -> int:
            name = _name(route, group)
            return sum(int(values.get(store.key(f"dh-{counter}", name, b), 0)) for b in buckets)

        result = {}
        for r, g in pairs:
            acc, de, th, fa, fl, ms = (total(c, r, g) for c in _COUNTERS)
            n = acc + de + th + fa + fl
            result[(r, g)] = DestinationFigures(r, g, n, acc, de, th, fa, fl, ms)
        return result

    def scores(self, routes: list[str], group: str, now: datetime) -> dict[str, DestinationScore]:
        """Each route's factor for ``group`` against the others in ``routes`` (its peers)."""
        figures = self.figures([(r, group) for r in routes], now)
        circuits = self.circuits(routes, group, now)
        result = {}
        for r in routes:
            mine = figures[(r, group)]
            peers = [figures[(p, group)] for p in routes if p != r]
            factor, why = _compare(mine, peers)
            until = circuits.get(r)
            if until is not None:
                when = store.from_timestamp(until)
                why = f"circuit open for {group} until {when:%H:%M:%S}; {why}"
            result[r] = DestinationScore(r, factor, why, mine, until)
        return result

    def circuits(self, routes: list[str], group: str, now: datetime) -> dict[str, float]:
        """The routes whose circuit for ``group`` is open at ``now``: name -> until."""
        keys = {store.key("dc-open", _name(r, group)): r for r in routes}
        found = self.cache.get_many(list(keys))
        ts = now.timestamp()
        return {
            keys[k]: record["until"]
            for k, record in found.items()
            if isinstance(record, dict) and record.get("until", 0) > ts
        }

    def _maybe_open(self, route_name: str, group: str, in_a_row: int, now: datetime) -> None:
        policy, cache, name = self.policy, self.cache, _name(route_name, group)
        ts = now.timestamp()
        record = cache.get(store.key("dc-open", name))
        if isinstance(record, dict) and record.get("until", 0) > ts:
            return  # open already: a send that started before it opened
        if in_a_row >= policy.failure_threshold:
            why = f"{in_a_row} deferred, throttled or failed sends to {group} in a row"
        else:
            window = self.figures([(route_name, group)], now)[(route_name, group)]
            bad = window.sends - window.good
            if window.sends < policy.min_volume or bad / window.sends < policy.error_rate:
                return
            why = f"{bad} of {window.sends} sends to {group} deferred, throttled or failed"
        cooldown = policy.cooldown.total_seconds()
        if isinstance(record, dict) and ts - record.get("until", 0) < record.get("cooldown", 0):
            # Opened again right after its cool-down: the probe failed.
            cooldown = min(record["cooldown"] * 2, policy.max_cooldown.total_seconds())
        record = {"until": ts + cooldown, "cooldown": cooldown, "reason": why}
        cache.set(store.key("dc-open", name), record, timeout=cooldown * 3)
        cache.set(store.key("dc-row", name), 0, timeout=policy.window.total_seconds())


def shares(weights: dict[str, float], scores: dict[str, DestinationScore]) -> dict[str, float]:
    """Each route's share of the group's traffic: weight x factor, normalised,
    with a probing floor for routes whose circuit for the group is closed."""
    raw = {
        r: (0.0 if scores[r].open_until is not None else w * scores[r].factor)
        for r, w in weights.items()
    }
    live = [r for r, w in raw.items() if w > 0]
    total = sum(raw.values())
    if not live or total <= 0:
        return dict.fromkeys(weights, 0.0)
    result = {r: w / total for r, w in raw.items()}
    if len(live) > 1:
        low = [r for r in live if result[r] < PROBE_SHARE]
        if low:
            rest = sum(result[r] for r in live if r not in low)
            spare = 1 - PROBE_SHARE * len(low)
            for r in live:
                result[r] = PROBE_SHARE if r in low else result[r] / rest * spare
    return result


def _name(route_name: str, group: str) -> str:
    return f"{route_name}\x1f{group}"


def _compare(mine: DestinationFigures, peers: list[DestinationFigures]) -> tuple[float, str]:
    peer_sends = sum(p.sends for p in peers)
    peer_rate = sum(p.good for p in peers) / peer_sends if peer_sends else 1.0
    if not mine.sends:
        return 1.0, "no sends in the window"
    rate = (mine.good + PRIOR * peer_rate) / (mine.sends + PRIOR)
    figures = f"{mine.sends} sends, {mine.good / mine.sends:.0%} good"
    if mine.throttled:
        figures += f", {mine.throttled / mine.sends:.0%} throttled"
    if not peer_sends:
        return 1.0, f"{figures}; no peer to compare with"
    factor, why = 1.0, []
    if rate < peer_rate - TOLERANCE:
        factor = (rate / peer_rate) ** EXPONENT if peer_rate else 1.0
        why.append(f"peers {peer_rate:.0%} good")
    latency, peer_ms = mine.latency, sum(p.latency_ms for p in peers)
    if latency is not None and mine.sends >= MIN_SAMPLES and peer_sends >= MIN_SAMPLES:
        peer_latency = peer_ms / 1000 / peer_sends
        slack = LATENCY_SLACK
        slow = min(1.0, LATENCY_TOLERANCE * (peer_latency + slack) / (latency + slack))
        if slow < 1:
            factor *= slow
            why.append(f"{latency * 1000:.0f} ms vs peers {peer_latency * 1000:.0f} ms")
    reason = f"{figures}; " + ("; ".join(why) if why else "on par with peers")
    return round(factor, 4), reason
