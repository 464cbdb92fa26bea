"""Hourly statistics, counted as results are recorded and written with them.

Per attempt the engine only increments a dict entry (:meth:`FlushStats.attempt`);
per flush :func:`write_stats` adds the sums to the hourly rows with one
``INSERT ... ON CONFLICT DO UPDATE`` per table (PostgreSQL and SQLite), in the
flush's transaction. Rows are written in key order, so two workers adding to
the same hours lock them in the same order and never deadlock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connections, models, router

from ..models import DeliveryAttempt, DeliveryStat, ErrorStat, MessageStat
from ..models.bulk import RowPreparer
from ..models.stats import LATENCY_BOUNDS, LATENCY_COLUMNS
from ..reply_text import normalise_reply

_DELIVERED = DeliveryAttempt.Outcome.DELIVERED.value
# Bounds one statement's parameters (SQLite's limit was 999 before 3.32).
_ROWS_PER_STATEMENT = 80
_N_BUCKETS = len(LATENCY_COLUMNS)


def hour_of(moment: datetime) -> datetime:
    """The start of ``moment``'s hour."""
    return moment.replace(minute=0, second=0, microsecond=0)


@dataclass
class FlushStats:
    """One flush's statistics, summed in memory."""

    # (hour, route, outcome) -> [count, seconds, bucket counts...]
    attempts: dict[tuple, list[float]] = field(default_factory=dict)
    # (hour, route, outcome, code, enhanced, raw reply) -> [count, last seen, example message id]
    errors: dict[tuple, list] = field(default_factory=dict)

    def attempt(
        self,
        started_at: datetime,
        route_name: str,
        outcome: str,
        took: float,
        code: int | None,
        enhanced: str,
        text: str,
        message_pk: int,
    ) -> None:
        hour = hour_of(started_at)
        sums = self.attempts.get((hour, route_name, outcome))
        if sums is None:
            sums = self.attempts[(hour, route_name, outcome)] = [0] * (2 + _N_BUCKETS)
        sums[0] += 1
        sums[1] += took
        bucket = 0
        while bucket < _N_BUCKETS - 1 and took >= LATENCY_BOUNDS[bucket]:
            bucket += 1
        sums[2 + bucket] += 1
        if outcome != _DELIVERED:
            key = (hour, route_name, outcome, code or 0, enhanced, text[:1000])
            seen = self.errors.get(key)
            if seen is None:
                self.errors[key] = [1, started_at, message_pk]
            else:
                seen[0] += 1
                seen[1] = max(seen[1], started_at)


def write_stats(stats: FlushStats, finished: dict[str, list[int]], now: datetime) -> None:
    """Add ``stats`` and the flush's ``finished`` messages (ids by final state) to
    the hourly rows. Call it inside the flush's transaction."""
    if stats.attempts:
        upsert_adding(
            DeliveryStat,
            ("hour", "route_name", "outcome"),
            ("count", "duration_total", *LATENCY_COLUMNS),
            [(*key, *sums) for key, sums in stats.attempts.items()],
        )
    if stats.errors:
        grouped: dict[tuple, list] = {}
        for (*head, text), (count, last, example) in stats.errors.items():
            key = (*head, normalise_reply(text))
            seen = grouped.setdefault(key, [0, last, example])
            seen[0] += count
            if last > seen[1]:
                seen[1:] = [last, example]
        upsert_adding(
            ErrorStat,
            ("hour", "route_name", "outcome", "smtp_code", "enhanced_code", "text"),
            ("count",),
            [(*key, *values) for key, values in grouped.items()],
            replaced=("last_seen", "example_message_id"),
        )
    hour = hour_of(now)
    rows = [(hour, status, len(ids)) for status, ids in finished.items() if ids]
    if rows:
        upsert_adding(MessageStat, ("hour", "status"), ("count",), rows)


def upsert_adding(
    model: type[models.Model],
    key: Sequence[str],
    added: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    replaced: Sequence[str] = (),
) -> None:
    """INSERT ``rows`` (``key``, then ``added``, then ``replaced`` fields, in
    order); where a row with the same key exists, add the ``added`` values to
    it and overwrite the ``replaced`` ones. Keys must be distinct in ``rows``."""
    rows = sorted(rows, key=lambda row: row[: len(key)])
    if not rows:
        return
    conn = connections[router.db_for_write(model)]
    names = [*key, *added, *replaced]
    fields = [model._meta.get_field(name) for name in names]
    prepare = RowPreparer(fields, conn)
    qn = conn.ops.quote_name
    table = qn(model._meta.db_table)
    columns = [qn(f.column) for f in fields]
    row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
    first_replaced = len(key) + len(added)
    updates = [f"{c} = {table}.{c} + EXCLUDED.{c}" for c in columns[len(key) : first_replaced]]
    updates += [f"{c} = EXCLUDED.{c}" for c in columns[first_replaced:]]
    conflict = f" ON CONFLICT ({', '.join(columns[: len(key)])}) DO UPDATE SET {', '.join(updates)}"
    with conn.cursor() as cursor:
        for start in range(0, len(rows), _ROWS_PER_STATEMENT):
            chunk = rows[start : start + _ROWS_PER_STATEMENT]
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES "  # noqa: S608
                + ", ".join([row_sql] * len(chunk))
                + conflict,
                [v for row in chunk for v in prepare(row)],
            )
