"""Shared counters and state in Django's cache, and the RouteHealth row.

Everything that must hold across workers goes through the cache named by
``SMTPRELAY["CACHE_ALIAS"]`` with only the operations that are atomic in
Redis and in LocMemCache: ``add`` (set if absent) and ``incr``/``decr``.
LocMemCache is per process, so it is right for a single worker only; with
several workers the alias must point at a shared cache such as Redis.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any
from urllib.parse import quote

from django.core.cache import BaseCache, caches
from django.db import IntegrityError, transaction
from django.utils import timezone

from ..conf import app_settings
from ..models import RouteHealth

PREFIX = "smtprelay:health"


def get_cache(alias: str | None = None) -> BaseCache:
    """The cache for route health, looked up on use so settings can change in tests."""
    return caches[alias or app_settings.cache_alias]


def key(kind: str, route_name: str, *parts: object) -> str:
    """A cache key; route names are quoted so any name is a valid memcached key."""
    tail = "".join(f":{p}" for p in parts)
    return f"{PREFIX}:{kind}:{quote(route_name, safe='')}{tail}"


def bump(cache: BaseCache, name: str, delta: int, timeout: float) -> int:
    """Add ``delta`` to a counter, creating it with ``timeout``; returns the new value.

    ``incr`` keeps the key's expiry, so a fixed window's counter dies with its
    window however often it is bumped.
    """
    for _ in range(3):
        try:
            return cache.incr(name, delta)
        except ValueError:  # missing: create it, unless another process just did
            if cache.add(name, delta, timeout=timeout):
                return delta
    raise RuntimeError(f"could not update the counter {name!r} in the route health cache")


def unbump(cache: BaseCache, name: str, delta: int = 1) -> None:
    """Take back an increment; a counter that has expired meanwhile needs nothing."""
    with contextlib.suppress(ValueError):
        cache.decr(name, delta)


def from_timestamp(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=dt_timezone.utc)


def save_health(route_name: str, **fields: Any) -> None:
    """Write fields of one route's RouteHealth row, creating the row if needed."""
    fields["updated_at"] = timezone.now()  # update() skips auto_now
    if RouteHealth.objects.filter(route_name=route_name).update(**fields):
        return
    try:
        with transaction.atomic():
            RouteHealth.objects.create(route_name=route_name, **fields)
    except IntegrityError:  # another worker created it first
        RouteHealth.objects.filter(route_name=route_name).update(**fields)
