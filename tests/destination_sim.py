"""A simulation of destination-aware routing, for the tests and ``make bench``.

Two routes of one priority and weight (A and B) to two loopback relays, and
two destination groups (X and Y) that the loopback DNS server makes from MX
records. Relay A answers ``421 4.7.0`` to X's recipients a given fraction of
the time until the simulated clock reaches the recovery, then answers
everything; relay B always does. Each tick queues mail to both groups and
runs the engine at the tick's time (the clock is simulated, so minutes of
sliding window pass in seconds). The relays' counts say which route carried
each group's mail in each tick, and whether any message was lost or
delivered twice.

Needs a configured Django with the app's tables (a test database, or the
benchmark's).
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMessage
from django.test import override_settings

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.health import store
from django_smtprelay.health.destinations import forget
from django_smtprelay.models import Message, Route
from tests.dnsserver import DNSServer
from tests.smtpserver import SMTPTestServer

X_DOMAINS = ("x1.sim.test", "x2.sim.test", "x3.sim.test")
Y_DOMAINS = ("y1.sim.test", "y2.sim.test", "y3.sim.test")
PROVIDERS = {"xmail.sim.test": "xmail", "ymail.sim.test": "ymail"}
ZONE = "\n".join(
    [
        "@ 3600 IN SOA ns.sim.test. admin.sim.test. 1 3600 600 86400 60",
        "@ 3600 IN NS ns.sim.test.",
        "ns 3600 IN A 127.0.0.1",
        *(f"{d.split('.')[0]} 3600 IN MX 10 mx1.xmail.sim.test." for d in X_DOMAINS),
        *(f"{d.split('.')[0]} 3600 IN MX 10 in.ymail.sim.test." for d in Y_DOMAINS),
    ]
)
THROTTLE_REPLY = "421 4.7.0 Too many messages from your IP, try again later"


@dataclass
class Tick:
    """What the relays accepted in one tick, per route and group."""

    number: int
    minute: float  # simulated minutes since the start
    throttling: bool
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (route, group)
    throttled: int = 0  # 421s that relay A gave in the tick

    def share(self, route: str, group: str) -> float | None:
        total = self.counts[("A", group)] + self.counts[("B", group)]
        return self.counts[(route, group)] / total if total else None


@dataclass
class SimResult:
    ticks: list[Tick]
    queued: int
    delivered: int
    lost: list[str]
    duplicates: list[str]
    recovery_minute: float
    tick_seconds: int
    start: datetime  # the simulated clock's first tick

    def share(self, route: str, group: str, first: int, last: int) -> float | None:
        """``route``'s share of ``group``'s accepted mail over ticks first..last (inclusive)."""
        ticks = [t for t in self.ticks if first <= t.number <= last]
        mine = sum(t.counts[(route, group)] for t in ticks)
        total = sum(t.counts[("A", group)] + t.counts[("B", group)] for t in ticks)
        return mine / total if total else None


def simulate(
    *,
    throttled_ticks: int = 40,
    recovered_ticks: int = 40,
    per_tick: int = 20,
    tick_seconds: int = 15,
    throttle_rate: float = 0.4,
    seed: int = 14,
) -> SimResult:
    """Run the simulation (see the module's docstring); routes A and B are created here."""
    rng = random.Random(seed)
    state = {"throttling": True, "throttled": 0}
    lock = threading.Lock()

    def rcpt_reply(address: str) -> str | None:
        domain = address.rpartition("@")[2].lower()
        with lock:
            if state["throttling"] and domain in X_DOMAINS and rng.random() < throttle_rate:
                state["throttled"] += 1
                return THROTTLE_REPLY
        return None

    dns = DNSServer({"sim.test.": ZONE}).start()
    relay_a = SMTPTestServer(rcpt_replies=rcpt_reply).start()
    relay_b = SMTPTestServer().start()
    overrides = {
        **getattr(settings, "SMTPRELAY", {}),
        "DNS_NAMESERVERS": [dns.address],
        "DESTINATION_PROVIDERS": PROVIDERS,
        "RETRY_BASE_SECONDS": 30,
        "RETRY_MAX_SECONDS": 120,
        "RETRY_JITTER": 0,
        "PUBLISH_ON_COMMIT": False,
    }
    try:
        with override_settings(SMTPRELAY=overrides):
            return _run(
                relay_a, relay_b, state, lock, rng, throttled_ticks, recovered_ticks,
                per_tick, tick_seconds,
            )  # fmt: skip
    finally:
        relay_a.stop()
        relay_b.stop()
        dns.stop()


def _run(
    relay_a: SMTPTestServer,
    relay_b: SMTPTestServer,
    state: dict,
    lock: threading.Lock,
    rng: random.Random,
    throttled_ticks: int,
    recovered_ticks: int,
    per_tick: int,
    tick_seconds: int,
) -> SimResult:
    forget()
    store.get_cache().clear()
    for name, relay in (("A", relay_a), ("B", relay_b)):
        Route.objects.create(
            name=name,
            host="127.0.0.1",
            port=relay.port,
            security=Route.Security.NONE,
            priority=10,
            weight=1,
            timeout=5.0,
        )
    real_now = datetime.now(UTC)
    start = real_now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    ticks: list[Tick] = []
    queued: list[str] = []
    seen = {"A": 0, "B": 0}
    total_ticks = throttled_ticks + recovered_ticks
    number = 0
    while True:
        now = start + timedelta(seconds=number * tick_seconds)
        if number == throttled_ticks:
            with lock:
                state["throttling"] = False
        if number < total_ticks:
            for i in range(per_tick):
                domains = X_DOMAINS if i % 2 == 0 else Y_DOMAINS
                address = f"u{len(queued)}@{domains[rng.randrange(len(domains))]}"
                EmailMessage("sim", "body", "sender@sim.test", [address]).send()
                queued.append(address)
        with lock:
            throttled_before = state["throttled"]
        DeliveryEngine(clock=lambda now=now: now, rng=random.Random(rng.random())).run()
        tick = Tick(number, number * tick_seconds / 60, number < throttled_ticks)
        with lock:
            tick.throttled = state["throttled"] - throttled_before
        for name, relay in (("A", relay_a), ("B", relay_b)):
            accepted = [m for m in relay.messages if m.accepted]
            for message in accepted[seen[name] :]:
                for address in message.rcpt_tos:
                    tick.counts[(name, _group(address))] += 1
            seen[name] = len(accepted)
        ticks.append(tick)
        number += 1
        open_left = Message.objects.exclude(status__in=("sent", "failed", "cancelled")).exists()
        if number >= total_ticks and not open_left:
            break
        if number > total_ticks + 100:
            break  # the check below reports what is left
    arrived = Counter(
        address
        for relay in (relay_a, relay_b)
        for message in relay.messages
        if message.accepted
        for address in message.rcpt_tos
    )
    return SimResult(
        ticks=ticks,
        queued=len(queued),
        delivered=sum(arrived.values()),
        lost=[a for a in queued if a not in arrived],
        duplicates=[a for a, n in arrived.items() if n > 1],
        recovery_minute=throttled_ticks * tick_seconds / 60,
        tick_seconds=tick_seconds,
        start=start,
    )


def _group(address: str) -> str:
    return "X" if address.rpartition("@")[2].lower() in X_DOMAINS else "Y"
