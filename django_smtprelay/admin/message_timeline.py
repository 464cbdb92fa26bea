"""A message's story in time order: queued, every attempt, each recipient's fate."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from django.utils.translation import gettext as _

from ..models import Message, RecipientEvent


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


def timeline(message: Message) -> list[Event]:
    """Every attempt and recipient event of ``message``, oldest first."""
    events = [Event(message.created_at, "queued", "queued", _("Queued"), order=0)]
    for attempt in message.attempts.order_by("started_at", "pk"):
        code = " ".join(str(c) for c in (attempt.smtp_code, attempt.enhanced_code) if c)
        detail = "; ".join(_recipient_line(r) for r in attempt.recipients or ())
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
    for rcpt in message.recipients.select_related("route"):
        if rcpt.updated_at is None:
            continue
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
    return sorted(events, key=lambda e: (e.at, e.order))


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
        for row in rows.order_by("at", "pk")[:500]
    ]


_CODE = re.compile(r"\b[245]\d\d\b")
_ENHANCED = re.compile(r"\b[245]\.\d{1,3}\.\d{1,3}\b")
