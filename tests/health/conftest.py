"""Route health runs against LocMemCache and, when it is reachable, Redis.

Redis is expected on 127.0.0.1:6379 (database 14 is this suite's). Without
it the Redis cases are skipped, unless SMTPRELAY_TEST_REQUIRE_SERVICES=1
(CI, with SMTPRELAY_TEST_BROKER=redis://127.0.0.1:6379/15), where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from django.core.cache import BaseCache, caches

from tests.fixtures import services_required

REDIS_URL = os.environ.get("SMTPRELAY_TEST_HEALTH_REDIS", "redis://127.0.0.1:6379/14")
LOCMEM = {
    "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
    "LOCATION": "health",
    # Room for every counter (the default of 300 culls a third at random when full).
    "OPTIONS": {"MAX_ENTRIES": 100_000},
}
REDIS = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}

# A fixed instant; tests move the clock by passing ``now``.
T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def redis_reachable() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def require_redis() -> None:
    """Skip without Redis on a laptop; fail in CI, where it must be there."""
    if redis_reachable():
        return
    message = (
        f"Redis is not reachable at {REDIS_URL}; start Redis on 127.0.0.1:6379 "
        "(CI runs with SMTPRELAY_TEST_BROKER=redis://127.0.0.1:6379/15)"
    )
    if services_required():
        pytest.fail(f"SMTPRELAY_TEST_REQUIRE_SERVICES=1 but {message}")
    pytest.skip(message)


def use_health_cache(settings: Any, backend: dict[str, Any]) -> BaseCache:
    settings.CACHES = {"default": LOCMEM, "health": backend}
    settings.SMTPRELAY = {**settings.SMTPRELAY, "CACHE_ALIAS": "health"}
    cache = caches["health"]
    cache.clear()
    return cache


@pytest.fixture(params=["locmem", "redis"])
def health_cache(request: pytest.FixtureRequest, settings: Any) -> Iterator[BaseCache]:
    """The route health cache, once LocMemCache and once Redis."""
    if request.param == "redis":
        require_redis()
    cache = use_health_cache(settings, LOCMEM if request.param == "locmem" else REDIS)
    yield cache
    cache.clear()


@pytest.fixture
def redis_cache(settings: Any) -> Iterator[BaseCache]:
    """Redis as the route health cache (skipped or failed without it, see above)."""
    require_redis()
    cache = use_health_cache(settings, REDIS)
    yield cache
    cache.clear()
