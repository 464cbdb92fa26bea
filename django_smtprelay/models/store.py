"""Writing queued messages: three tables, one transaction, few round trips.

Profiled on PostgreSQL (3,000 messages, psycopg 3), the multi-row
``INSERT ... VALUES`` path spent most of its time outside the database:
psycopg splits a statement's SQL to find its placeholders in Python, and a
statement of 500 rows has 8,500 of them (a third of the call), and the
server then parses them all again. So on PostgreSQL with psycopg 3:

- many messages: their ids are taken from the sequence in one query, then
  the three tables are filled with ``COPY ... FROM STDIN``, which carries
  rows without SQL to parse on either side;
- one message (``send_mail()`` in a request): one statement whose
  data-modifying CTEs write the message, its bytes, its recipients and its
  sending domain, in one round trip; outside a transaction it is its own.

A sending domain this process has recorded (committed) in the last
``DOMAIN_MEMORY`` seconds is not written again: the upsert found it there
on every call but the first, and cost a tenth of the statement's server time
(see ``_recorded``).

Other databases take multi-row ``INSERT ... RETURNING`` (see ``bulk``);
one message there is one ``INSERT`` per table on one cursor, the statements
built once per database.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from functools import cache, lru_cache
from typing import Any

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.constants import OnConflict
from django.db.models.signals import post_delete, post_migrate
from django.utils import timezone

from ..envelope import address_domain
from .bulk import RowPreparer, insert_returning_ids, insert_rows, insert_sql
from .domains import SenderDomain
from .messages import Message, MessageContent, Recipient

MESSAGE_COLUMNS = (
    "status",
    "priority",
    "from_email",
    "sender_domain",
    "from_domain",
    "subject",
    "message_id",
    "size",
    "route_hint",
    "retry_route",
    "created_at",
    "next_attempt_at",
    "expires_at",
    "deliver_by",
    "attempt_count",
    "last_error",
    "possible_duplicate",
    "submission_account_id",
)
CONTENT_COLUMNS = ("message_id", "raw")
RECIPIENT_COLUMNS = (
    "message_id",
    "address",
    "domain",
    "status",
    "enhanced_code",
    "reply",
    "provider_message_id",
)


def _recipient_row(pk: int, address: str) -> tuple:
    # The domain as the ORM's AddressDomainField would set it: these writers
    # bypass the ORM, so every one of them goes through this row.
    return (pk, address, address_domain(address), Recipient.Status.PENDING.value, "", "", "")


def one_statement(using: str, count: int) -> bool:
    """Whether ``count`` messages are written by a single statement (which
    needs no transaction of its own: a statement is atomic)."""
    return count == 1 and _copies(connections[using])


def store(
    using: str,
    rows: list[tuple],
    contents: Sequence[bytes],
    recipients: Sequence[Sequence[str]],
) -> list[int]:
    """Write messages (``rows`` in ``MESSAGE_COLUMNS`` order), their bytes and
    their recipients, and record their sending domains; return their ids.

    The caller holds a transaction unless :func:`one_statement` is true.
    """
    conn = connections[using]
    if _copies(conn):
        if len(rows) == 1:
            return [_one_message(conn, rows[0], contents[0], recipients[0])]
        return _copy_messages(conn, rows, contents, recipients)
    if len(rows) == 1 and conn.features.can_return_columns_from_insert:
        return [_one_message_returning(conn, rows[0], contents[0], recipients[0])]
    ids = insert_returning_ids(Message, MESSAGE_COLUMNS, rows, using=using)
    if ids is None:  # a database that returns no ids from bulk inserts
        ids = []
        for row in rows:
            message = Message(**dict(zip(MESSAGE_COLUMNS, row, strict=True)))
            message.save(using=using, force_insert=True)
            ids.append(message.pk)
    insert_rows(
        MessageContent,
        CONTENT_COLUMNS,
        [(pk, raw) for pk, raw in zip(ids, contents, strict=True)],
        using=using,
    )
    insert_rows(
        Recipient,
        RECIPIENT_COLUMNS,
        [
            _recipient_row(pk, address)
            for pk, addresses in zip(ids, recipients, strict=True)
            for address in addresses
        ],
        using=using,
    )
    record_domains(using, sorted({row[3] for row in rows}))
    return ids


def record_domains(using: str, domains: list[str]) -> None:
    """Add the sending domains not recorded yet (``INSERT`` ignoring conflicts),
    but those this process recorded a moment ago."""
    domains = [d for d in domains if not _known(using, d)]
    if not domains:
        return
    conn = connections[using]
    columns, _values = _domain_row(conn, domains[0])
    with conn.cursor() as cursor:
        cursor.executemany(_domains_sql(using, columns), [_domain_row(conn, d)[1] for d in domains])
    _remember(using, domains)


# Sending domains recorded by this process, per database, and when (time.monotonic()).
# Every message writes its sending domain's row if missing, but a site sends
# from a few domains, and the upsert that found the row there every time cost
# a tenth of a one-message statement on PostgreSQL (a table and three indexes
# opened for nothing; bench/README.md). A domain is remembered only once its
# row is committed, and for DOMAIN_MEMORY seconds: a row deleted meanwhile
# (the admin's delete, another process) is written again by the first message
# after that; a delete through the ORM in this process forgets them at once.
_recorded: dict[tuple[str, str], float] = {}
DOMAIN_MEMORY = 300.0
_RECORDED_MAX = 10_000  # a site sending from more domains than this: start over


def _known(using: str, domain: str) -> bool:
    at = _recorded.get((using, domain))
    return at is not None and time.monotonic() - at < DOMAIN_MEMORY


def _remember(using: str, domains: Sequence[str]) -> None:
    """Remember ``domains`` as recorded once the current transaction commits
    (at once in autocommit: the statement that wrote them has committed)."""

    def remember() -> None:
        if connections[using].in_atomic_block:
            # Not a commit: a test's captureOnCommitCallbacks(execute=True) runs the
            # hooks inside the test's transaction, which is then rolled back.
            return
        if len(_recorded) > _RECORDED_MAX:
            _recorded.clear()
        now = time.monotonic()
        for domain in domains:
            _recorded[using, domain] = now

    conn = connections[using]
    if conn.in_atomic_block:
        transaction.on_commit(remember, using=using)
    elif conn.get_autocommit():
        remember()
    # else: the caller manages the transaction by hand (autocommit off) and
    # commits or rolls back unseen: nothing is remembered, nothing skipped.


def forget_domains(**_kwargs: object) -> None:
    """Forget every remembered sending domain (each is upserted again once)."""
    _recorded.clear()


post_delete.connect(forget_domains, sender=SenderDomain, dispatch_uid="smtprelay-forget-domains")
# ``manage.py flush`` (and a TransactionTestCase's teardown) empties the tables
# without a delete signal, but sends post_migrate.
post_migrate.connect(forget_domains, dispatch_uid="smtprelay-forget-domains-on-flush")


@cache
def _domains_sql(alias: str, columns: tuple[str, ...]) -> str:
    conn = connections[alias]
    field = SenderDomain._meta.get_field("domain")
    qn = conn.ops.quote_name
    return (
        f"{conn.ops.insert_statement(on_conflict=OnConflict.IGNORE)} "
        f"{qn(SenderDomain._meta.db_table)} ({', '.join(qn(c) for c in columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))})"
        + conn.ops.on_conflict_suffix_sql([field], OnConflict.IGNORE, None, None)
    )


def _copies(conn: BaseDatabaseWrapper) -> bool:
    if conn.vendor != "postgresql":
        return False
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return is_psycopg3


def _table(model: type, columns: Sequence[str], conn: BaseDatabaseWrapper) -> str:
    qn = conn.ops.quote_name
    cols = ", ".join(qn(model._meta.get_field(c).column) for c in columns)
    return f"{qn(model._meta.db_table)} ({cols})"


def _copy_messages(
    conn: BaseDatabaseWrapper,
    rows: list[tuple],
    contents: Sequence[bytes],
    recipients: Sequence[Sequence[str]],
) -> list[int]:
    prepare = RowPreparer.for_model(Message, MESSAGE_COLUMNS, conn.alias)
    # psycopg's own cursor (COPY is not in the DB-API), its errors raised as Django's.
    with conn.cursor() as wrapper, conn.wrap_database_errors:
        cursor = wrapper.cursor
        # Ids first, in one query, so that the rows of all three tables can
        # be written without reading anything back.
        cursor.execute(
            "SELECT nextval(%s::regclass) FROM generate_series(1, %s)",
            [_sequence(conn.alias), len(rows)],
        )
        ids = sorted(r[0] for r in cursor.fetchall())
        with cursor.copy(f"COPY {_table(Message, ('id', *MESSAGE_COLUMNS), conn)} FROM STDIN") as c:
            for pk, row in zip(ids, rows, strict=True):
                c.write_row((pk, *prepare(row)))
        # Binary: the bytes go as they are, not hex-escaped and decoded again.
        with cursor.copy(
            f"COPY {_table(MessageContent, CONTENT_COLUMNS, conn)} FROM STDIN (FORMAT BINARY)"
        ) as c:
            c.set_types(["int8", "bytea"])
            for pk, raw in zip(ids, contents, strict=True):
                c.write_row((pk, raw))
        with cursor.copy(f"COPY {_table(Recipient, RECIPIENT_COLUMNS, conn)} FROM STDIN") as c:
            for pk, addresses in zip(ids, recipients, strict=True):
                for address in addresses:
                    c.write_row(_recipient_row(pk, address))
    record_domains(conn.alias, sorted({row[3] for row in rows}))
    return ids


@cache
def _sequence(alias: str) -> str:
    """The sequence behind ``Message.id`` (identity or serial column)."""
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_serial_sequence(%s, %s)",
            [Message._meta.db_table, Message._meta.pk.column],
        )
        return cursor.fetchone()[0]


def _one_message(
    conn: BaseDatabaseWrapper, row: tuple, raw: bytes, addresses: Sequence[str]
) -> int:
    """One message in one statement (PostgreSQL): data-modifying CTEs."""
    alias = conn.alias
    values = RowPreparer.for_model(Message, MESSAGE_COLUMNS, alias)(row)
    params = [*values, raw]
    for address in addresses:
        params.extend(_recipient_row(0, address)[1:])
    domain = row[3]
    new_domain = not _known(alias, domain)
    if new_domain:  # its row takes the message's own creation time
        params += (domain, values[_CREATED_AT])
    with _server_binding_cursor(conn) as cursor:
        cursor.execute(_one_message_sql(alias, len(addresses), new_domain), params)
        pk = cursor.fetchone()[0]
    if new_domain:
        _remember(alias, (domain,))
    return pk


_CREATED_AT = MESSAGE_COLUMNS.index("created_at")


def _one_message_returning(
    conn: BaseDatabaseWrapper, row: tuple, raw: bytes, addresses: Sequence[str]
) -> int:
    """One message with one ``INSERT`` per table, on one cursor (SQLite and
    others that return ids from an ``INSERT``). The statements are built once
    per database; per call there is only the values' conversion."""
    values = RowPreparer.for_model(Message, MESSAGE_COLUMNS, conn.alias)(row)
    alias = conn.alias
    domain = row[3]
    new_domain = not _known(alias, domain)
    with conn.cursor() as cursor:
        cursor.execute(insert_sql(alias, Message, MESSAGE_COLUMNS, 1, returning=True), values)
        pk = cursor.fetchone()[0]
        cursor.execute(insert_sql(alias, MessageContent, CONTENT_COLUMNS, 1), (pk, raw))
        rcpt = insert_sql(alias, Recipient, RECIPIENT_COLUMNS, 1)
        if len(addresses) == 1:
            cursor.execute(rcpt, _recipient_row(pk, addresses[0]))
        else:
            cursor.executemany(rcpt, [_recipient_row(pk, address) for address in addresses])
        if new_domain:
            columns, domain_values = _domain_row(conn, domain, values[_CREATED_AT])
            cursor.execute(_domains_sql(alias, columns), domain_values)
    if new_domain:
        _remember(alias, (domain,))
    return pk


def _server_binding_cursor(conn: BaseDatabaseWrapper) -> Any:
    """A cursor that binds parameters on the server: the bytes travel as they
    are, not hex-escaped in the SQL. Django's own cursors bind on the client
    unless the site sets ``server_side_binding``. psycopg prepares the
    statement only if the site's ``OPTIONS`` set ``prepare_threshold`` (Django
    turns it off by default, for connection poolers); measured, preparing it
    saved no server time: planning the CTEs is not where it goes."""
    from django.db.backends.postgresql.base import ServerBindingCursor

    conn.ensure_connection()
    return conn._prepare_cursor(ServerBindingCursor(conn.connection))


@lru_cache(maxsize=128)  # by the number of recipients, with or without the domain
def _one_message_sql(alias: str, recipients: int, domain: bool = True) -> str:
    conn = connections[alias]
    qn = conn.ops.quote_name
    pk = qn(Message._meta.pk.column)
    fields = len(RECIPIENT_COLUMNS) - 1
    if recipients == 1:
        # The usual case, without the VALUES list and its sort: less for the
        # server to plan and run on every call.
        rcpt_select = f"SELECT m.{pk}, {', '.join(['%s'] * fields)} FROM m"  # noqa: S608
    else:
        rcpt_values = ", ".join(
            "(" + ", ".join(["%s"] * fields + [str(i)]) + ")" for i in range(recipients)
        )
        rcpt_cols = ", ".join(f"v{i}" for i in range(fields))
        # In the caller's order: recipients' ids keep it.
        rcpt_select = (
            f"SELECT m.{pk}, {rcpt_cols} FROM m, (VALUES {rcpt_values}) AS v({rcpt_cols}, n) "  # noqa: S608
            "ORDER BY n"
        )
    return (
        f"WITH m AS (INSERT INTO {_table(Message, MESSAGE_COLUMNS, conn)} "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(MESSAGE_COLUMNS))}) RETURNING {pk}), "
        f"c AS (INSERT INTO {_table(MessageContent, CONTENT_COLUMNS, conn)} "
        f"SELECT {pk}, %s FROM m), "
        f"r AS (INSERT INTO {_table(Recipient, RECIPIENT_COLUMNS, conn)} {rcpt_select})"
        + (f", d AS ({_domain_insert_sql(conn)})" if domain else "")
        + f" SELECT {pk} FROM m"  # noqa: S608
    )


def _domain_insert_sql(conn: BaseDatabaseWrapper) -> str:
    """A sending domain's ``INSERT`` ignoring a conflict, with two parameters
    (the domain, the time). The other columns take their defaults written into
    the SQL as literals: constants, which the client then does not encode
    (five JSON values) on every call."""
    from psycopg import sql

    columns, defaults = _domain_defaults(conn.alias)
    domain, created = _domain_index(conn.alias, "domain"), _domain_index(conn.alias, "created_at")
    values = [
        "%s"
        if i in (domain, created)
        else sql.Literal(v).as_string(conn.connection).replace("%", "%%")
        for i, v in enumerate(defaults)
    ]
    if created < domain:  # the parameters' order: domain, then time
        raise RuntimeError("SenderDomain's domain column must come before created_at")
    qn = conn.ops.quote_name
    return (
        f"INSERT INTO {qn(SenderDomain._meta.db_table)} "  # noqa: S608
        f"({', '.join(qn(c) for c in columns)}) VALUES ({', '.join(values)}) "
        "ON CONFLICT DO NOTHING"
    )


def _domain_row(
    conn: BaseDatabaseWrapper, domain: str, created: object = None
) -> tuple[tuple[str, ...], list]:
    """A new ``SenderDomain`` row's columns and values, as ``bulk_create`` writes
    them; ``created``: its creation time, prepared for the database already."""
    columns, defaults = _domain_defaults(conn.alias)
    values = list(defaults)
    values[_domain_index(conn.alias, "domain")] = domain
    if created is None:
        field = SenderDomain._meta.get_field("created_at")
        created = field.get_db_prep_save(timezone.now(), conn)
    values[_domain_index(conn.alias, "created_at")] = created
    return columns, values


@cache
def _domain_index(alias: str, name: str) -> int:
    return _domain_defaults(alias)[0].index(SenderDomain._meta.get_field(name).column)


@cache
def _domain_defaults(alias: str) -> tuple[tuple[str, ...], tuple]:
    # Prepared once per database: the defaults are constants (JSON encoding
    # five of them per call cost more than the rest of the row).
    conn = connections[alias]
    record = SenderDomain(domain="")
    columns, values = [], []
    for field in SenderDomain._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(field.column)
        values.append(field.get_db_prep_save(getattr(record, field.attname), conn))
    return tuple(columns), tuple(values)


def in_one_transaction(using: str, count: int) -> AbstractContextManager[Any]:
    """The transaction that :func:`store` needs for ``count`` messages."""
    if one_statement(using, count):
        return transaction.mark_for_rollback_on_error(using)
    return transaction.atomic(using=using)
