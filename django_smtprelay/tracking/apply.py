"""An ESP's normalized event (anymail's ``AnymailTrackingEvent``) applied to a recipient.

A few queries per event: the match (one, two when the ESP gave only the
Message-ID), the insert that makes it idempotent, and for a failure the
recipient's and message's updates and the suppression. The events of the
webhook posts committed together (:mod:`.group`) are matched, and their
duplicates found, by a few reads for the whole group (:class:`Applying`);
each event then runs its insert alone.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

from django.core.cache import caches
from django.db import transaction
from django.utils import timezone

from ..conf import app_settings
from ..models import Recipient, RecipientEvent, Suppression
from . import store
from .ids import METADATA_KEY, parse_smtprelay_id

logger = logging.getLogger("django_smtprelay.tracking")

Kind = RecipientEvent.Kind
KINDS = frozenset(Kind.values)
#: Events that mean the message did not reach the recipient: it fails.
FAILING = frozenset({Kind.BOUNCED, Kind.REJECTED, Kind.FAILED})

APPLIED, DUPLICATE, UNMATCHED, IGNORED = "applied", "duplicate", "unmatched", "ignored"


@dataclass
class Event:
    """What one event says, from any source (an ESP's webhook, a returned bounce)."""

    kind: str
    esp: str
    recipient: str = ""
    message_id: str = ""  # the provider's id, or a Message-ID
    event_id: str = ""
    at: datetime | None = None
    description: str = ""
    mta_response: str = ""
    metadata: dict[str, Any] | None = None
    hard: bool | None = None  # for bounces: None lets the event's text decide
    source: str = RecipientEvent.Source.WEBHOOK
    summary: dict[str, Any] | None = None


def from_anymail(event: Any, esp: str) -> Event:
    """Our :class:`Event` from anymail's tracking event."""
    metadata = event.metadata if isinstance(event.metadata, dict) else {}
    description = _text(event.description)
    mta = _text(event.mta_response)
    summary = {
        "event_type": event.event_type,
        "recipient": _text(event.recipient),
        "message_id": _text(event.message_id),
        "event_id": _text(event.event_id),
        "reject_reason": _text(event.reject_reason),
        "click_url": _text(event.click_url)[:500],
        "user_agent": _text(event.user_agent)[:200],
        "tags": [_text(t)[:100] for t in (event.tags or [])[:10]],
        "esp_type": _esp_type(event.esp_event),
    }
    return Event(
        kind=str(event.event_type),
        esp=esp,
        recipient=_text(event.recipient),
        message_id=_text(event.message_id),
        event_id=_text(event.event_id),
        at=event.timestamp if isinstance(event.timestamp, datetime) else None,
        description=description,
        mta_response=mta,
        metadata=metadata,
        hard=_is_hard(event, description, mta),
        summary={k: v for k, v in summary.items() if v},
    )


def apply(event: Event, *, route_pk: int | None = None) -> str:
    """Record ``event`` on its recipient; APPLIED, DUPLICATE, UNMATCHED or IGNORED.

    Never raises for what the event says: an unknown id is counted and logged.
    """
    return _apply(event, route_pk, NOT_READ, None, None, count=True)


class _NotRead:
    def __repr__(self) -> str:
        return "NOT_READ"


#: A :class:`Applying`'s match not read ahead: :func:`apply` looks for it.
NOT_READ: Any = _NotRead()


def _apply(
    event: Event,
    route_pk: int | None,
    found: Any,
    key: str | None,
    seen: bool | None,
    *,
    count: bool,
) -> str:
    if event.kind not in KINDS:
        return IGNORED
    recipient = find_recipient(event) if found is NOT_READ else found
    if recipient is None:
        if count:
            count_unmatched(event, route_pk)
        return UNMATCHED
    at = event.at or timezone.now()
    if timezone.is_naive(at):  # an ESP's timestamp without a zone is UTC
        at = timezone.make_aware(at, dt_timezone.utc)
    hard = event.kind == Kind.BOUNCED and event.hard is not False
    values = {
        "recipient": recipient.pk,
        "kind": event.kind,
        "at": at,
        "received_at": timezone.now(),
        "esp": event.esp[:40],
        "source": event.source,
        "event_id": event.event_id[:255],
        "dedupe_key": key or dedupe_key(event),
        "hard": hard,
        "description": event.description[:2000],
        "mta_response": event.mta_response[:2000],
        "summary": event.summary or {},
    }
    if event.kind not in FAILING and not _suppresses(event, hard):
        # Most events (delivered, opened, ...): one statement.
        return APPLIED if store.insert_event(values, seen=seen) else DUPLICATE
    with transaction.atomic():
        if not store.insert_event(values, seen=seen):
            return DUPLICATE  # the same event posted again
        if event.kind in FAILING:
            _fail(recipient, event, at)
        _suppress(recipient.address, event, hard)
    return APPLIED


class Applying:
    """One event of a webhook post, applied by the group committer (:mod:`.group`).

    The group first reads what its events need in a few statements for all of
    them (:meth:`prepare_group`: the recipients they name, the events already
    recorded), where each event would run its own; each event is then applied
    in the group's transaction with what was read, and reads for itself what
    was not. The reads are in that transaction, before any of its writes: a
    copy of an event later in the same group is still told apart by the
    insert-or-ignore. When the group is applied again, a savepoint a post
    (:func:`.group._apply`), it reads again.
    """

    __slots__ = ("counted", "event", "found", "key", "route_pk", "seen")

    def __init__(self, event: Event, route_pk: int | None = None) -> None:
        self.event = event
        self.route_pk = route_pk
        self.found: Any = NOT_READ
        self.key: str | None = None
        self.seen: bool | None = None
        self.counted = False  # an unknown id is counted once, if the group applies it again

    def __call__(self) -> str:
        result = _apply(
            self.event, self.route_pk, self.found, self.key, self.seen, count=not self.counted
        )
        self.counted = self.counted or result == UNMATCHED
        return result

    @staticmethod
    def prepare_group(steps: list[Applying]) -> None:
        """Read ahead, for all of ``steps`` at once, each one's recipient and whether
        it was recorded already. Sets nothing unless every read succeeded."""
        steps = [s for s in steps if s.event.kind in KINDS]
        found: dict[int, Any] = {}
        by_pk: dict[int, tuple[int, int]] = {}  # step -> (message pk, recipient pk)
        by_provider: dict[int, list[str]] = {}  # step -> the provider id's forms
        for index, step in enumerate(steps):
            event = step.event
            ours = parse_smtprelay_id((event.metadata or {}).get(METADATA_KEY))
            if ours is not None:
                if ours[1] is not None:  # our id names the row (else: read per event)
                    by_pk[index] = (ours[0], ours[1])
            elif not event.message_id:
                found[index] = None
            else:
                by_provider[index] = _id_forms(event.message_id)
        if by_pk:
            rows = store.recipients_by_pk([pk for _m, pk in by_pk.values()])
            for index, (message_pk, pk) in by_pk.items():
                row = rows.get(pk)
                found[index] = Candidate(*row) if row and row[2] == message_pk else None
        if by_provider:
            ids = [i for forms in by_provider.values() for i in forms]
            provided = store.recipients_by_provider_ids(ids, limit=MAX_READ_AHEAD)
            if provided is not None:
                for index, forms in by_provider.items():
                    event = steps[index].event
                    candidates = [
                        Candidate(pk, address, message_pk)
                        for pk, address, message_pk, provider_id, esp in provided
                        if provider_id in forms and (not event.esp or esp == event.esp)
                    ]
                    if len(candidates) > MAX_CANDIDATES:
                        continue  # as many as one event's own read would see: it reads
                    pick = _pick(candidates, event.recipient.strip().lower())
                    if pick is None and "@" in event.message_id:
                        continue  # the Message-ID's fallback: the event reads it itself
                    found[index] = pick
        keys = [dedupe_key(step.event) for step in steps]
        seen = store.seen_dedupe_keys(keys)
        for index, step in enumerate(steps):
            step.key, step.seen = keys[index], keys[index] in seen
            step.found = found.get(index, NOT_READ)


#: Recipients one event's own match reads at most (its statement's LIMIT).
MAX_CANDIDATES = 500
#: Recipients a group's read ahead by provider ids takes at most: past that its
#: events read their own.
MAX_READ_AHEAD = 5000


def find_recipient(event: Event) -> Candidate | None:
    """The recipient an event is about: by our id, the provider's id, or the Message-ID."""
    address = event.recipient.strip().lower()
    ours = parse_smtprelay_id((event.metadata or {}).get(METADATA_KEY))
    if ours is not None:
        if ours[1] is not None:
            address = ""  # our own id names the row
        return _pick([Candidate(*row) for row in store.by_our_id(*ours)], address)
    if not event.message_id:
        return None
    ids = _id_forms(event.message_id)
    found = _pick([Candidate(*row) for row in store.by_provider_id(ids, event.esp)], address)
    if found is None and "@" in event.message_id:
        # ESPs that keep the message's own Message-ID report by it (Mailgun,
        # SendGrid's smtp-id, Brevo), as does mail sent through their SMTP.
        rows = Recipient.objects.order_by().filter(message__message_id__in=ids)
        if event.esp:
            rows = rows.filter(route__esp=event.esp)
        found = _pick(_candidates(rows), address)
    return found


@dataclass
class Candidate:
    pk: int
    address: str
    message_id: int


def _candidates(rows: Any) -> list[Candidate]:
    return [Candidate(*row) for row in rows.values_list("pk", "address", "message_id")[:500]]


def _pick(candidates: list[Candidate], address: str) -> Candidate | None:
    """The candidate for ``address``; with no address, the only candidate."""
    if address:
        for candidate in candidates:
            if candidate.address.lower() == address:
                return candidate
        return None
    return candidates[0] if len(candidates) == 1 else None


def _id_forms(value: str) -> list[str]:
    bare = value.strip().strip("<>").strip()
    return [bare, f"<{bare}>"] if bare else []


def dedupe_key(event: Event) -> str:
    """The event's identity: the ESP's event id where it has one, else its fields."""
    if event.event_id:
        parts = [event.esp, "id", event.event_id, event.recipient.lower(), event.kind]
    else:
        at = event.at.isoformat() if event.at else ""
        parts = [
            event.esp,
            "fields",
            event.message_id,
            event.recipient.lower(),
            event.kind,
            at,
            event.mta_response,
            event.description,
        ]
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "replace")).hexdigest()


_CODE = re.compile(r"\b([245]\d\d)\b")


def _fail(recipient: Candidate, event: Event, at: datetime) -> None:
    """The recipient failed, even if the relay had accepted it ("delivered")."""
    text = event.mta_response or event.description or event.kind
    code_match = _CODE.search(text)
    enhanced = _enhanced(text)
    reply = f"{event.esp or event.source}: {event.kind}: {text}"[:2000]
    store.fail_recipient(
        recipient.pk,
        recipient.message_id,
        smtp_code=int(code_match.group(1)) if code_match else None,
        enhanced_code=enhanced,
        reply=reply,
        at=at,
    )


_ENHANCED = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")


def _enhanced(text: str) -> str:
    match = _ENHANCED.search(text)
    return match.group(1) if match else ""


def _suppresses(event: Event, hard: bool) -> str | None:
    """The suppression source ``event`` adds, if the settings say it adds one."""
    if event.kind == Kind.BOUNCED and hard and app_settings.suppress_on_hard_bounce:
        return Suppression.Source.BOUNCE
    if event.kind == Kind.COMPLAINED and app_settings.suppress_on_complaint:
        return Suppression.Source.COMPLAINT
    if event.kind == Kind.UNSUBSCRIBED and app_settings.suppress_on_unsubscribe:
        return Suppression.Source.UNSUBSCRIBE
    return None


def _suppress(address: str, event: Event, hard: bool) -> None:
    source = _suppresses(event, hard)
    if source is None:
        return
    detail = event.mta_response or event.description
    reason = f"{event.esp or event.source} {event.kind}" + (f": {detail}" if detail else "")
    Suppression.objects.bulk_create(
        [Suppression(address=address.strip().lower(), reason=reason[:2000], source=source)],
        ignore_conflicts=True,
    )


# Soft bounces: the ESP's own word for them, or a 4xx reply.
_SOFT_ENHANCED = re.compile(r"\b4\.\d{1,3}\.\d{1,3}\b")
_SOFT_WORDS = ("transient", "softbounce", "soft bounce", "soft_bounce", "temporary")


def _is_hard(event: Any, description: str, mta: str) -> bool | None:
    if event.event_type != Kind.BOUNCED:
        return None
    raw = event.esp_event if isinstance(event.esp_event, dict) else {}
    words = " ".join(
        str(raw.get(key, "")) for key in ("Type", "type", "bounce_class", "severity")
    ).lower()
    if any(w in f"{description.lower()} {words}" for w in _SOFT_WORDS):
        return False
    reply = mta.strip()
    soft_reply = re.match(r"^(?:smtp;\s*)?4\d\d\b", reply) or _SOFT_ENHANCED.search(reply)
    return not soft_reply


def _esp_type(raw: Any) -> str:
    if isinstance(raw, dict):
        for key in ("eventType", "notificationType", "RecordType", "event", "Type", "type"):
            value = raw.get(key)
            if isinstance(value, str):
                return value[:40]
    return ""


def _text(value: Any) -> str:
    return "" if value is None else str(value)[:4000]


def unmatched_key(route_pk: int | None, esp: str) -> str:
    return f"smtprelay:tracking:unmatched:{route_pk or esp or 'none'}"


def count_unmatched(event: Event, route_pk: int | None) -> None:
    """Count and log an event for no recipient we know; never an error (ESPs report
    on mail sent by other systems too, and on messages purged since)."""
    logger.info(
        "%s event %s for unknown message id %r (recipient %r): counted, not applied",
        event.esp or event.source,
        event.kind,
        event.message_id[:255],
        event.recipient[:254],
    )
    cache = caches[app_settings.cache_alias]
    key = unmatched_key(route_pk, event.esp)
    try:
        cache.incr(key)
    except ValueError:
        cache.set(key, 1, timeout=None)


def unmatched_count(route_pk: int | None, esp: str = "") -> int:
    """Events counted for no known recipient (since the cache was last cleared)."""
    return int(caches[app_settings.cache_alias].get(unmatched_key(route_pk, esp)) or 0)
