"""Logins and what an account may do; synchronous, run in the listener's threads."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from django.contrib.auth.hashers import make_password
from django.db.models import F
from django.utils import timezone

from ..models import SubmissionAccount
from ..models.submission import parse_allowed_senders

logger = logging.getLogger("django_smtprelay.submission")

# Checked when the username is unknown, so that a miss costs as long as a hit
# (no timing tells which usernames exist).
_DUMMY_HASH: list[str] = []


@dataclass(frozen=True)
class Account:
    """What the conversation needs of an account, read once at login."""

    pk: int
    name: str
    username: str
    senders: frozenset[str]
    route_tag: str
    max_message_size: int | None
    per_minute: int | None
    per_hour: int | None

    def may_send_as(self, address: str) -> bool:
        address = address.strip().lower()
        return bool(address) and (
            address in self.senders or address.rpartition("@")[2] in self.senders
        )


def authenticate(username: str, password: str) -> Account | None:
    """The enabled account with these credentials, or None."""
    row = SubmissionAccount.objects.filter(username=username, enabled=True).first()
    if row is None:
        if not _DUMMY_HASH:
            _DUMMY_HASH.append(make_password("not a password"))
        SubmissionAccount(password=_DUMMY_HASH[0]).check_password(password)
        return None
    if not row.check_password(password):
        return None
    try:
        senders = frozenset(parse_allowed_senders(row.allowed_senders))
    except Exception:  # an invalid line written past the form: send as no one
        logger.warning("Submission account %r has invalid allowed senders", row.name)
        senders = frozenset()
    return Account(
        pk=row.pk,
        name=row.name,
        username=row.username,
        senders=senders,
        route_tag=row.route_tag,
        max_message_size=row.max_message_size,
        per_minute=row.max_messages_per_minute,
        per_hour=row.max_messages_per_hour,
    )


@dataclass
class _Tally:
    accepted: int = 0
    rejected: int = 0
    client: str | None = None
    last_used: object = None


@dataclass
class Activity:
    """Accounts' use (volume, rejections, last use), written at most once a
    second per process: one ``UPDATE`` per message would double the writes
    of the store."""

    interval: float = 1.0
    _tallies: dict[int, _Tally] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _flushed: float = field(default_factory=time.monotonic)

    def record(self, account_id: int, client: str | None, *, accepted: bool) -> None:
        with self._lock:
            tally = self._tallies.setdefault(account_id, _Tally())
            if accepted:
                tally.accepted += 1
                tally.last_used = timezone.now()
                tally.client = client
            else:
                tally.rejected += 1

    def due(self) -> bool:
        return bool(self._tallies) and time.monotonic() - self._flushed >= self.interval

    def flush(self) -> None:
        """Write what was recorded since the last flush (a failure keeps it for the next)."""
        with self._lock:
            tallies, self._tallies = self._tallies, {}
            self._flushed = time.monotonic()
        try:
            for pk, tally in tallies.items():
                fields: dict[str, object] = {
                    "messages_accepted": F("messages_accepted") + tally.accepted,
                    "messages_rejected": F("messages_rejected") + tally.rejected,
                }
                if tally.last_used is not None:
                    fields["last_used_at"] = tally.last_used
                    fields["last_client"] = tally.client
                SubmissionAccount.objects.filter(pk=pk).update(**fields)
        except Exception:
            with self._lock:
                for pk, tally in tallies.items():
                    kept = self._tallies.setdefault(pk, _Tally())
                    kept.accepted += tally.accepted
                    kept.rejected += tally.rejected
                    kept.last_used = kept.last_used or tally.last_used
                    kept.client = kept.client or tally.client
            raise
