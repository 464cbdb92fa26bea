"""A change list paginator whose count does not grow with the history.

Django's paginator counts every row the list's filters match (``COUNT(*)``),
which reads the whole table when the queue holds millions of messages. Here the
count stops at ``CAP`` rows (the list then reads "1000+"), and the unfiltered
list on PostgreSQL takes the planner's estimate of the table's size instead
("about 1000000"): a page costs the same with ten thousand rows as with a
million. Pages past the cap are reached by narrowing the filters.
"""

from __future__ import annotations

from typing import Any

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property

CAP = 1000


class HistoryPaginator(Paginator):
    """Counts up to ``cap`` rows; ``capped`` or ``estimated`` say when the count is not exact."""

    cap = CAP

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.capped = False
        self.estimated = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return super().count
        estimate = table_estimate(queryset)
        if estimate is not None and estimate > self.cap:
            self.estimated = True
            return estimate
        count = counted(queryset)[: self.cap + 1].count()
        if count > self.cap:
            self.capped = True
            return self.cap
        return count


def counted(queryset: QuerySet) -> QuerySet:
    """The list's rows as its capped count reads them.

    Filters on the list's own table (``EXISTS`` over others included) are
    counted unordered: the database stops at the cap along its cheapest path
    (the message list by recipient domain: 2 ms instead of 40 at a million
    messages, where the ordered count walked the ``created_at`` index and
    probed 20,000 messages for 1,000 matches). A filter through a join keeps
    the list's ordering, so the database walks the page's own index: counted
    unordered, PostgreSQL hashed the whole join (the recipients of the last
    24 hours, an ``OR`` over the message's creation: 750 ms instead of 28).
    """
    if len(queryset.query.alias_map) > 1:
        return queryset
    return queryset.order_by()


def table_estimate(queryset: QuerySet) -> int | None:
    """PostgreSQL's estimate of the rows of an unfiltered ``queryset``'s table, else None."""
    connection = connections[queryset.db]
    query = queryset.query
    if connection.vendor != "postgresql" or query.where or query.distinct or query.combinator:
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
            [queryset.model._meta.db_table],
        )
        row = cursor.fetchone()
    # -1 (or 0) when the table was never analysed: count it instead.
    return int(row[0]) if row and row[0] > 0 else None
