"""8-bit messages to a relay that did not offer 8BITMIME go out 7-bit (RFC 6152), or not at all."""

from __future__ import annotations

import email
from email import policy

import pytest
from django.core.mail import EmailMessage, EmailMultiAlternatives

from django_smtprelay.backends import queue
from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.envelope import PreparedMessage
from django_smtprelay.models import DeliveryAttempt, Message, Recipient
from django_smtprelay.transports.sevenbit import SevenBitError, _verify, to_seven_bit

NO_8BITMIME = {"8BITMIME"}


def decoded_parts(data: bytes) -> list[tuple[str, bytes | None]]:
    """(content type, decoded payload) of every part, as a reader sees them."""
    parsed = email.message_from_bytes(data, policy=policy.compat32)
    return [
        (part.get_content_type(), None if part.is_multipart() else part.get_payload(decode=True))
        for part in parsed.walk()
    ]


def headers_but_encoding(data: bytes) -> list[list[tuple[str, str]]]:
    parsed = email.message_from_bytes(data, policy=policy.compat32)
    return [
        [(k, v) for k, v in part.items() if k.lower() != "content-transfer-encoding"]
        for part in parsed.walk()
    ]


def queue_raw(data: bytes, to: str = "rcpt@example.com") -> Message:
    prepared = PreparedMessage(
        from_email="sender@example.com",
        recipients=[to],
        data=data,
        subject="raw",
        message_id="<raw@example.com>",
        route_hint="",
        priority="",
    )
    (pk,) = queue([(prepared, Message.Priority.NORMAL)])
    return Message.objects.get(pk=pk)


def utf8_text() -> EmailMessage:
    return EmailMessage(
        "Grüße", "Ünïcode body ✉\n.\nzweite Zeile\n", "sender@example.com", ["a@example.com"]
    )


def html_alternative() -> EmailMessage:
    message = EmailMultiAlternatives(
        "Grüße", "Ünïcode ✉\n", "sender@example.com", ["a@example.com"]
    )
    message.attach_alternative("<p>Grüße ✉ ça va? ½ ¼ ¾ €€€€€€€€</p>", "text/html")
    return message


def attachment() -> EmailMessage:
    message = EmailMessage("Notes", "See the notes.\n", "sender@example.com", ["a@example.com"])
    message.attach("notes.txt", "Änderungen: größer, schöner\n" * 40, "text/plain")
    message.attach("data.bin", bytes(range(256)), "application/octet-stream")
    return message


# -- against a real relay without 8BITMIME ------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("build", [utf8_text, html_alternative, attachment])
def test_an_8bit_message_arrives_7bit_and_decodes_to_the_same_parts(smtp_server, make_route, build):
    server = smtp_server(disable_extensions=NO_8BITMIME)
    make_route(server)
    build().send()
    original = bytes(Message.objects.get().raw)
    assert not original.isascii()
    assert DeliveryEngine().run().sent == 1
    (received,) = server.messages
    assert received.data.isascii()
    assert "BODY=8BITMIME" not in received.mail_options
    assert decoded_parts(received.data) == decoded_parts(original)
    # Only the encoded bodies and their encoding headers changed.
    assert headers_but_encoding(received.data) == headers_but_encoding(original)


@pytest.mark.django_db
def test_the_size_announced_is_the_size_sent(smtp_server, make_route):
    # A pipelined batch: each message's MAIL goes out with the previous content.
    server = smtp_server(disable_extensions=NO_8BITMIME)
    make_route(server)
    for build in (utf8_text, html_alternative, attachment):
        build().send()
    assert DeliveryEngine().run().sent == 3
    assert len(server.messages) == 3 and server.sessions == 1
    for received in server.messages:
        (size,) = [o for o in received.mail_options if o.startswith("SIZE=")]
        assert int(size.removeprefix("SIZE=")) == len(received.data)


@pytest.mark.django_db
def test_a_relay_with_8bitmime_gets_the_bytes_as_they_are(smtp_server, make_route):
    server = smtp_server()
    make_route(server)
    utf8_text().send()
    original = bytes(Message.objects.get().raw)
    DeliveryEngine().run()
    assert server.messages[0].data == original
    assert "BODY=8BITMIME" in server.messages[0].mail_options


@pytest.mark.django_db
def test_a_7bit_message_goes_out_byte_for_byte(smtp_server, make_route):
    server = smtp_server(disable_extensions=NO_8BITMIME)
    make_route(server)
    EmailMessage("Plain", "ASCII only\n", "sender@example.com", ["a@example.com"]).send()
    original = bytes(Message.objects.get().raw)
    assert original.isascii()
    assert DeliveryEngine().run().sent == 1
    assert server.messages[0].data == original


RAW_8BIT_HEADER = (
    b"From: sender@example.com\r\nTo: rcpt@example.com\r\n"
    b"Subject: Gr\xc3\xbc\xc3\x9fe\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    b"\xc3\x9cn\xc3\xafcode\r\n"
)


@pytest.mark.django_db
def test_8bit_header_bytes_fail_when_no_route_offers_8bitmime(smtp_server, make_route):
    server = smtp_server(disable_extensions=NO_8BITMIME)
    make_route(server, name="seven")
    message = queue_raw(RAW_8BIT_HEADER)
    DeliveryEngine().run()
    message.refresh_from_db()
    assert server.transactions == 0  # refused before MAIL
    assert message.status == Message.Status.FAILED
    attempt = message.attempts.get()
    assert attempt.outcome == DeliveryAttempt.Outcome.ROUTE_FAULT
    assert "8BITMIME" in attempt.reply and "8-bit bytes in its header" in attempt.reply
    assert "8BITMIME" in message.recipients.get().reply


@pytest.mark.django_db
def test_8bit_header_bytes_go_to_the_next_route_that_offers_8bitmime(smtp_server, make_route):
    seven = smtp_server(disable_extensions=NO_8BITMIME)
    eight = smtp_server()
    make_route(seven, name="seven", priority=1)
    make_route(eight, name="eight", priority=2)
    message = queue_raw(RAW_8BIT_HEADER)
    DeliveryEngine().run()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert eight.messages[0].data == RAW_8BIT_HEADER
    assert message.attempts.get(route_name="seven").outcome == "route_fault"
    assert message.recipients.get().status == Recipient.Status.DELIVERED


# -- the conversion itself ----------------------------------------------------


def test_7bit_data_is_returned_unchanged():
    data = b"Subject: x\r\nContent-Transfer-Encoding: 8bit\r\n\r\nascii\r\n"
    assert to_seven_bit(data) is data


def test_a_message_without_mime_headers_gets_them():
    data = b"Subject: x\r\n\r\nMany greetings, Gr\xc3\xbc\xc3\x9fe\r\n"
    out = to_seven_bit(data)
    assert out == (
        b"Subject: x\r\nContent-Transfer-Encoding: quoted-printable\r\nMIME-Version: 1.0\r\n"
        b"\r\nMany greetings, Gr=C3=BC=C3=9Fe\r\n"
    )


def test_bare_lf_line_ends_are_kept():
    data = b"Subject: x\nContent-Type: text/plain\n\nGr\xc3\xbc\xc3\x9fe\nline\n"
    out = to_seven_bit(data)
    assert out.isascii() and b"\r" not in out
    assert decoded_parts(out) == decoded_parts(data)


def test_mostly_8bit_text_is_base64_and_binary_parts_always_are():
    data = (
        b'Content-Type: multipart/mixed; boundary="b"\r\nMIME-Version: 1.0\r\n\r\n'
        b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + "日本語のテキスト".encode()
        * 20
        + b"\r\n--b\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\nab\xffcd\r\n--b--\r\n"
    )
    out = to_seven_bit(data)
    assert out.count(b"Content-Transfer-Encoding: base64") == 2
    assert b"binary" not in out
    assert decoded_parts(out) == decoded_parts(data)


def test_an_enclosed_message_is_converted_and_relabelled():
    inner = b"Subject: in\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\xc3\xa9t\xc3\xa9\r\n"
    data = (
        b'Content-Type: multipart/mixed; boundary="b"\r\nMIME-Version: 1.0\r\n\r\n'
        b"--b\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        + inner
        + b"\r\n--b--\r\n"
    )
    out = to_seven_bit(data)
    assert out.isascii()
    assert b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n" in out
    assert decoded_parts(out) == decoded_parts(data)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (RAW_8BIT_HEADER, "the message has 8-bit bytes in its header"),
        (
            b"Content-Transfer-Encoding: base64\r\n\r\n\xc3\xa9\r\n",
            "the message has 8-bit bytes in a body declared base64",
        ),
        (
            b"Content-Transfer-Encoding: x-uuencode\r\n\r\n\xc3\xa9\r\n",
            "unknown encoding 'x-uuencode'",
        ),
        (
            b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
            b"pre \xc3\xa9\r\n--b\r\n\r\nx\r\n--b--\r\n",
            "8-bit bytes in its preamble",
        ),
        (
            b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
            b"--b\r\n\r\nx\r\n--b--\r\n\xc3\xa9\r\n",
            "8-bit bytes outside its parts",
        ),
        (b"Content-Type: multipart/mixed\r\n\r\n\xc3\xa9\r\n", "multipart without a boundary"),
        (
            b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
            b"Subject: \xc3\xa9\r\n\r\nx\r\n--b--\r\n",
            "part 1 of the message has 8-bit bytes in its header",
        ),
    ],
)
def test_what_cannot_be_made_7bit_is_refused_with_the_reason(data, reason):
    with pytest.raises(SevenBitError, match=reason):
        to_seven_bit(data)


def test_a_conversion_that_changes_a_part_is_caught():
    before = b"Content-Type: text/plain\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n"
    with pytest.raises(SevenBitError, match="part 0 does not decode to the same content"):
        _verify(before, b"Content-Type: text/plain\r\n\r\nGrusse\r\n")
    with pytest.raises(SevenBitError, match="parts instead of"):
        _verify(
            before,
            b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n',
        )


@pytest.mark.django_db
def test_a_message_that_cannot_be_converted_is_not_announced_with_the_one_before(
    smtp_server, make_route
):
    # In a batch, each message's commands ride with the previous content; one
    # that this relay must refuse is never announced, and the session goes on.
    server = smtp_server(disable_extensions=NO_8BITMIME)
    make_route(server)
    utf8_text().send()
    refused = queue_raw(RAW_8BIT_HEADER)
    html_alternative().send()
    DeliveryEngine().run()
    refused.refresh_from_db()
    assert refused.status == Message.Status.FAILED
    assert len(server.messages) == 2 and server.transactions == 2
    assert server.sessions == 1
    assert all(m.data.isascii() for m in server.messages)
