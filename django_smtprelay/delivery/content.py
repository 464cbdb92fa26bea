"""A large message's bytes, read from the database while they are sent.

A batch loads the bytes of its small messages with its rows. A message
larger than ``STREAM_ABOVE`` is left in the database until its turn comes,
and then read a chunk at a time: SQLite's incremental blob I/O, or
``SUBSTR`` on PostgreSQL and elsewhere (an uncompressed TOAST value, which
base64 attachments make, is read slice by slice). A drain of large messages
holds about one chunk of each in memory, not a batch of whole bodies.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db import connections

from ..models import MessageContent

# Bytes: a message larger than this is streamed, not loaded with its batch.
STREAM_ABOVE = 1024 * 1024
CHUNK = 256 * 1024


class ContentGone(RuntimeError):
    """The bytes of a message being sent were deleted under it."""


class StoredContent:
    """``transports.base.Content`` over a ``MessageContent`` row."""

    def __init__(self, message_pk: int, size: int, using: str) -> None:
        self.message_pk = message_pk
        self.size = size
        self.using = using
        self._ascii: bool | None = None

    def __repr__(self) -> str:
        return f"<StoredContent of message {self.message_pk}: {self.size} bytes>"

    def __len__(self) -> int:
        return self.size

    def isascii(self) -> bool:
        # One pass over the bytes (the transport asks before the MAIL command).
        if self._ascii is None:
            self._ascii = all(chunk.isascii() for chunk in self.chunks())
        return self._ascii

    def __bytes__(self) -> bytes:
        return b"".join(self.chunks())

    def chunks(self) -> Iterator[bytes]:
        conn = connections[self.using]
        conn.ensure_connection()
        if conn.vendor == "sqlite" and hasattr(conn.connection, "blobopen"):
            yield from self._blob_chunks(conn)
        else:
            yield from self._substr_chunks(conn)

    def _names(self, conn) -> tuple[str, str, str]:  # type: ignore[no-untyped-def]
        meta = MessageContent._meta
        qn = conn.ops.quote_name
        return qn(meta.db_table), qn(meta.get_field("raw").column), qn(meta.pk.column)

    def _blob_chunks(self, conn) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
        table, _column, pk = self._names(conn)
        with conn.cursor() as cursor:
            cursor.execute(f"SELECT rowid FROM {table} WHERE {pk} = %s", [self.message_pk])  # noqa: S608
            row = cursor.fetchone()
        if row is None:
            raise ContentGone(f"the content of message {self.message_pk} was deleted")
        meta = MessageContent._meta
        with conn.connection.blobopen(
            meta.db_table, meta.get_field("raw").column, row[0], readonly=True
        ) as blob:
            while chunk := blob.read(CHUNK):
                yield chunk

    def _substr_chunks(self, conn) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
        table, column, pk = self._names(conn)
        sql = f"SELECT SUBSTR({column}, %s, %s) FROM {table} WHERE {pk} = %s"  # noqa: S608
        offset = 0
        while offset < self.size:
            with conn.cursor() as cursor:
                cursor.execute(sql, [offset + 1, CHUNK, self.message_pk])
                row = cursor.fetchone()
            if row is None or row[0] is None:
                raise ContentGone(f"the content of message {self.message_pk} was deleted")
            chunk = bytes(row[0])
            if not chunk:
                break
            yield chunk
            offset += len(chunk)
