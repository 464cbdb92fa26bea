"""Large messages: left in the database by the batch, streamed to the relay in chunks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.mail import EmailMessage
from django.db import connections
from django.test.utils import CaptureQueriesContext

from django_smtprelay.delivery import DeliveryEngine, content
from django_smtprelay.delivery.content import ContentGone, StoredContent
from django_smtprelay.delivery.loading import load_parts
from django_smtprelay.health import RouteHealthService
from django_smtprelay.models import Message
from django_smtprelay.routing import Router

pytestmark = pytest.mark.django_db

# Dots at line starts everywhere, so that chunk boundaries fall before, on and
# after them; a line ending that a boundary splits; a body without a last line end.
BODY = "".join(f".{i}\n..line {i}\n.\nx.y\r\n" for i in range(60)) + ".last"


@pytest.fixture
def tiny_chunks(monkeypatch):
    """Stream every message above 1,000 bytes, in chunks of 7: every kind of boundary."""
    monkeypatch.setattr(content, "STREAM_ABOVE", 1000)
    monkeypatch.setattr(content, "CHUNK", 7)
    from django_smtprelay.delivery import loading

    monkeypatch.setattr(loading, "STREAM_ABOVE", 1000)


def queue(body: str = BODY, **kwargs) -> Message:
    EmailMessage("Large", body, "sender@example.com", ["to@example.com"], **kwargs).send()
    return Message.objects.latest("pk")


def test_a_large_message_is_not_loaded_with_its_batch(tiny_chunks) -> None:
    small = queue("short")
    large = queue()
    claim = Message.objects.claim(10, lease=timedelta(minutes=5))
    parts, _nothing = load_parts(
        claim.token, claim.ids, claim.taken_over, Router(), RouteHealthService(), large.created_at
    )
    by_pk = {part.msg.pk: part.msg.data for part in parts}
    assert by_pk[small.pk] == bytes(small.raw)
    assert isinstance(by_pk[large.pk], StoredContent)
    assert len(by_pk[large.pk]) == len(bytes(large.raw))
    assert bytes(by_pk[large.pk]) == bytes(large.raw)


def test_a_streamed_message_arrives_byte_for_byte(tiny_chunks, smtp_server, make_route) -> None:
    server = smtp_server()
    make_route(server)
    messages = [queue(), queue(BODY + "\n"), queue("short")]
    report = DeliveryEngine().run()
    assert report.sent == 3
    received = {m.data for m in server.messages}
    assert received == {bytes(m.raw) for m in messages}


@pytest.mark.parametrize("relay_has_8bitmime", [True, False])
def test_an_8bit_body_streamed_is_declared_or_converted(
    tiny_chunks, smtp_server, make_route, relay_has_8bitmime
) -> None:
    disabled = set() if relay_has_8bitmime else {"8BITMIME"}
    server = smtp_server(disable_extensions=disabled)
    make_route(server)
    email = EmailMessage("Large", BODY, "sender@example.com", ["to@example.com"])
    email.send()
    message = Message.objects.latest("pk")
    # Make the stored bytes 8-bit (an SMTP submission can queue such bytes).
    raw = bytes(message.raw).replace(b"line 1\r\n", "l\u00efne 1\r\n".encode(), 1)
    raw = raw.replace(b"Content-Transfer-Encoding: 7bit", b"Content-Transfer-Encoding: 8bit")
    assert not raw.isascii()
    message.content.raw = raw
    message.content.save()
    Message.objects.filter(pk=message.pk).update(size=len(raw))
    assert DeliveryEngine().run().sent == 1
    (received,) = server.messages
    if relay_has_8bitmime:
        assert received.data == raw
        assert "BODY=8BITMIME" in " ".join(received.mail_options)
    else:
        assert received.data.isascii()


def stored(message: Message, size: int | None = None) -> StoredContent:
    return StoredContent(message.pk, len(bytes(message.raw)) if size is None else size, "default")


def test_each_reader_gives_the_stored_bytes_chunk_by_chunk(tiny_chunks) -> None:
    # SUBSTR is what PostgreSQL reads with; its SQL runs on SQLite too.
    message = queue()
    raw, conn = bytes(message.raw), connections["default"]
    expected = [raw[i : i + 7] for i in range(0, len(raw), 7)]
    with CaptureQueriesContext(conn) as queries:
        assert list(stored(message)._substr_chunks(conn)) == expected
    assert len(queries) == len(expected), "one query a chunk, none past the end"
    with CaptureQueriesContext(conn) as queries:
        assert list(stored(message).chunks()) == expected  # the database's own reader
    if conn.vendor == "sqlite":  # one query for the row, then the blob is read directly
        assert len(queries) == 1 and "SUBSTR" not in queries[0]["sql"]
    assert bytes(stored(message)) == raw


def test_the_substr_reader_stops_at_the_end_of_the_bytes(tiny_chunks) -> None:
    # A size larger than the bytes stored (a row changed under the batch) ends, not loops.
    message = queue()
    raw = bytes(message.raw)
    assert b"".join(stored(message, len(raw) + 50)._substr_chunks(connections["default"])) == raw


def test_isascii_looks_at_the_stored_bytes(tiny_chunks) -> None:
    message = queue()
    assert stored(message).isascii()
    message.content.raw = bytes(message.raw) + "\u00ef".encode()
    message.content.save()
    assert not stored(message).isascii()


def test_bytes_deleted_under_a_send_are_named(tiny_chunks) -> None:
    message = queue()
    content_of = stored(message)
    message.content.delete()
    for read in (content_of.chunks, lambda: content_of._substr_chunks(connections["default"])):
        with pytest.raises(ContentGone, match=f"the content of message {message.pk} was deleted"):
            list(read())
