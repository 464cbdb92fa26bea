"""The three statements every webhook event runs, as plain SQL.

An ESP can post thousands of events a minute, one request each; the ORM
spends more time building these three queries than the database spends
running them (measured in ``bench/webhooks.py``). They are written once
here, with the models' own table and column names and each backend's own
insert-or-ignore form; everything rarer (failures, suppressions, the
Message-ID fallback) stays in the ORM.
"""

from __future__ import annotations

from typing import Any

from django.db import connections, router
from django.db.models.constants import OnConflict

from ..models import Recipient, RecipientEvent, Route

_ROUTE_FIELDS = ("id", "name", "esp", "webhook_secret_ciphertext", "webhook_signing_key_ciphertext")


def _q(connection: Any, name: str) -> str:
    return connection.ops.quote_name(name)


def webhook_route(name: str) -> Route | None:
    """The route named ``name`` with what its webhook needs (name, ESP, sealed secrets)."""
    connection = connections[router.db_for_read(Route)]
    columns = ", ".join(_q(connection, c) for c in _ROUTE_FIELDS)
    table = _q(connection, Route._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM {table} WHERE {_q(connection, 'name')} = %s", [name])  # noqa: S608
        row = cursor.fetchone()
    if row is None:
        return None
    return Route(**dict(zip(("pk", *_ROUTE_FIELDS[1:]), row, strict=True)))


def by_provider_id(ids: list[str], esp: str, limit: int = 500) -> list[tuple[int, str, int]]:
    """``(pk, address, message pk)`` of recipients with one of ``ids`` as provider id,
    sent through a route of ``esp`` (any route when ``esp`` is '')."""
    if not ids:
        return []
    connection = connections[router.db_for_read(Recipient)]
    q = lambda name: _q(connection, name)  # noqa: E731
    recipients, routes = q(Recipient._meta.db_table), q(Route._meta.db_table)
    marks = ", ".join(["%s"] * len(ids))
    # The "<> ''" lets the partial index on provider ids serve the query.
    sql = (
        f"SELECT r.{q('id')}, r.{q('address')}, r.{q('message_id')} FROM {recipients} r "  # noqa: S608
        + (f"INNER JOIN {routes} t ON r.{q('route_id')} = t.{q('id')} " if esp else "")
        + f"WHERE r.{q('provider_message_id')} IN ({marks}) "
        f"AND r.{q('provider_message_id')} <> '' "
        + (f"AND t.{q('esp')} = %s " if esp else "")
        + f"LIMIT {int(limit)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*ids, esp] if esp else ids)
        return [tuple(row) for row in cursor.fetchall()]


def insert_event(values: dict[str, Any]) -> bool:
    """Insert one :class:`RecipientEvent` unless its ``dedupe_key`` is already there.

    True when inserted. One statement, no savepoint: the backend's own
    insert-or-ignore (``INSERT OR IGNORE``, ``ON CONFLICT DO NOTHING``,
    ``INSERT IGNORE``).
    """
    connection = connections[router.db_for_write(RecipientEvent)]
    opts = RecipientEvent._meta
    fields = [opts.get_field(name) for name in values]
    columns = ", ".join(_q(connection, f.column) for f in fields)
    params = [f.get_db_prep_save(values[f.name], connection) for f in fields]
    ops = connection.ops
    sql = " ".join(
        part
        for part in (
            ops.insert_statement(on_conflict=OnConflict.IGNORE),
            f"{_q(connection, opts.db_table)} ({columns})",
            f"VALUES ({', '.join(['%s'] * len(params))})",
            ops.on_conflict_suffix_sql(fields, OnConflict.IGNORE, None, None),
        )
        if part
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount == 1
