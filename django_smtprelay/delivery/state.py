"""What the engine keeps in memory about one claimed batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..models import Message, Recipient
from ..models.bulk import ids_in
from ..replies import Verdict
from ..routing import RouteSpec
from ..transports.base import Content

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
    provider_message_id: str = ""
    changed: bool = False


class _BatchTimes:
    """When a batch's messages were queued and when they expire, read on first need.

    Only failures need them (a retry past the lifetime, a full mailbox given
    up on); a batch that is delivered never reads them.
    """

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids
        self._by_pk: dict[int, tuple[datetime, datetime]] | None = None

    def __call__(self, pk: int) -> tuple[datetime, datetime]:
        if self._by_pk is None:
            self._by_pk = {
                pk: (created, expires)
                for pk, created, expires in Message.objects.filter(ids_in(self.ids)).values_list(
                    "pk", "created_at", "expires_at"
                )
            }
        return self._by_pk[pk]


@dataclass
class _Msg:
    """One claimed message; its recipients may travel in several parts."""

    pk: int
    sender: str
    data: bytes | Content  # Content: a large message, read when it is sent
    times: _BatchTimes
    attempt_count: int
    rcpts: dict[str, _Rcpt]
    parts_left: int = 0
    last_reply: str = ""
    retry_route: str = ""
    not_before: float = 0.0  # seconds: held back by a rate limit
    # A relay may have it already (an earlier worker's lease expired, or a
    # reply was lost after the final dot): its next delivery may be a second.
    maybe_sent_before: bool = False
    # An attempt may have delivered it twice (kept on the message's row).
    possible_duplicate: bool = False
    # Settled without an attempt (expired, or its bytes gone): not counted as a try.
    not_attempted: bool = False
    # The From header's domain: whose DKIM keys sign it on a route that signs.
    from_domain: str = ""
    # Deferred before this claim (a recipient was left deferred): a deferral now
    # is not its first, and the statistics count a message's first one only.
    was_deferred: bool = field(init=False)

    def __post_init__(self) -> None:
        self.was_deferred = any(r.status == Recipient.Status.DEFERRED for r in self.rcpts.values())

    @property
    def created_at(self) -> datetime:
        return self.times(self.pk)[0]

    @property
    def expires_at(self) -> datetime:
        return self.times(self.pk)[1]


@dataclass
class _Part:
    """Recipients of one message that share a list of candidate routes."""

    msg: _Msg
    routes: list[RouteSpec]
    open_addresses: list[str] = field(default_factory=list)  # still looking for a route
    last_fault: Verdict | None = None  # the last route fault, for when no route is left
    done: bool = False
    # "route: why" for each route it could not use; made on the first one only,
    # so a part that is delivered costs nothing more.
    unusable: list[str] | None = None
    # What the router matched it by (hint, sender, From and recipient domains,
    # size), to say why the other routes do not take it if none is left.
    match: tuple[str, str, str, str, int] = ("", "", "", "", 0)
    # The DKIM keys it was signed with for the route sending it now (names; blank: unsigned).
    signed_by: str = ""
    # The recipients' destination group ("" when there was no choice to make),
    # and the figures that ordered its routes, as its attempts record them.
    group: str = ""
    choice: dict[str, object] | None = None

    def could_not_use(self, reason: str) -> None:
        """Keep ``reason`` ("route: why") for the message's error if no route is left."""
        if self.unusable is None:
            self.unusable = []
        self.unusable.append(reason)
