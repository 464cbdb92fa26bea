"""Bulk INSERTs for the queue's hot paths, without a model instance per row."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connections, models, router

_PREPARED_TYPES = ("DateTimeField", "DurationField", "JSONField")


def insert_rows(
    model: type[models.Model], columns: Sequence[str], rows: list[tuple], using: str | None = None
) -> None:
    """INSERT ``rows`` (tuples in ``columns`` order) with one ``executemany``.

    The same rows ``bulk_create`` writes: values of the types that need it go
    through their field's ``get_db_prep_save`` (time zones, durations, JSON),
    as the ORM would. What is skipped is a model instance and a compiled
    statement per row, which is most of the cost of a large insert. No ids
    come back: for rows nothing refers to (attempts, recipients).
    """
    if not rows:
        return
    alias = using or router.db_for_write(model)
    conn = connections[alias]
    meta = model._meta
    fields = [meta.get_field(name) for name in columns]
    prep = [(i, f) for i, f in enumerate(fields) if f.get_internal_type() in _PREPARED_TYPES]
    values = []
    for row in rows:
        if prep:
            row = list(row)
            for i, f in prep:
                row[i] = f.get_db_prep_save(row[i], conn)
        values.append(row)
    qn = conn.ops.quote_name
    column_list = ", ".join(qn(f.column) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {qn(meta.db_table)} ({column_list}) VALUES ({placeholders})"  # noqa: S608
    with conn.cursor() as cursor:
        cursor.executemany(sql, values)
