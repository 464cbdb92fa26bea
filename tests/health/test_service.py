"""The engine's facade: usable, before_send, after_result, order."""

import random
from collections import Counter
from datetime import timedelta

import pytest

from django_smtprelay.health import BreakerPolicy, RateLimits, RouteHealthService
from django_smtprelay.models import RouteHealth
from django_smtprelay.replies import Outcome
from django_smtprelay.routing import RouteSpec
from tests.health.conftest import T0

pytestmark = pytest.mark.django_db

S = timedelta(seconds=1)


def service(**kwargs):
    return RouteHealthService(
        policy=BreakerPolicy(failure_threshold=3, cooldown=timedelta(minutes=1)),
        rng=random.Random(7),
        clock=lambda: T0,
        **kwargs,
    )


def test_route_faults_make_a_route_unusable_until_a_probe_works(health_cache):
    health = service()
    for i in range(3):
        assert health.usable("relay", T0 + i * S)
        health.after_result("relay", Outcome.ROUTE_FAULT, False, 5.0, "timed out", T0 + i * S)
    assert not health.usable("relay", T0 + 10 * S)
    assert health.state("relay").reason == "3 route faults in a row; last: timed out"
    probe = T0 + 2 * S + timedelta(minutes=1)
    assert health.usable("relay", probe) and not health.usable("relay", probe)
    health.after_result("relay", "delivered", False, 0.2, "", probe)
    assert health.usable("relay", probe + S)


def test_recipient_outcomes_show_the_route_works(health_cache):
    health = service()
    for i, outcome in enumerate(["route_fault", "route_fault", "permanent", "route_fault"]):
        health.after_result("relay", outcome, False, 0.1, "x", T0 + i * S)
    assert health.usable("relay", T0 + 10 * S)


def test_an_uncertain_send_counts_against_the_route(health_cache):
    health = service()
    for i in range(3):
        health.after_result("relay", Outcome.UNCERTAIN, False, 0.1, "lost after dot", T0 + i * S)
    assert not health.usable("relay", T0 + 10 * S)


def test_a_throttling_reply_slows_the_route_but_is_no_fault(health_cache, relay_settings):
    relay_settings(THROTTLE_FACTOR=0.5, THROTTLE_SECONDS=300)
    health = service()
    limits = RateLimits(per_second=4)
    for i in range(5):
        health.after_result(
            "relay",
            "route_fault",
            True,
            0.1,
            "421 4.7.0 rate limit exceeded",
            T0 + i * S,
            limits=limits,
        )
    assert health.usable("relay", T0 + 10 * S)
    now = T0 + 20 * S
    assert sum(health.before_send("relay", limits, now) == 0 for _ in range(4)) == 2
    row = RouteHealth.objects.get(route_name="relay")
    assert row.throttled_until == T0 + timedelta(seconds=300)
    assert row.throttle_reason == "limits x0.5 (2/s) after: 421 4.7.0 rate limit exceeded"
    assert row.state == "closed"


def test_before_send_reads_limits_from_settings(health_cache, relay_settings):
    relay_settings(RATE_LIMITS={"relay": {"per_minute": 2}})
    health = service()
    assert [health.before_send("relay", now=T0) for _ in range(2)] == [0, 0]
    assert health.before_send("relay", now=T0) == pytest.approx(60)


def test_sessions_respect_the_connection_cap(health_cache):
    health = service()
    limits = RateLimits(max_connections=1)
    slot = health.open_session("relay", limits, T0)
    assert slot is not None and health.open_session("relay", limits, T0) is None
    health.close_session(slot)
    assert health.open_session("relay", limits, T0) is not None


def test_unknown_outcomes_are_refused(health_cache):
    with pytest.raises(ValueError, match="'sent'"):
        service().after_result("relay", "sent")


def spec(name, priority):
    return RouteSpec(name=name, host="127.0.0.1", port=25, priority=priority)


def test_order_keeps_priorities_and_favours_healthy_routes(health_cache):
    health = service()
    for i in range(100):
        health.after_result("bad", "route_fault" if i % 2 else "delivered", False, 0.1, "", T0)
        health.after_result("good", "delivered", False, 0.1, "", T0)
    routes = [spec("backup", 20), spec("bad", 10), spec("good", 10)]
    firsts = Counter()
    for _ in range(2000):
        ordered = health.order(routes, T0)
        assert ordered[2].name == "backup" and {r.name for r in ordered[:2]} == {"bad", "good"}
        firsts[ordered[0].name] += 1
    # "bad" succeeds 50% against 100%: a score of 0.25, so a share of 0.2.
    assert 300 < firsts["bad"] < 500


def test_order_takes_names_and_an_even_split(health_cache):
    health = service()
    firsts = Counter(health.order(["a", "b"], T0)[0] for _ in range(2000))
    assert 850 < firsts["a"] < 1150


def test_order_of_one_route_touches_nothing(health_cache):
    assert service().order([spec("only", 10)], T0)[0].name == "only"
