"""Writing a batch's results: attempts, recipients, messages, in few statements.

Rows with the same new values share one ``UPDATE``: a batch is usually a
handful of groups (sent; deferred by one route fault), never one query per
message, and never Django's ``bulk_update`` (a ``CASE`` per row and field).

Results are written in the engine's own thread. (A writer thread was
measured and dropped: under CPython's GIL its ORM work delays every socket
read of the sending thread by up to the interpreter's switch interval, and
the engine became slower, not faster.)
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connections, transaction
from django.db.models import Exists, F, OuterRef

from .. import signals
from ..conf import app_settings
from ..models import DeliveryAttempt, Message, Recipient, Suppression
from ..models.bulk import RowPreparer, ids_in, insert_rows
from .state import OPEN_STATES, RunReport, _Msg
from .stats import FlushStats, write_stats

logger = logging.getLogger("django_smtprelay.delivery")


@dataclass
class Flush:
    """One unit of results: written in one transaction."""

    token: uuid.UUID
    attempts: list[Sequence[object]] = field(default_factory=list)  # ATTEMPT_COLUMNS, prepared
    finished: list[_Msg] = field(default_factory=list)
    suppress: list[Suppression] = field(default_factory=list)
    stats: FlushStats = field(default_factory=FlushStats)

    def __bool__(self) -> bool:
        return bool(self.attempts or self.finished)


class ResultWriter:
    """Writes :class:`Flush` units in order, in a thread where it can."""

    def __init__(
        self,
        report: RunReport,
        clock: Callable[[], datetime],
        backoff: Callable[[int], timedelta],
    ) -> None:
        self.report = report
        self.clock = clock
        self.backoff = backoff

    def submit(self, flush: Flush) -> None:
        """Write ``flush`` in one transaction, then send the signals for it."""
        if not flush:
            return
        outcome = self._write_flush(flush)
        flagged = {m.pk for m in flush.finished if m.possible_duplicate}
        for name, ids in outcome.items():
            if ids:
                getattr(signals, f"message_{name}").send(
                    sender=Message,
                    message_ids=ids,
                    possible_duplicate_ids=[pk for pk in ids if pk in flagged] if flagged else [],
                )

    def close(self) -> None:
        """Nothing is held back: every flush is written when submitted."""

    def _write_flush(self, flush: Flush) -> dict[str, list[int]]:
        self._delays: dict[int, timedelta] = {}
        now = self.clock()
        outcome: dict[str, list[int]] = {"sent": [], "deferred": [], "failed": []}
        with transaction.atomic():
            insert_attempts(flush.attempts)
            if flush.suppress:
                Suppression.objects.bulk_create(flush.suppress, ignore_conflicts=True)
            held = self._held(flush)
            lost = [m.pk for m in flush.finished if m.pk not in held]
            written = self._write(now, [m for m in flush.finished if m.pk in held], outcome, flush)
            # A message counts once in "deferred": the first time it is (a
            # deferral event would count a message retried ten times ten times).
            first = {m.pk for m in flush.finished if not m.was_deferred}
            counted = {**outcome, "deferred": [pk for pk in outcome["deferred"] if pk in first]}
            write_stats(flush.stats, counted, now)
            lost_since = len(held) - written  # taken between the check and the write
            if lost or lost_since:
                self.report.lost_leases += len(lost) + lost_since
                logger.warning(
                    "Lease lost before results were written for %d message(s): %s",
                    len(lost) + lost_since,
                    lost or "taken over while they were written",
                )
        return outcome

    @staticmethod
    def _held(flush: Flush) -> set[int]:
        """The finished messages still held by the flush's lease.

        Where the database can, the rows are locked until the transaction
        ends, so no claim can take them between this check and the writes;
        every write is conditional on the lease token besides.
        """
        held = Message.objects.leased_by(flush.token).filter(ids_in([m.pk for m in flush.finished]))
        if connections[held.db].features.has_select_for_update:
            held = held.select_for_update()
        return set(held.values_list("pk", flat=True))

    def _write(
        self, now: datetime, msgs: list[_Msg], outcome: dict[str, list[int]], flush: Flush
    ) -> int:
        """Write the messages' and recipients' new state, only where ``flush``'s
        lease still holds the message; return how many messages were written."""
        rcpt_groups: dict[tuple, list[int]] = {}
        provider_ids: dict[tuple, dict[int, str]] = {}
        msg_groups: dict[tuple, list[int]] = {}
        for msg in msgs:
            values = self._message_state(msg, now)
            for r in msg.rcpts.values():
                if r.changed:
                    key = (r.status, r.smtp_code, r.enhanced_code, r.reply, r.route_pk)
                    rcpt_groups.setdefault(key, []).append(r.pk)
                    provider_ids.setdefault(key, {})[r.pk] = r.provider_message_id
            msg_groups.setdefault(tuple(sorted(values.items())), []).append(msg.pk)
            outcome[str(values["status"])].append(msg.pk)
        # Recipients first: their condition reads the message's lease, which
        # the message's own write then releases.
        for key, pks in rcpt_groups.items():
            status, code, enhanced, reply, route_pk = key
            # EXISTS, not a join: a join becomes ``id IN (SELECT ... JOIN ...)``,
            # which SQLite plans as one probe per (leased message, id) pair, 40x
            # slower than looking each recipient up and checking its message.
            held = Recipient.objects.filter(
                ids_in(pks),
                Exists(
                    Message.objects.filter(
                        pk=OuterRef("message_id"),
                        lease_token=flush.token,
                        status=Message.Status.SENDING,
                    )
                ),
            )
            ids = provider_ids[key]
            distinct = set(ids.values())
            shared = distinct.pop() if len(distinct) == 1 else None
            held.update(
                status=status,
                smtp_code=code,
                enhanced_code=enhanced,
                reply=reply,
                route_id=route_pk,
                **({"provider_message_id": shared} if shared is not None else {}),
                updated_at=now,
            )
            if shared is None:
                write_provider_ids(ids, flush.token)
        written = 0
        for key, pks in msg_groups.items():
            values = dict(key)
            values["attempt_count"] = F("attempt_count") + values.pop("attempts_added")
            written += (
                Message.objects.leased_by(flush.token)
                .filter(ids_in(pks))
                .update(lease_token=None, lease_expires_at=None, **values)
            )
        return written

    def _message_state(self, msg: _Msg, now: datetime) -> dict[str, object]:
        """The message's new values (recipients settled first)."""
        statuses = {r.status for r in msg.rcpts.values()}
        deferred = bool(statuses & set(OPEN_STATES))
        if deferred and now >= msg.expires_at:
            for r in msg.rcpts.values():
                if r.status in OPEN_STATES:
                    r.status, r.changed = Recipient.Status.FAILED, True
                    r.reply = f"gave up after {app_settings.max_lifetime}: {r.reply}"[:2000]
            statuses = {r.status for r in msg.rcpts.values()}
            deferred = False
        values: dict[str, object] = {
            "attempts_added": 0 if msg.not_attempted else 1,
            "last_error": msg.last_reply[:4000],
            "retry_route": msg.retry_route,
        }
        if msg.possible_duplicate:  # set only, never cleared: it stays a fact
            values["possible_duplicate"] = True
        if deferred and msg.not_before:
            # Held back by a rate limit, not failed: back when there is room.
            values["status"] = Message.Status.DEFERRED
            values["attempts_added"] = 0
            values["next_attempt_at"] = now + timedelta(seconds=msg.not_before)
            counter = "deferred"
        elif deferred:
            values["status"] = Message.Status.DEFERRED
            values["next_attempt_at"] = now + self._delay(msg.attempt_count + 1)
            counter = "deferred"
        elif Recipient.Status.DELIVERED in statuses:
            values["status"], values["sent_at"] = Message.Status.SENT, now
            if statuses == {Recipient.Status.DELIVERED}:
                values["last_error"] = ""
            counter = "sent"
        else:
            values["status"] = Message.Status.FAILED
            values["last_error"] = values["last_error"] or "every recipient failed"
            counter = "failed"
        setattr(self.report, counter, getattr(self.report, counter) + 1)
        return values

    def _delay(self, attempt: int) -> timedelta:
        # One draw per attempt number and flush, so messages deferred together
        # share an UPDATE (batches still spread, being drawn apart).
        if attempt not in self._delays:
            self._delays[attempt] = self.backoff(attempt)
        return self._delays[attempt]


def write_provider_ids(ids: dict[int, str], token: uuid.UUID) -> None:
    """Each recipient's provider message id, in one statement per flush.

    An ESP gives each message (or recipient) an id of its own, so the grouped
    UPDATEs would become one per message; one ``CASE`` sets them all, only
    where ``token``'s lease still holds the message. Plain SQL: the ORM's
    ``Case``/``When`` costs about a millisecond per row to build (measured in
    ``make bench``'s ESP row).
    """
    connection = connections[Recipient.objects.db]
    quote = connection.ops.quote_name
    recipients, messages = Recipient._meta.db_table, Message._meta.db_table
    token_value = Message._meta.get_field("lease_token").get_db_prep_value(
        token, connection, prepared=False
    )
    items = list(ids.items())
    for start in range(0, len(items), 400):  # bounded: SQLite allows 32,766 parameters
        chunk = items[start : start + 400]
        cases = " ".join(["WHEN %s THEN %s"] * len(chunk))
        marks = ", ".join(["%s"] * len(chunk))
        # Only quoted names and placeholders go into the text; values are parameters.
        sql = (
            f"UPDATE {quote(recipients)} SET {quote('provider_message_id')} = "  # noqa: S608
            f"CASE {quote('id')} {cases} ELSE {quote('provider_message_id')} END "
            f"WHERE {quote('id')} IN ({marks}) AND EXISTS ("
            f"SELECT 1 FROM {quote(messages)} m WHERE m.{quote('id')} = "
            f"{quote(recipients)}.{quote('message_id')} "
            f"AND m.{quote('lease_token')} = %s AND m.{quote('status')} = %s)"
        )
        params: list[object] = [v for pair in chunk for v in (int(pair[0]), str(pair[1])[:255])]
        params += [int(pk) for pk, _ in chunk]
        params += [token_value, Message.Status.SENDING.value]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


ATTEMPT_COLUMNS = (
    "message_id",
    "route_id",
    "route_name",
    "started_at",
    "duration",
    "outcome",
    "stage",
    "smtp_code",
    "enhanced_code",
    "reply",
    "exception",
    "recipients",
    "possible_duplicate",
    "dkim_keys",
    "route_choice",
)


def attempt_preparer() -> RowPreparer:
    """Converts attempt rows as they are recorded (while the relay works on the
    next message), so that a flush only writes them."""
    return RowPreparer.for_model(DeliveryAttempt, ATTEMPT_COLUMNS)


def insert_attempts(rows: list[Sequence[object]]) -> None:
    """INSERT attempt rows, tuples in ``ATTEMPT_COLUMNS`` order made by ``attempt_preparer``."""
    insert_rows(DeliveryAttempt, ATTEMPT_COLUMNS, rows, prepared=True)
