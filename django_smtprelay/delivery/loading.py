"""Loading a claimed batch: its messages and recipients, split into parts.

Recipients of one message that the same routes may take travel together in
one part (one SMTP transaction); suppressed recipients are settled here and
never sent to.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db.models import BinaryField, Case, F, When
from django.db.models.functions import Length

from ..conf import app_settings
from ..health import RouteHealthService
from ..health.destinations import DestinationGroups
from ..models import Message, Recipient, Suppression
from ..models.bulk import strings_in
from ..replies import Outcome, Verdict
from ..routing import Router, RouteSpec
from .content import STREAM_ABOVE, StoredContent
from .reasons import no_route_takes
from .state import OPEN_STATES, _BatchTimes, _Msg, _Part, _Rcpt


def load_parts(
    token: uuid.UUID,
    ids: list[int],
    taken_over: frozenset[int],
    router: Router,
    health: RouteHealthService,
    now: datetime,
) -> tuple[list[_Part], list[_Msg]]:
    """The parts to send of the batch held by ``token``, and the messages with
    nothing to send (every recipient suppressed or already final, or the
    message past its ``deliver_by``: its open recipients fail as expired)."""
    # By the lease token, not the ids: the same rows (``ids`` are the
    # token's), without an IN list of hundreds of parameters.
    # A large message's bytes stay in the database until it is sent
    # (StoredContent): a batch of them would not fit in memory.
    rows = (
        Message.objects.filter(lease_token=token)
        .annotate(
            content_size=Length("content__raw"),
            small_raw=Case(
                When(content_size__lte=STREAM_ABOVE, then=F("content__raw")),
                default=None,
                output_field=BinaryField(),
            ),
        )
        .order_by("priority", "next_attempt_at", "pk")
        .values_list(
            "pk",
            "from_email",
            "small_raw",
            "content_size",
            "attempt_count",
            "route_hint",
            "retry_route",
            "sender_domain",
            "from_domain",
            "size",
            "possible_duplicate",
            "deliver_by",
        )
    )
    rcpts: dict[int, dict[str, _Rcpt]] = {}
    for pk, message_id, address, status in Recipient.objects.filter(
        message__lease_token=token
    ).values_list("pk", "message_id", "address", "status"):
        rcpts.setdefault(message_id, {})[address] = _Rcpt(pk, address, status)
    suppressed = _suppressed(rcpts)
    parts: list[_Part] = []
    nothing_to_send: list[_Msg] = []
    times = _BatchTimes(ids)
    using = rows.db
    # Destinations are grouped only where there is a choice of routes to make.
    groups = (
        DestinationGroups() if app_settings.destination_routing and len(router.routes) > 1 else None
    )
    by_domain_key = router.any_recipient_rules or groups is not None
    # Routes are matched once per batch for each set of values they are matched
    # by (most of a batch shares them), not once per message. A message's size
    # matters to a route with a size limit only, so without one it is no key.
    sized = any(r.max_message_size for r in router.routes)
    matched: dict[tuple[str, str, str, str, int], list[RouteSpec]] = {}
    for pk, sender, raw, content_size, attempts, hint, retry, s_dom, f_dom, size, dup, by in rows:
        if content_size is None:  # its bytes are gone (retention): nothing can be sent
            msg = _Msg(pk, sender, b"", times, attempts, rcpts.get(pk, {}))
            _fail_unsent(msg, "its content was deleted (retention): nothing to send")
            nothing_to_send.append(msg)
            continue
        data = bytes(raw) if raw is not None else StoredContent(pk, content_size, using)
        msg = _Msg(pk, sender, data, times, attempts, rcpts.get(pk, {}), from_domain=f_dom or "")
        msg.maybe_sent_before = dup or pk in taken_over
        if by is not None and by <= now:
            _fail_unsent(msg, f"expired: not delivered by {by.isoformat(timespec='seconds')}")
            nothing_to_send.append(msg)
            continue
        open_rcpts = [r for r in msg.rcpts.values() if r.status in OPEN_STATES]
        for rcpt in open_rcpts:
            if rcpt.address.lower() in suppressed:
                rcpt.status, rcpt.changed = Recipient.Status.SUPPRESSED, True
                rcpt.reply = "suppressed: " + suppressed[rcpt.address.lower()]
                msg.last_reply = rcpt.reply
        open_rcpts = [r for r in open_rcpts if r.status in OPEN_STATES]
        # Recipients that the same routes may take travel together; the
        # others are split into their own parts (and SMTP transactions).
        by_routes: dict[tuple[object, ...], _Part] = {}
        orders: dict[tuple[tuple[str, ...], str], tuple[list[RouteSpec], dict | None]] = {}
        for rcpt in open_rcpts:
            domain = rcpt.address.rpartition("@")[2].lower() if by_domain_key else ""
            match_key = (hint, s_dom, f_dom, domain, size if sized else 0)
            routes = matched.get(match_key)
            if routes is None:  # (a list never changed: ordering copies it)
                routes = matched[match_key] = router.matching(
                    hint,
                    sender_domain=s_dom,
                    from_domain=f_dom,
                    recipient_domain=domain,
                    size=size,
                )
            group = groups.group(domain) if groups is not None and len(routes) > 1 else ""
            order_key = (tuple(r.name for r in routes), group)
            if order_key not in orders:
                choice = None
                if group:
                    ordered, choice = health.order_for(routes, group)
                else:
                    ordered = health.order(routes) if len(routes) > 1 else list(routes)
                # Greylisting is passed only by coming back to the same relay.
                ordered.sort(key=lambda r: r.name != retry)
                orders[order_key] = (ordered, choice)
            ordered, choice = orders[order_key]
            # Recipients whose routes come out in the same order travel together
            # (the first one's group is the part's, for its attempts and health).
            key = tuple(r.name for r in ordered) if ordered else order_key
            if key not in by_routes:
                by_routes[key] = _Part(
                    msg,
                    list(ordered),
                    match=(hint, s_dom, f_dom, domain, size),
                    group=group,
                    choice=choice,
                )
            by_routes[key].open_addresses.append(rcpt.address)
        for part in by_routes.values():
            if not part.routes:
                if router.too_large_everywhere(size):
                    msg.last_reply = f"{size} bytes is larger than every route accepts"
                    part.last_fault = Verdict(
                        Outcome.ROUTE_FAULT, msg.last_reply, if_last_route=Outcome.PERMANENT
                    )
                elif part.choice is not None:
                    # Every route that takes it has its circuit for this destination open.
                    names = ", ".join(str(r["route"]) for r in part.choice["routes"])  # type: ignore[index, union-attr]
                    msg.last_reply = f"the circuits of {names} for {part.group} are open"
                else:
                    msg.last_reply = no_route_takes(router, part.match)
        msg.parts_left = len(by_routes)
        if not by_routes:
            nothing_to_send.append(msg)
        parts.extend(by_routes.values())
    return parts, nothing_to_send


def _fail_unsent(msg: _Msg, reason: str) -> None:
    """Fail every open recipient of a message that is never to be sent (past its
    expiry, or its bytes gone); no attempt is made, so none is counted."""
    msg.last_reply = reason
    msg.not_attempted = True
    for rcpt in msg.rcpts.values():
        if rcpt.status in OPEN_STATES:
            rcpt.status, rcpt.changed, rcpt.reply = Recipient.Status.FAILED, True, msg.last_reply


def _suppressed(rcpts: dict[int, dict[str, _Rcpt]]) -> dict[str, str]:
    addresses = {
        a.lower() for per in rcpts.values() for a, r in per.items() if r.status in OPEN_STATES
    }
    if not addresses:
        return {}
    return dict(
        Suppression.objects.filter(strings_in(sorted(addresses), "address")).values_list(
            "address", "reason"
        )
    )
