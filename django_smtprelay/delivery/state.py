"""What the engine keeps in memory about one claimed batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..models import Recipient
from ..replies import Verdict
from ..routing import RouteSpec

OPEN_STATES = (Recipient.Status.PENDING, Recipient.Status.DEFERRED)


@dataclass
class RunReport:
    """What one run did; the command prints it and the benchmark reads it."""

    claimed: int = 0
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    attempts: int = 0
    sessions: int = 0
    lost_leases: int = 0


@dataclass
class _Rcpt:
    pk: int
    address: str
    status: str
    smtp_code: int | None = None
    enhanced_code: str = ""
    reply: str = ""
    route_pk: int | None = None
    changed: bool = False


@dataclass
class _Msg:
    """One claimed message; its recipients may travel in several parts."""

    pk: int
    sender: str
    data: bytes
    expires_at: datetime
    created_at: datetime
    attempt_count: int
    rcpts: dict[str, _Rcpt]
    parts_left: int = 0
    last_reply: str = ""
    retry_route: str = ""
    not_before: float = 0.0  # seconds: held back by a rate limit


@dataclass
class _Part:
    """Recipients of one message that share a list of candidate routes."""

    msg: _Msg
    routes: list[RouteSpec]
    open_addresses: list[str] = field(default_factory=list)  # still looking for a route
    last_fault: Verdict | None = None  # the last route fault, for when no route is left
    done: bool = False
