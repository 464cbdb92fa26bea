"""Route health: circuit breakers, rate limits and health-weighted routing.

State shared by workers lives in the cache named by ``SMTPRELAY["CACHE_ALIAS"]``
(``"default"`` unless set). LocMemCache, Django's default, is per process: it
is right for a single worker, but with several workers each would keep its own
counters, so limits would multiply and circuits open separately. Point the alias
at Redis (``django.core.cache.backends.redis.RedisCache``) or another shared
cache when more than one worker sends.

The delivery engine uses :class:`RouteHealthService`; the parts are usable on
their own: :mod:`.circuit`, :mod:`.ratelimit`, :mod:`.score`, and per
destination group :mod:`.destinations` (domain -> group from MX hosts) and
:mod:`.per_destination` (health, shares and circuits per route and group).
"""

from .circuit import BreakerPolicy, BreakerState, CircuitBreaker
from .ratelimit import ConnectionSlot, RateLimiter, RateLimits, SlowDown
from .score import HealthScores, RouteScore
from .service import RouteHealthService

__all__ = [
    "BreakerPolicy",
    "BreakerState",
    "CircuitBreaker",
    "ConnectionSlot",
    "HealthScores",
    "RateLimiter",
    "RateLimits",
    "RouteHealthService",
    "RouteScore",
    "SlowDown",
]
