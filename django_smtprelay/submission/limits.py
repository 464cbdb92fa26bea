"""Limits shared across listener processes through Django's cache: failed
logins per client address and messages per account; and the queue's depth."""

from __future__ import annotations

import ipaddress
import time

from ..health.store import bump, get_cache, unbump
from ..models import Message
from .settings import submission_settings

PREFIX = "smtprelay:submission"


def client_key(client: str) -> str:
    """What failed logins are counted by: an IPv4 address, or an IPv6 client's /64.

    A host given an IPv6 /64 (the usual site or customer allocation) could
    otherwise try from a new address each time and never be held back.
    """
    try:
        ip = ipaddress.ip_address(client.split("%")[0])
    except ValueError:
        return client
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _keys(client: str) -> tuple[str, str]:
    """(attempts under check or failed, failures) of a client's address or /64."""
    who = client_key(client)
    return f"{PREFIX}:authtry:{who}", f"{PREFIX}:authfail:{who}"


def login_reserve(client: str) -> str:
    """Take a place for one login check of ``client``: ``"go"``, ``"blocked"``
    (too many failures in the window), or ``"busy"`` (as many checks under
    way as failures left to allow: ask again once they are done).

    The place is counted first, with one atomic increment, so connections
    trying at the same moment cannot all pass a check that read the count
    before any of them added to it; a place that is not taken is given back.
    """
    cache = get_cache()
    attempts_key, failures_key = _keys(client)
    limit = submission_settings.login_failure_limit
    window = submission_settings.login_failure_window
    taken = bump(cache, attempts_key, 1, window)
    failures = cache.get(failures_key) or 0
    if taken <= limit and failures < limit:
        return "go"
    unbump(cache, attempts_key)
    return "blocked" if failures >= limit else "busy"


def login_failed(client: str) -> int:
    """Count a failed login (its place stays taken); return the failures in the window."""
    return bump(get_cache(), _keys(client)[1], 1, submission_settings.login_failure_window)


def login_released(client: str) -> None:
    """Give back the place of a login that succeeded or could not be checked."""
    unbump(get_cache(), _keys(client)[0])


def failure_delay(failures: int) -> float:
    """Seconds to wait before answering a failed login: grows with each failure."""
    return min(0.25 * failures, 5.0)


def _rate_keys(account_id: int, now: float) -> list[tuple[str, str, int]]:
    return [
        ("minute", f"{PREFIX}:rate:{account_id}:m:{int(now // 60)}", 60),
        ("hour", f"{PREFIX}:rate:{account_id}:h:{int(now // 3600)}", 3600),
    ]


def over_rate(account_id: int, per_minute: int | None, per_hour: int | None) -> str | None:
    """'minute' or 'hour' when the account has used up that limit, else None."""
    if not per_minute and not per_hour:
        return None
    cache = get_cache()
    limits = {"minute": per_minute, "hour": per_hour}
    keys = _rate_keys(account_id, time.time())
    values = cache.get_many([k for _, k, _ in keys])
    for unit, key, _ in keys:
        limit = limits[unit]
        if limit and (values.get(key) or 0) >= limit:
            return unit
    return None


def count_message(account_id: int, per_minute: int | None, per_hour: int | None) -> None:
    """Count one accepted message towards the account's limits."""
    if not per_minute and not per_hour:
        return
    cache = get_cache()
    for _unit, key, window in _rate_keys(account_id, time.time()):
        bump(cache, key, 1, window + 5)


class QueueDepth:
    """The number of unfinished messages, counted at most once a second (a
    count of the open messages walks an index; once per message would cost
    more than the store)."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._at = -interval
        self._value = 0

    def over(self) -> int | None:
        """The configured depth when the queue has reached it, else None."""
        limit = submission_settings.max_queue_depth
        if limit is None:
            return None
        now = time.monotonic()
        if now - self._at >= self.interval:
            open_states = (Message.Status.QUEUED, Message.Status.SENDING, Message.Status.DEFERRED)
            # The partial index smtprelay_msg_open holds exactly these.
            self._value = Message.objects.filter(status__in=open_states).count()
            self._at = now
        return limit if self._value >= limit else None

    def added(self) -> None:
        self._value += 1
