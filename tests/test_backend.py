"""QueuedEmailBackend: what is stored, in how many queries, and what is refused."""

from __future__ import annotations

import logging
from email import message_from_bytes, policy

import pytest
from django.core import mail
from django.core.mail import EmailMessage, EmailMultiAlternatives, send_mail, send_mass_mail
from django.db import transaction

from django_smtprelay.exceptions import InvalidMessageError
from django_smtprelay.models import Message, Recipient, SenderDomain
from django_smtprelay.models.bulk import insert_returning_ids

pytestmark = pytest.mark.django_db


def parse(message: Message):
    return message_from_bytes(bytes(message.raw), policy=policy.default)


def test_send_mail_is_stored_before_it_returns() -> None:
    sent = send_mail("Hello", "Body", "from@example.com", ["to@example.com"])
    assert sent == 1
    message = Message.objects.get()
    assert message.status == Message.Status.QUEUED
    assert message.from_email == "from@example.com"
    assert list(message.recipients.values_list("address", "status")) == [
        ("to@example.com", Recipient.Status.PENDING)
    ]
    assert parse(message)["Subject"] == "Hello"


def test_bytes_are_what_django_would_send_with_crlf_line_ends() -> None:
    email = EmailMessage("Subject", "Line one\nLine two", "from@example.com", ["to@example.com"])
    email.send()
    raw = bytes(Message.objects.get().raw)
    assert b"\r\nLine one\r\nLine two" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert raw.endswith(b"\r\n")


def test_alternatives_attachments_and_non_ascii_survive() -> None:
    email = EmailMultiAlternatives(
        "Grüße aus Köln ✉",
        "Plain ünïcode",
        "Jörg <joerg@example.com>",
        ["Zoë <zoe@example.com>"],
        cc=["cc@example.com"],
        bcc=["hidden@example.com"],
    )
    email.attach_alternative("<p>HTML ünïcode</p>", "text/html")
    email.attach("report.csv", b"a,b\n1,2\n", "text/csv")
    email.send()
    message = Message.objects.get()
    parsed = parse(message)
    assert parsed["Subject"] == "Grüße aus Köln ✉"
    assert "Zoë" in parsed["To"]
    assert parsed["Cc"] == "cc@example.com"
    assert parsed["Bcc"] is None, "Bcc must travel in the envelope only"
    parts = {p.get_content_type(): p for p in parsed.walk()}
    assert parts["text/html"].get_content().strip() == "<p>HTML ünïcode</p>"
    assert parts["text/csv"].get_filename() == "report.csv"
    assert parts["text/csv"].get_content().replace("\r\n", "\n") == "a,b\n1,2\n"
    assert sorted(message.recipients.values_list("address", flat=True)) == [
        "cc@example.com",
        "hidden@example.com",
        "zoe@example.com",
    ]
    assert message.subject == "Grüße aus Köln ✉"
    assert message.message_id and message.message_id == parsed["Message-ID"]


def test_idn_domains_are_encoded_for_the_envelope() -> None:
    send_mail("IDN", "Body", "from@exämple.com", ["to@bücher.example"])
    message = Message.objects.get()
    assert message.from_email == "from@xn--exmple-cua.com"
    assert message.recipients.get().address == "to@xn--bcher-kva.example"


def test_many_messages_are_bulk_inserted_not_one_round_trip_each(
    django_assert_max_num_queries,
) -> None:
    datatuple = [(f"S{i}", "Body", "from@example.com", [f"to{i}@example.com"]) for i in range(400)]
    # Bulk inserts are split only by the database's parameter limit (SQLite: 999);
    # one round trip per message would be 800 queries.
    with django_assert_max_num_queries(25):
        assert send_mass_mail(datatuple) == 400
    assert Message.objects.count() == 400
    # Ids come back in insert order, across statements: each recipient is on its message.
    pairs = Recipient.objects.values_list("message__subject", "address")
    assert sorted(pairs) == sorted((f"S{i}", f"to{i}@example.com") for i in range(400))


def test_a_database_without_ids_from_bulk_inserts_still_queues_everything(monkeypatch) -> None:
    from django.db import connection

    # MySQL and SQLite before 3.35 return no ids from a multi-row INSERT.
    monkeypatch.setattr(
        type(connection.features), "can_return_rows_from_bulk_insert", False, raising=False
    )
    assert insert_returning_ids(Message, ("subject",), [("x",)], using="default") is None
    datatuple = [(f"S{i}", "Body", "from@example.com", [f"to{i}@example.com"]) for i in range(3)]
    assert send_mass_mail(datatuple) == 3
    pairs = Recipient.objects.values_list("message__subject", "address")
    assert sorted(pairs) == [(f"S{i}", f"to{i}@example.com") for i in range(3)]
    assert set(Message.objects.values_list("status", flat=True)) == {Message.Status.QUEUED}


def test_sender_domain_is_recorded_once() -> None:
    send_mail("A", "Body", "a@Example.COM", ["to@example.org"])
    send_mail("B", "Body", "b@example.com", ["to@example.org"])
    assert list(SenderDomain.objects.values_list("domain", flat=True)) == ["example.com"]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"to": []}, "has no recipients"),
        ({"to": ["not-an-address"]}, "'not-an-address'"),
        ({"to": ["a@example.com"], "from_email": "bad@@example.com"}, "'bad@@example.com'"),
        ({"to": ["a@example.com\nBcc: victim@example.com"]}, "line break"),
        ({"to": ["a@example.com"], "headers": {"X-Tag": "a\r\nBcc: x@example.com"}}, "X-Tag"),
        ({"to": ["a@example.com"], "subject": "Hi\nBcc: victim@example.com"}, "Hi"),
    ],
)
def test_bad_input_is_refused_naming_the_value_and_nothing_is_stored(kwargs, fragment) -> None:
    good = EmailMessage("Good", "Body", "from@example.com", ["ok@example.com"])
    values = {"subject": "Bad", "body": "Body", "from_email": "from@example.com", **kwargs}
    bad = EmailMessage(**values)
    with pytest.raises(InvalidMessageError) as info:
        mail.get_connection().send_messages([good, bad])
    assert fragment in str(info.value)
    assert Message.objects.count() == 0
    assert Recipient.objects.count() == 0


def test_fail_silently_counts_only_what_was_queued(caplog) -> None:
    good = EmailMessage("Good", "Body", "from@example.com", ["ok@example.com"])
    bad = EmailMessage("Bad", "Body", "from@example.com", ["not-an-address"])
    with caplog.at_level(logging.WARNING, logger="django_smtprelay"):
        count = mail.get_connection(fail_silently=True).send_messages([bad, good])
    assert count == 1
    assert list(Message.objects.values_list("subject", flat=True)) == ["Good"]


def test_control_headers_steer_the_queue_and_are_not_sent() -> None:
    email = EmailMessage(
        "Reset",
        "Body",
        "from@example.com",
        ["to@example.com"],
        headers={"X-SMTPRelay-Route": "transactional", "X-SMTPRelay-Priority": "high"},
    )
    email.send()
    message = Message.objects.get()
    assert message.route_hint == "transactional"
    assert message.priority == Message.Priority.HIGH
    assert b"X-SMTPRelay" not in bytes(message.raw)
    assert "X-SMTPRelay-Route" in email.extra_headers, "the caller's message is left as it was"


def test_unknown_priority_is_refused() -> None:
    email = EmailMessage("S", "B", "from@example.com", ["to@example.com"])
    email.smtprelay_priority = "urgent"
    with pytest.raises(InvalidMessageError, match="'urgent'"):
        email.send()


@pytest.mark.django_db(transaction=True)
def test_rolled_back_transaction_queues_and_publishes_nothing(relay_settings, monkeypatch):
    published = []
    monkeypatch.setattr("django_smtprelay.backends.publish", lambda ids: published.append(ids))
    relay_settings(PUBLISH_ON_COMMIT=True)
    with pytest.raises(RuntimeError), transaction.atomic():
        send_mail("S", "B", "from@example.com", ["to@example.com"])
        raise RuntimeError("roll back")
    assert Message.objects.count() == 0
    assert published == []
    send_mail("S", "B", "from@example.com", ["to@example.com"])
    assert published == [[Message.objects.get().pk]]


@pytest.mark.parametrize(
    "address",
    [
        "a@b.co",
        "user.name+tag@example.com",
        "a..b@example.com",
        "a@-b.com",
        "a@b-.com",
        "a@b.c",
        "x@y.z1",
        "x@y.xn--p1ai",
        "a@localhost",
        ".a@b.com",
        "a.@b.com",
        "a@b..com",
        "a@1.2.3.4",
        "o'brien@example.ie",
        "a@b.-com",
    ],
)
def test_the_fast_address_check_never_accepts_what_django_refuses(address):
    from django.core.validators import validate_email

    from django_smtprelay.envelope import _PLAIN_ADDRESS

    try:
        validate_email(address)
        valid = True
    except Exception:
        valid = False
    if _PLAIN_ADDRESS.fullmatch(address):
        assert valid, f"{address!r} passed the fast path but Django refuses it"
