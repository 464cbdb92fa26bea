"""Rate limits: fixed windows, the connection cap, and slowing down after throttling."""

from datetime import timedelta

import pytest
from django.core.checks import run_checks

from django_smtprelay.health import RateLimiter, RateLimits
from django_smtprelay.health.ratelimit import MIN_FACTOR
from tests.health.conftest import T0

S = timedelta(seconds=1)
MS = timedelta(milliseconds=1)


def grants(limiter, now, attempts):
    return sum(limiter.acquire(now) == 0 for _ in range(attempts))


def ttl(cache, key):
    """Seconds left on a raw cache key, for LocMemCache and Redis."""
    full = cache.make_and_validate_key(key)
    if hasattr(cache, "_expire_info"):
        import time

        return cache._expire_info[full] - time.time()
    return cache._cache.get_client(full).ttl(full)


def test_per_second_limit_and_the_wait(health_cache):
    limiter = RateLimiter("relay", RateLimits(per_second=3))
    now = T0 + 250 * MS
    assert [limiter.acquire(now) for _ in range(3)] == [0, 0, 0]
    assert limiter.acquire(now) == pytest.approx(0.75)
    assert limiter.acquire(T0 + S) == 0


def test_a_refused_send_counts_nothing(health_cache):
    limiter = RateLimiter("relay", RateLimits(per_second=2, per_minute=3))
    assert grants(limiter, T0, 5) == 2
    assert grants(limiter, T0 + S, 1) == 1
    # The minute is full: refused, and the per-second unit taken on the way is given back.
    assert limiter.acquire(T0 + S) == pytest.approx(59)
    assert grants(RateLimiter("relay", RateLimits(per_second=2)), T0 + S, 5) == 1


def test_per_hour_limit(health_cache):
    limiter = RateLimiter("relay", RateLimits(per_hour=2))
    assert grants(limiter, T0, 2) == 2
    assert limiter.acquire(T0 + timedelta(minutes=30)) == pytest.approx(1800)
    assert limiter.acquire(T0 + timedelta(hours=1)) == 0


def test_no_limits_grant_everything(health_cache):
    assert grants(RateLimiter("relay", RateLimits()), T0, 50) == 50


def test_the_connection_cap_and_slot_expiry(health_cache):
    limiter = RateLimiter(
        "relay", RateLimits(max_connections=2), connection_ttl=timedelta(seconds=60)
    )
    first, second = limiter.open_connection(T0), limiter.open_connection(T0)
    assert first and second and limiter.open_connection(T0) is None
    assert 0 < ttl(health_cache, first.key) <= 60  # a crashed worker's slot expires
    limiter.close_connection(first)
    with limiter.connection(T0) as slot:
        assert slot is not None and limiter.open_connection(T0) is None
    assert limiter.open_connection(T0) is not None


def test_renewing_a_slot_keeps_it(health_cache):
    limiter = RateLimiter("relay", RateLimits(max_connections=1), connection_ttl=timedelta(hours=1))
    slot = limiter.open_connection(T0)
    health_cache.touch(slot.key, timeout=5)
    limiter.renew(slot)
    assert ttl(health_cache, slot.key) > 3000


def test_renewing_a_slot_taken_over_leaves_the_new_holder_alone(health_cache):
    limiter = RateLimiter("relay", RateLimits(max_connections=1), connection_ttl=timedelta(hours=1))
    old = limiter.open_connection(T0)
    health_cache.delete(old.key)  # expired
    new = limiter.open_connection(T0)
    assert new.key == old.key
    health_cache.touch(new.key, timeout=5)
    limiter.renew(old)  # a session that outlived its slot must not extend another's
    assert ttl(health_cache, new.key) <= 5


def test_closing_an_expired_slot_leaves_the_new_holder_alone(health_cache):
    limiter = RateLimiter("relay", RateLimits(max_connections=1))
    old = limiter.open_connection(T0)
    health_cache.delete(old.key)  # expired
    new = limiter.open_connection(T0)
    limiter.close_connection(old)
    assert limiter.open_connection(T0) is None
    limiter.close_connection(new)
    assert limiter.open_connection(T0) is not None


def test_unlimited_connections_need_no_slot(health_cache):
    limiter = RateLimiter("relay", RateLimits())
    assert all(limiter.open_connection(T0) for _ in range(20))


def test_slow_down_scales_configured_limits_for_a_while(health_cache):
    limiter = RateLimiter("relay", RateLimits(per_second=10, max_connections=4))
    slow = limiter.slow_down(0.5, timedelta(minutes=10), "421 4.7.0 Try again later", T0)
    assert slow.factor == 0.5 and slow.reason == "421 4.7.0 Try again later"
    assert limiter.effective(T0 + S) == RateLimits(per_second=5, max_connections=2)
    assert grants(limiter, T0 + S, 10) == 5
    assert sum(limiter.open_connection(T0 + S) is not None for _ in range(4)) == 2
    assert limiter.effective(T0 + timedelta(minutes=10)) == limiter.limits
    assert grants(limiter, T0 + timedelta(minutes=10), 20) == 10


def test_a_route_without_limits_gets_half_the_rate_it_had(health_cache):
    limiter = RateLimiter("relay", RateLimits())
    assert grants(limiter, T0, 30) == 30
    minute = T0 + timedelta(minutes=1)
    slow = limiter.slow_down(0.5, timedelta(minutes=10), "421 too many messages", minute)
    assert slow.per_minute == 15
    assert limiter.effective(minute) == RateLimits(per_minute=15)
    assert grants(limiter, minute, 30) == 15


def test_a_route_that_sent_nothing_gets_one_a_minute(health_cache):
    limiter = RateLimiter("relay", RateLimits())
    assert limiter.slow_down(0.5, timedelta(minutes=10), "421", T0).per_minute == 1


def test_throttles_of_one_burst_extend_and_later_ones_compound(health_cache):
    limiter = RateLimiter("relay", RateLimits(per_minute=64))
    duration = timedelta(minutes=10)
    limiter.slow_down(0.5, duration, "421", T0)
    again = limiter.slow_down(0.5, duration, "421", T0 + 30 * S)
    assert again.factor == 0.5 and again.until == (T0 + 30 * S + duration).timestamp()
    later = limiter.slow_down(0.5, duration, "421", T0 + 61 * S)
    assert later.factor == 0.25
    at = T0 + 61 * S
    for _ in range(10):
        at += 61 * S
        limiter.slow_down(0.5, duration, "421", at)
    assert limiter.slowed(at).factor == MIN_FACTOR
    assert limiter.effective(at).per_minute == 4


def test_limits_come_from_settings(relay_settings):
    relay_settings(RATE_LIMITS={"relay": {"per_second": 5, "max_connections": 2}})
    assert RateLimiter("relay").limits == RateLimits(per_second=5, max_connections=2)
    assert RateLimiter("other").limits == RateLimits()


@pytest.mark.parametrize(
    "value",
    [[], {"relay": {"per_sec": 5}}, {"relay": {"per_second": 0}}, {"relay": 5}],
)
def test_bad_rate_limits_are_a_check_error_naming_the_value(relay_settings, value):
    relay_settings(RATE_LIMITS=value)
    messages = [m for m in run_checks() if m.id == "smtprelay.E001"]
    assert messages and "RATE_LIMITS" in messages[0].msg


def test_an_unknown_cache_alias_is_a_check_error(relay_settings):
    relay_settings(CACHE_ALIAS="nope")
    messages = [m for m in run_checks() if m.id == "smtprelay.E001"]
    assert messages and "'nope'" in messages[0].msg
