"""Limits shared across listener processes through Django's cache: failed
logins per client address and messages per account; and the queue's depth."""

from __future__ import annotations

import time

from ..health.store import bump, get_cache
from ..models import Message
from .settings import submission_settings

PREFIX = "smtprelay:submission"


def _client_key(client: str) -> str:
    return f"{PREFIX}:authfail:{client}"


def login_blocked(client: str) -> bool:
    """Whether ``client`` has failed too many logins within the window."""
    count = get_cache().get(_client_key(client)) or 0
    return count >= submission_settings.login_failure_limit


def login_failed(client: str) -> int:
    """Count a failed login for ``client``; return its failures in the window."""
    return bump(get_cache(), _client_key(client), 1, submission_settings.login_failure_window)


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
