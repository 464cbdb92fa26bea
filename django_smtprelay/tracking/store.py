"""The statements every webhook event runs, as plain SQL.

An ESP can post thousands of events a minute, one request each; the ORM
spends more time building these queries (the route, the match by our id or
the provider's, the insert; a route's thirty-odd fields) than the database
spends running them (measured in
``bench/webhooks.py``). They are written once per database here, with the
models' own table and column names and each backend's own insert-or-ignore
form; everything rarer (failures, suppressions, the Message-ID fallback)
stays in the ORM.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

from django.db import connections, router
from django.db.models.constants import OnConflict

from .. import crypto, sealing
from ..models import Message, Recipient, RecipientEvent, Route
from ..models.routes import webhook_destination


@dataclass(frozen=True)
class WebhookRoute:
    """What a route's webhook needs of it: its name, ESP and sealed credentials."""

    pk: int
    name: str
    esp: str
    secret_ciphertext: str = field(repr=False)
    signing_key_ciphertext: str = field(repr=False)

    @property
    def webhook_secret(self) -> str:
        return _unsealed(self.secret_ciphertext, webhook_destination(self.name, self.esp))

    @property
    def webhook_signing_key(self) -> str:
        return _unsealed(self.signing_key_ciphertext, webhook_destination(self.name, self.esp))


def _unsealed(token: str, destination: str) -> str:
    """``sealing.unseal``, remembered for the keys in use: an ESP posts to the same
    route thousands of times a minute, and decrypting its secret each time cost
    more than the rest of the route's part of a post. A secret typed again is a
    new token; new keys (a changed setting) are a new key ring, read afresh."""
    return _unsealed_with(token, destination, crypto.key_ring())


@lru_cache(maxsize=128)
def _unsealed_with(token: str, destination: str, _ring: object) -> str:
    return sealing.unseal(token, destination)


@cache
def _route_sql(alias: str) -> str:
    q = connections[alias].ops.quote_name
    columns = ("id", "name", "esp", "webhook_secret_ciphertext", "webhook_signing_key_ciphertext")
    return (
        f"SELECT {', '.join(q(c) for c in columns)} FROM {q(Route._meta.db_table)} "  # noqa: S608
        f"WHERE {q('name')} = %s"
    )


def webhook_route(name: str) -> WebhookRoute | None:
    """The route named ``name``, as its webhook needs it (None: no such route)."""
    alias = router.db_for_read(Route)
    with connections[alias].cursor() as cursor:
        cursor.execute(_route_sql(alias), [name])
        row = cursor.fetchone()
    return None if row is None else WebhookRoute(*row)


@cache
def _provider_id_sql(alias: str, count: int, with_esp: bool) -> str:
    q = connections[alias].ops.quote_name
    recipients, routes = q(Recipient._meta.db_table), q(Route._meta.db_table)
    marks = ", ".join(["%s"] * count)
    # The partial index on provider ids serves the query only where its own
    # condition is written as it was declared: SQLite matches a partial index's
    # WHERE term by its form, and "<> ''" left it unused (a scan of the route's
    # recipients for every event). PostgreSQL proves either form.
    return (
        f"SELECT r.{q('id')}, r.{q('address')}, r.{q('message_id')} FROM {recipients} r "  # noqa: S608
        + (f"INNER JOIN {routes} t ON r.{q('route_id')} = t.{q('id')} " if with_esp else "")
        + f"WHERE r.{q('provider_message_id')} IN ({marks}) "
        f"AND NOT (r.{q('provider_message_id')} = '') "
        + (f"AND t.{q('esp')} = %s " if with_esp else "")
        + "LIMIT 500"
    )


def by_provider_id(ids: list[str], esp: str) -> list[tuple[int, str, int]]:
    """``(pk, address, message pk)`` of recipients (500 at most) with one of ``ids`` as
    provider id, sent through a route of ``esp`` (any route when ``esp`` is '')."""
    if not ids:
        return []
    alias = router.db_for_read(Recipient)
    with connections[alias].cursor() as cursor:
        cursor.execute(_provider_id_sql(alias, len(ids), bool(esp)), [*ids, esp] if esp else ids)
        return [tuple(row) for row in cursor.fetchall()]


@cache
def _our_id_sql(alias: str, with_recipient: bool) -> str:
    q = connections[alias].ops.quote_name
    return (
        f"SELECT {q('id')}, {q('address')}, {q('message_id')} "  # noqa: S608
        f"FROM {q(Recipient._meta.db_table)} WHERE {q('message_id')} = %s "
        + (f"AND {q('id')} = %s " if with_recipient else "")
        + "LIMIT 500"
    )


def by_our_id(message_pk: int, recipient_pk: int | None) -> list[tuple[int, str, int]]:
    """``(pk, address, message pk)`` of the message's recipients (500 at most), or of
    the one recipient our id names."""
    alias = router.db_for_read(Recipient)
    params = [message_pk] if recipient_pk is None else [message_pk, recipient_pk]
    with connections[alias].cursor() as cursor:
        cursor.execute(_our_id_sql(alias, recipient_pk is not None), params)
        return [tuple(row) for row in cursor.fetchall()]


@cache
def _fail_sql(alias: str) -> tuple[str, str]:
    q = connections[alias].ops.quote_name
    recipients, messages = q(Recipient._meta.db_table), q(Message._meta.db_table)
    open_states = ", ".join(["%s"] * len(FAILABLE))
    recipient = (
        f"UPDATE {recipients} SET {q('status')} = %s, {q('smtp_code')} = %s, "  # noqa: S608
        f"{q('enhanced_code')} = %s, {q('reply')} = %s, {q('updated_at')} = %s "
        f"WHERE {q('id')} = %s AND {q('status')} IN ({open_states})"
    )
    message = (
        f"UPDATE {messages} SET {q('status')} = %s, {q('last_error')} = %s "  # noqa: S608
        f"WHERE {q('id')} = %s AND {q('status')} = %s AND NOT EXISTS ("
        f"SELECT 1 FROM {recipients} WHERE {q('message_id')} = %s "
        f"AND {q('status')} IN ({open_states}))"
    )
    return recipient, message


#: Recipient states still "on their way": a failing event does not reopen a
#: cancelled or suppressed one.
FAILABLE = (Recipient.Status.DELIVERED, Recipient.Status.PENDING, Recipient.Status.DEFERRED)


def fail_recipient(
    pk: int, message_pk: int, *, smtp_code: int | None, enhanced_code: str, reply: str, at: Any
) -> bool:
    """Fail the recipient (if still on its way) and then its message, if it was sent
    and none of its recipients is on its way any more; True if the recipient failed."""
    alias = router.db_for_write(Recipient)
    connection = connections[alias]
    recipient_sql, message_sql = _fail_sql(alias)
    at = Recipient._meta.get_field("updated_at").get_db_prep_save(at, connection)
    with connection.cursor() as cursor:
        failed = Recipient.Status.FAILED
        cursor.execute(recipient_sql, [failed, smtp_code, enhanced_code, reply, at, pk, *FAILABLE])
        if cursor.rowcount != 1:
            return False
        cursor.execute(
            message_sql,
            [Message.Status.FAILED, reply, message_pk, Message.Status.SENT, message_pk, *FAILABLE],
        )
    return True


#: The columns :func:`insert_event` writes, in order.
EVENT_FIELDS = (
    "recipient",
    "kind",
    "at",
    "received_at",
    "esp",
    "source",
    "event_id",
    "dedupe_key",
    "hard",
    "description",
    "mta_response",
    "summary",
)


#: The columns whose values need the field's conversion for the database (a
#: datetime, JSON); the others are already the str, int or bool it stores, and
#: calling every field's ``get_db_prep_save`` cost more than the insert itself.
PREPARED_FIELDS = frozenset({"at", "received_at", "summary"})


@cache
def _insert_sql(alias: str) -> tuple[str, tuple[Any, ...]]:
    connection = connections[alias]
    ops, opts = connection.ops, RecipientEvent._meta
    fields = tuple(opts.get_field(name) for name in EVENT_FIELDS)
    prepared = tuple(
        (name, field)
        for name, field in zip(EVENT_FIELDS, fields, strict=True)
        if name in PREPARED_FIELDS
    )
    columns = ", ".join(ops.quote_name(f.column) for f in fields)
    parts = (
        ops.insert_statement(on_conflict=OnConflict.IGNORE),
        f"{ops.quote_name(opts.db_table)} ({columns})",
        f"VALUES ({', '.join(['%s'] * len(fields))})",
        ops.on_conflict_suffix_sql(list(fields), OnConflict.IGNORE, None, None),
    )
    return " ".join(p for p in parts if p), prepared


@cache
def _seen_sql(alias: str) -> str:
    q = connections[alias].ops.quote_name
    return f"SELECT 1 FROM {q(RecipientEvent._meta.db_table)} WHERE {q('dedupe_key')} = %s"  # noqa: S608


def insert_event(values: dict[str, Any], *, seen: bool | None = None) -> bool:
    """Insert one :class:`RecipientEvent` (``values`` keyed by :data:`EVENT_FIELDS`)
    unless its ``dedupe_key`` is already there; True when inserted. ``seen``:
    whether the key was there when the caller read it in this transaction
    (None: read it here).

    A read first: a retried event (the usual duplicate) then writes nothing,
    where even an insert that ends up ignored makes SQLite sync a commit.
    Two copies of an event racing past the read are settled by the
    backend's own insert-or-ignore (``INSERT OR IGNORE``, ``ON CONFLICT DO
    NOTHING``, ``INSERT IGNORE``): no savepoint, no error.
    """
    alias = router.db_for_write(RecipientEvent)
    connection = connections[alias]
    sql, prepared = _insert_sql(alias)
    if seen:
        return False
    with connection.cursor() as cursor:
        if seen is None:
            cursor.execute(_seen_sql(alias), [values["dedupe_key"]])
            if cursor.fetchone() is not None:
                return False
        row = dict(values)
        for name, field in prepared:
            row[name] = field.get_db_prep_save(values[name], connection)
        cursor.execute(sql, [row[name] for name in EVENT_FIELDS])
        return cursor.rowcount == 1


# -- the reads of a group's events at once (:func:`.apply.prefetch`) ---------

#: Values in one IN list: under every backend's bound on a statement's parameters.
CHUNK = 400


def _chunks(values: list[Any]) -> list[list[Any]]:
    return [values[i : i + CHUNK] for i in range(0, len(values), CHUNK)]


def recipients_by_pk(pks: list[int]) -> dict[int, tuple[int, str, int]]:
    """``pk -> (pk, address, message pk)`` of those of the recipients ``pks`` that exist."""
    alias = router.db_for_read(Recipient)
    q = connections[alias].ops.quote_name
    found: dict[int, tuple[int, str, int]] = {}
    with connections[alias].cursor() as cursor:
        for chunk in _chunks(sorted(set(pks))):
            cursor.execute(
                f"SELECT {q('id')}, {q('address')}, {q('message_id')} "  # noqa: S608
                f"FROM {q(Recipient._meta.db_table)} "
                f"WHERE {q('id')} IN ({', '.join(['%s'] * len(chunk))})",
                chunk,
            )
            for row in cursor.fetchall():
                found[row[0]] = tuple(row)
    return found


def recipients_by_provider_ids(
    ids: list[str], limit: int
) -> list[tuple[int, str, int, str, str | None]] | None:
    """``(pk, address, message pk, provider id, route's ESP)`` of the recipients with one
    of ``ids`` as provider id; None when there are ``limit`` or more (read them one
    event at a time)."""
    alias = router.db_for_read(Recipient)
    q = connections[alias].ops.quote_name
    recipients, routes = q(Recipient._meta.db_table), q(Route._meta.db_table)
    rows: list[tuple[int, str, int, str, str | None]] = []
    with connections[alias].cursor() as cursor:
        for chunk in _chunks(sorted(set(ids))):
            # As in by_provider_id: the index's own condition, so that it serves.
            cursor.execute(
                f"SELECT r.{q('id')}, r.{q('address')}, r.{q('message_id')}, "  # noqa: S608
                f"r.{q('provider_message_id')}, t.{q('esp')} FROM {recipients} r "
                f"LEFT OUTER JOIN {routes} t ON r.{q('route_id')} = t.{q('id')} "
                f"WHERE r.{q('provider_message_id')} IN ({', '.join(['%s'] * len(chunk))}) "
                f"AND NOT (r.{q('provider_message_id')} = '') LIMIT %s",
                [*chunk, limit - len(rows)],
            )
            rows.extend(tuple(row) for row in cursor.fetchall())
            if len(rows) >= limit:
                return None
    return rows


def seen_dedupe_keys(keys: list[str]) -> set[str]:
    """Those of ``keys`` already recorded as an event's ``dedupe_key``."""
    alias = router.db_for_read(RecipientEvent)
    q = connections[alias].ops.quote_name
    seen: set[str] = set()
    with connections[alias].cursor() as cursor:
        for chunk in _chunks(sorted(set(keys))):
            cursor.execute(
                f"SELECT {q('dedupe_key')} FROM {q(RecipientEvent._meta.db_table)} "  # noqa: S608
                f"WHERE {q('dedupe_key')} IN ({', '.join(['%s'] * len(chunk))})",
                chunk,
            )
            seen.update(row[0] for row in cursor.fetchall())
    return seen
