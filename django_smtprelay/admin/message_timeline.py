"""A message's story in time order: queued, every attempt, each recipient's fate.

Capped like the inlines beside it: the first ``SHOWN`` attempts and the first
``SHOWN`` recipient events, with how many there are and where the rest are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from ..models import DeliveryAttempt, Message, Recipient, RecipientEvent
from .message_inlines import SHOWN, filtered_list_url

# Recipients named under one attempt in the timeline (a bulk attempt lists thousands).
DETAIL_LINES = 10


@dataclass
class Event:
    at: datetime
    kind: str  # queued | attempt | recipient | sent | provider
    state: str
    label: str
    route: str = ""
    code: str = ""
    reply: str = ""
    detail: str = ""
    order: int = field(default=0, repr=False)


def _recipient_line(entry: object) -> str:
    """One recipient of a multi-recipient attempt (``{address, outcome, reply}``)."""
    if not isinstance(entry, dict):
        return str(entry)
    return (
        f"{entry.get('address', '?')}: {entry.get('outcome', '')} {entry.get('reply', '')}".strip()
    )


def _recipient_lines(entries: list[object]) -> str:
    """The first ``DETAIL_LINES`` recipients of an attempt, and how many more there were."""
    lines = "; ".join(_recipient_line(r) for r in entries[:DETAIL_LINES])
    if len(entries) > DETAIL_LINES:
        rest = len(entries) - DETAIL_LINES
        lines += "; " + ngettext("and %(n)d more", "and %(n)d more", rest) % {"n": rest}
    return lines


@dataclass
class More:
    """Rows the timeline leaves out: ``total`` of them in all, listed at ``url``."""

    what: str
    shown: int
    total: int
    url: str


@dataclass
class Timeline:
    events: list[Event]
    more: list[More]


def _capped(
    rows: list[Any], message: Message, model: type, what: str, counted: QuerySet
) -> More | None:
    """What was left out of ``rows`` (a page of ``counted``), or None when nothing was."""
    if len(rows) < SHOWN:
        return None
    total = counted.count()
    if total <= SHOWN:
        return None
    return More(what, len(rows), total, filtered_list_url(model, message.pk))


def timeline(message: Message) -> Timeline:
    """The first attempts and recipient events of ``message``, oldest first."""
    events = [Event(message.created_at, "queued", "queued", _("Queued"), order=0)]
    attempts = list(message.attempts.order_by("started_at", "pk")[:SHOWN])
    changed = message.recipients.filter(updated_at__isnull=False)
    recipients = list(changed.select_related("route").order_by("updated_at", "pk")[:SHOWN])
    more = [
        m
        for m in (
            _capped(attempts, message, DeliveryAttempt, "attempts", message.attempts.all()),
            _capped(recipients, message, Recipient, "recipients", changed),
        )
        if m is not None
    ]
    for attempt in attempts:
        code = " ".join(str(c) for c in (attempt.smtp_code, attempt.enhanced_code) if c)
        detail = _recipient_lines(attempt.recipients or [])
        if attempt.exception:
            detail = f"{detail} ({attempt.exception})".strip()
        events.append(
            Event(
                attempt.started_at,
                "attempt",
                attempt.outcome,
                attempt.get_outcome_display(),
                route=attempt.route_name,
                code=code,
                reply=attempt.reply,
                detail=detail,
                order=1,
            )
        )
    for rcpt in recipients:
        code = " ".join(str(c) for c in (rcpt.smtp_code, rcpt.enhanced_code) if c)
        events.append(
            Event(
                rcpt.updated_at,
                "recipient",
                rcpt.status,
                f"{rcpt.address}: {rcpt.get_status_display()}",
                route=rcpt.route.name if rcpt.route else "",
                code=code,
                reply=rcpt.reply,
                order=2,
            )
        )
    # What the ESP (or a returned bounce) said after the relay accepted the message.
    events.extend(provider_events(message))
    if message.sent_at:
        events.append(Event(message.sent_at, "sent", "sent", _("Sent"), order=3))
    return Timeline(sorted(events, key=lambda e: (e.at, e.order)), more)


def provider_events(message: Message) -> list[Event]:
    """The recipients' events from ESP webhooks and returned bounces (DSNs)."""
    rows = RecipientEvent.objects.filter(recipient__message=message).select_related("recipient")
    return [
        Event(
            row.at,
            "provider",
            row.kind,
            f"{row.recipient.address}: {row.get_kind_display()}"
            + (f" ({_('hard')})" if row.hard else ""),
            route=row.esp or row.get_source_display(),
            code=" ".join(
                _CODE.findall(row.mta_response)[:1] + _ENHANCED.findall(row.mta_response)[:1]
            ),
            reply=row.mta_response,
            detail=row.description,
            order=4,
        )
        for row in rows.order_by("at", "pk")[:SHOWN]
    ]


_CODE = re.compile(r"\b[245]\d\d\b")
_ENHANCED = re.compile(r"\b[245]\.\d{1,3}\.\d{1,3}\b")
