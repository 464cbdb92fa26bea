"""Bulk INSERTs for the queue's hot paths, without a model instance per row."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from functools import lru_cache

from django.db import connections, models, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Q
from django.db.models.expressions import RawSQL
from django.utils.duration import duration_microseconds

_PREPARED_TYPES = ("DateTimeField", "DurationField", "JSONField")
# Bounds one statement's size (and the memory to build it) where the database
# sets no parameter limit of its own.
_ROWS_PER_STATEMENT = 500


class RowPreparer:
    """Converts rows (tuples in ``columns`` order) to what the database takes.

    Values of the types that need it go through their field's
    ``get_db_prep_save`` (time zones, durations, JSON), as the ORM would; the
    rest pass as they are. A value seen again (the same object) is converted
    once: a batch repeats its timestamps.
    """

    def __init__(
        self,
        fields: list[models.Field],
        conn: BaseDatabaseWrapper,
        prep: Sequence[tuple[int, models.Field]] | None = None,
    ) -> None:
        self.conn = conn
        self.prep = (
            [(i, f) for i, f in enumerate(fields) if f.get_internal_type() in _PREPARED_TYPES]
            if prep is None
            else prep
        )
        self._last: dict[int, tuple[object, object]] = {}
        self._convert = [(i, _converter(f, conn)) for i, f in self.prep]

    @classmethod
    def for_model(
        cls, model: type[models.Model], columns: Sequence[str], using: str | None = None
    ) -> RowPreparer:
        conn = connections[using or router.db_for_write(model)]
        # The fields to convert are looked up once per model and columns: a
        # request that queues one message pays for its values only.
        return cls([], conn, _fields_to_prepare(model, tuple(columns)))

    def __call__(self, row: Sequence[object]) -> Sequence[object]:
        if not self.prep:
            return row
        values = list(row)
        last = self._last
        for i, convert in self._convert:
            raw = values[i]
            seen = last.get(i)
            if seen is not None and seen[0] is raw:
                values[i] = seen[1]
            else:
                values[i] = convert(raw)
                last[i] = (raw, values[i])
        return values


def _converter(field: models.Field, conn: BaseDatabaseWrapper) -> Callable[[object], object]:
    """``field.get_db_prep_save(value, conn)``, with the common values of the
    engine's rows converted without the field's generic steps (a send records
    a time and a duration that no other row shares): a UTC ``datetime``, as
    ``timezone.now()`` gives, and a ``timedelta``. Any other value, or a
    field class that prepares values its own way, takes the field's path."""

    def generic(value: object) -> object:
        return field.get_db_prep_save(value, conn)

    kind = type(field)
    if (
        isinstance(field, models.DateTimeField)
        and kind.get_db_prep_save is models.Field.get_db_prep_save
        and kind.get_db_prep_value is models.DateTimeField.get_db_prep_value
        and kind.get_prep_value is models.DateTimeField.get_prep_value
        and kind.to_python is models.DateTimeField.to_python
    ):
        adapt = conn.ops.adapt_datetimefield_value

        def aware(value: object) -> object:
            # An aware datetime is what get_prep_value returns it as.
            if type(value) is datetime and value.tzinfo is dt_timezone.utc:
                return adapt(value)
            return generic(value)

        return aware
    if (
        isinstance(field, models.DurationField)
        and kind.get_db_prep_save is models.Field.get_db_prep_save
        and kind.get_db_prep_value is models.DurationField.get_db_prep_value
    ):
        native = conn.features.has_native_duration_field

        def duration(value: object) -> object:
            if type(value) is timedelta:
                return value if native else duration_microseconds(value)
            return generic(value)

        return duration
    return generic


@lru_cache(maxsize=32)
def _fields_to_prepare(
    model: type[models.Model], columns: tuple[str, ...]
) -> tuple[tuple[int, models.Field], ...]:
    fields = [model._meta.get_field(name) for name in columns]
    return tuple((i, f) for i, f in enumerate(fields) if f.get_internal_type() in _PREPARED_TYPES)


def _prepared(
    fields: list[models.Field], rows: list[tuple], conn: BaseDatabaseWrapper
) -> list[Sequence[object]]:
    prepare = RowPreparer(fields, conn)
    return [prepare(row) for row in rows]


def insert_returning_ids(
    model: type[models.Model], columns: Sequence[str], rows: list[tuple], using: str
) -> list[int] | None:
    """INSERT ``rows`` with multi-row statements and return their ids, in order.

    What ``bulk_create`` does for databases that return ids from a bulk
    insert (PostgreSQL, SQLite 3.35+; the same order assumption as Django's),
    without a model instance per row. None where the database cannot, so the
    caller falls back to ``bulk_create``.
    """
    conn = connections[using]
    if not conn.features.can_return_rows_from_bulk_insert:
        return None
    meta = model._meta
    fields = [meta.get_field(name) for name in columns]
    values = _prepared(fields, rows, conn)
    size = max(1, min(_ROWS_PER_STATEMENT, conn.ops.bulk_batch_size(fields, values)))
    ids: list[int] = []
    with conn.cursor() as cursor:
        for start in range(0, len(values), size):
            chunk = values[start : start + size]
            cursor.execute(
                insert_sql(using, model, tuple(columns), len(chunk), returning=True),
                [v for row in chunk for v in row] if len(chunk) > 1 else chunk[0],
            )
            ids.extend(r[0] for r in cursor.fetchall())
    if len(ids) != len(rows):
        raise RuntimeError(f"inserted {len(rows)} rows into {meta.db_table}, got {len(ids)} ids")
    return ids


@lru_cache(maxsize=64)
def insert_sql(
    alias: str,
    model: type[models.Model],
    columns: tuple[str, ...],
    rows: int,
    *,
    returning: bool = False,
) -> str:
    """``INSERT`` of ``rows`` rows (cached: a request that queues one message
    builds no SQL)."""
    conn = connections[alias]
    meta = model._meta
    qn = conn.ops.quote_name
    fields = ", ".join(qn(meta.get_field(name).column) for name in columns)
    row_sql = "(" + ", ".join(["%s"] * len(columns)) + ")"
    tail = f" RETURNING {qn(meta.pk.column)}" if returning else ""
    return f"INSERT INTO {qn(meta.db_table)} ({fields}) VALUES {', '.join([row_sql] * rows)}{tail}"  # noqa: S608


def insert_rows(
    model: type[models.Model],
    columns: Sequence[str],
    rows: list[Sequence[object]],
    using: str | None = None,
    *,
    prepared: bool = False,
) -> None:
    """INSERT ``rows`` (tuples in ``columns`` order) with one ``executemany``.

    The same rows ``bulk_create`` writes: values of the types that need it go
    through their field's ``get_db_prep_save`` (time zones, durations, JSON),
    as the ORM would. What is skipped is a model instance and a compiled
    statement per row, which is most of the cost of a large insert. No ids
    come back: for rows nothing refers to (attempts, recipients).
    ``prepared``: the rows went through a :class:`RowPreparer` already.
    """
    if not rows:
        return
    alias = using or router.db_for_write(model)
    conn = connections[alias]
    meta = model._meta
    fields = [meta.get_field(name) for name in columns]
    values = rows if prepared else _prepared(fields, rows, conn)
    sql = insert_sql(alias, model, tuple(columns), 1, returning=False)
    with conn.cursor() as cursor:
        if len(values) == 1:
            cursor.execute(sql, values[0])
        else:
            cursor.executemany(sql, values)


def ids_in(ids: Sequence[int], field: str = "pk") -> Q:
    """``Q(<field>__in=ids)`` for integer ids, bound as parameters without the
    ORM preparing each one (a third of the cost of a claim's or a flush's
    statements with hundreds of ids)."""
    return _bound_in(field, [int(i) for i in ids])  # ints only: nothing else reaches the SQL


def strings_in(values: Sequence[str], field: str) -> Q:
    """``Q(<field>__in=values)`` for strings, bound as parameters (see ``ids_in``)."""
    for value in values:
        if not isinstance(value, str):
            raise TypeError(f"strings_in() takes strings, got {value!r}")
    return _bound_in(field, list(values))


def _bound_in(field: str, values: list[int] | list[str]) -> Q:
    if not values:
        return Q(**{f"{field}__in": []})  # matches nothing, as the ORM does
    # Only placeholders go into the SQL; the values are bound parameters.
    return Q(**{f"{field}__in": RawSQL(", ".join(["%s"] * len(values)), values)})  # noqa: S611
