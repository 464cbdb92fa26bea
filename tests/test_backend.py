"""QueuedEmailBackend: what is stored, in how many queries, and what is refused."""

from __future__ import annotations

import logging
from email import message_from_bytes, policy

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage, EmailMultiAlternatives, send_mail, send_mass_mail
from django.db import transaction

from django_smtprelay.exceptions import InvalidMessageError
from django_smtprelay.models import Message, MessageContent, Recipient, SenderDomain
from django_smtprelay.models.bulk import insert_returning_ids
from tests.test_publish_bound import broker_app, published  # noqa: F401

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
    ("address", "fast"),
    [
        ("a@b.co", True),
        ("user.name+tag@example.com", True),
        ("x@y.xn--p1ai", True),
        ("o'brien@example.ie", True),
        ("a..b@example.com", False),
        ("a@-b.com", False),
        ("a@b-.com", False),
        ("a@b.c", False),
        ("x@y.z1", False),
        ("a@localhost", False),  # Django accepts it; the full path decides
        (".a@b.com", False),
        ("a.@b.com", False),
        ("a@b..com", False),
        ("a@1.2.3.4", False),
        ("a@b.-com", False),
    ],
)
def test_the_fast_address_check_never_accepts_what_django_refuses(address, fast):
    from django.core.validators import validate_email

    from django_smtprelay.envelope import _PLAIN_ADDRESS, envelope_address

    try:
        validate_email(address)
        valid = True
    except ValidationError:
        valid = False
    # Which path the address takes is pinned, so a looser pattern shows here...
    assert bool(_PLAIN_ADDRESS.fullmatch(address)) is fast
    # ...and the fast path never takes what Django refuses.
    assert valid or not fast, f"{address!r} passed the fast path but Django refuses it"
    # Either path ends with Django's answer.
    if valid:
        assert envelope_address(address, role="recipient") == address
    else:
        with pytest.raises(InvalidMessageError):
            envelope_address(address, role="recipient")


def test_control_headers_in_any_letter_case_are_all_stripped_and_the_caller_keeps_them() -> None:
    headers = {
        "X-Tag": "kept",
        "x-smtprelay-priority": "high",
        "X-SMTPRelay-Priority": "high",
        "X-SMTPRELAY-ROUTE": "transactional",
        "x-SmtpRelay-Route": "transactional",
        "x-smtprelay-send-at": "2000-01-01T00:00:00+00:00",
    }
    email = EmailMessage("Case", "Body", "from@example.com", ["to@example.com"], headers=headers)
    before = list(email.extra_headers.items())
    email.send()
    message = Message.objects.get()
    assert b"x-smtprelay" not in bytes(message.raw).lower()
    assert b"X-Tag: kept" in bytes(message.raw)
    assert message.priority == Message.Priority.HIGH
    assert message.route_hint == "transactional"
    assert list(email.extra_headers.items()) == before, "restored as it was, in its order"


def test_one_control_header_given_twice_with_different_values_is_refused() -> None:
    headers = {"x-smtprelay-priority": "low", "X-SMTPRelay-Priority": "high"}
    email = EmailMessage("Twice", "Body", "from@example.com", ["to@example.com"], headers=headers)
    with pytest.raises(InvalidMessageError, match=r"X-SMTPRelay-Priority twice.*'low'.*'high'"):
        email.send()
    assert email.extra_headers == headers
    assert Message.objects.count() == 0


def test_lazy_strings_are_accepted_as_addresses_as_django_accepts_them() -> None:
    from django.utils.translation import gettext_lazy

    sent = send_mail(
        "Lazy",
        "Body",
        gettext_lazy("Ops <ops@example.com>"),
        [gettext_lazy("to@example.com")],
    )
    assert sent == 1
    message = Message.objects.get()
    assert message.from_email == "ops@example.com"
    assert message.recipients.get().address == "to@example.com"
    assert parse(message)["From"] == "Ops <ops@example.com>"


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        (b"to@example.com", "it is bytes, not a string"),
        (42, "it is int, not a string"),
        ("to@example.com\r\nBcc: x@example.com", "contains a line break"),
        ("to\x00@example.com", "contains a NUL character"),
    ],
    ids=["bytes", "int", "line-break", "nul"],
)
def test_an_address_error_names_the_real_problem(address, problem) -> None:
    email = EmailMessage("S", "B", "from@example.com", [address])
    with pytest.raises(InvalidMessageError, match=problem):
        email.send()


def long_address(length: int) -> str:
    """A syntactically valid address of exactly ``length`` characters (at most 320)."""
    local = "l" * 64
    labels = []
    remaining = length - len(local) - 1 - len(".com")
    while remaining > 0:
        size = min(63, remaining - 1 if remaining > 63 else remaining)
        labels.append("d" * size)
        remaining -= size + 1
    address = f"{local}@{'.'.join(labels)}.com"
    assert len(address) == length, (len(address), length)
    return address


@pytest.mark.parametrize("length", [255, 300, 320])
def test_addresses_longer_than_smtp_allows_are_refused_naming_them(length) -> None:
    address = long_address(length)
    for kwargs in ({"to": [address]}, {"to": ["ok@example.com"], "from_email": address}):
        values = {"subject": "Long", "body": "B", "from_email": "from@example.com", **kwargs}
        with pytest.raises(InvalidMessageError) as info:
            EmailMessage(**values).send()
        text = str(info.value)
        assert f"it is {length} characters long" in text
        assert "at most 254" in text
        assert address[:40] in text, "names the value"
        assert len(text) < 400, "the value is cut, not pasted whole"
    assert Message.objects.count() == 0


def test_a_254_character_address_is_queued_as_recipient_and_as_sender() -> None:
    address = long_address(254)
    send_mail("Max", "B", "from@example.com", [address])
    assert Message.objects.get().recipients.get().address == address
    # Its domain fits the sender's domain column (253) as well.
    send_mail("Max from", "B", address, ["to@example.com"])
    message = Message.objects.get(subject="Max from")
    assert message.from_email == address
    assert message.sender_domain == address.rpartition("@")[2]


def _with_nul_subject() -> EmailMessage:
    return EmailMessage("Bad\x00subject", "B", "from@example.com", ["to@example.com"])


def _with_nul_message_id() -> EmailMessage:
    headers = {"Message-ID": "<a\x00b@example.com>"}
    return EmailMessage("Bad id", "B", "from@example.com", ["to@example.com"], headers=headers)


def _with_nul_route_hint() -> EmailMessage:
    email = EmailMessage("Bad route", "B", "from@example.com", ["to@example.com"])
    email.smtprelay_route = "relay\x00a"
    return email


def _with_long_route_hint() -> EmailMessage:
    email = EmailMessage("Long route", "B", "from@example.com", ["to@example.com"])
    email.smtprelay_route = "r" * 101
    return email


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (_with_nul_subject, r"'Bad\x00subject' contains a NUL character"),
        (_with_nul_message_id, r"'Message-ID' has a NUL character"),
        (_with_nul_route_hint, r"route hint 'relay\x00a' contains a NUL character"),
        (_with_long_route_hint, "is 101 characters long; at most 100"),
        (lambda: EmailMessage("S", "B", "from@example.com", [long_address(300)]), "at most 254"),
    ],
    ids=["subject", "message-id", "route-hint", "long-route-hint", "long-address"],
)
@pytest.mark.django_db(transaction=True)
def test_what_a_column_cannot_hold_is_refused_and_fail_silently_keeps_the_good_ones(
    make, fragment, caplog
) -> None:
    # transaction=True: on PostgreSQL a DataError inside the test's own
    # transaction would hide what a real caller sees.
    good = [EmailMessage(f"Good {i}", "B", "from@example.com", ["ok@example.com"]) for i in (1, 2)]
    with pytest.raises(InvalidMessageError) as info:
        mail.get_connection().send_messages([good[0], make(), good[1]])
    assert fragment in str(info.value)
    assert Message.objects.count() == 0
    with caplog.at_level(logging.WARNING, logger="django_smtprelay"):
        count = mail.get_connection(fail_silently=True).send_messages([good[0], make(), good[1]])
    assert count == 2
    assert sorted(Message.objects.values_list("subject", flat=True)) == ["Good 1", "Good 2"]
    assert fragment in caplog.text


def test_one_address_given_several_times_is_one_recipient_in_order() -> None:
    email = EmailMessage(
        "Dup",
        "B",
        "from@example.com",
        ["b@example.com", "Bee <b@example.com>", "a@example.com"],
        cc=["a@example.com"],
        bcc=["b@example.com", "c@example.com"],
    )
    email.send()
    addresses = Message.objects.get().recipients.order_by("pk").values_list("address", flat=True)
    assert list(addresses) == ["b@example.com", "a@example.com", "c@example.com"]


@pytest.mark.parametrize("count", [1, 3])
@pytest.mark.django_db(transaction=True)
def test_the_store_is_one_transaction_a_failed_insert_leaves_nothing(monkeypatch, count) -> None:
    from django.db import IntegrityError

    from django_smtprelay.models import store

    # The recipients are written after the message and its bytes (in every
    # path: INSERTs, COPY, one statement); a NULL status makes the database
    # itself refuse them.
    real_row = store._recipient_row

    def null_status(pk: int, address: str) -> tuple:
        row = list(real_row(pk, address))
        row[store.RECIPIENT_COLUMNS.index("status")] = None
        return tuple(row)

    monkeypatch.setattr(store, "_recipient_row", null_status)
    with pytest.raises(IntegrityError):
        send_mass_mail(
            [(f"S{i}", "B", "from@example.com", ["to@example.com"]) for i in range(count)]
        )
    assert Message.objects.count() == 0
    assert MessageContent.objects.count() == 0
    assert SenderDomain.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_one_message_is_one_statement_on_postgresql(django_assert_num_queries) -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: set SMTPRELAY_TEST_DATABASE=postgres to run it")
    # Message, content, recipients and sending domain: one round trip, and
    # no BEGIN/COMMIT of its own (a statement is a transaction).
    with django_assert_num_queries(1):
        send_mail("One", "Body", "from@example.com", ["b@example.com", "a@example.com"])
    message = Message.objects.get()
    assert list(message.recipients.values_list("address", flat=True)) == [
        "b@example.com",
        "a@example.com",
    ]
    assert list(SenderDomain.objects.values_list("domain", flat=True)) == ["example.com"]
    with transaction.atomic():  # inside the caller's transaction: part of it
        send_mail("Two", "Body", "from@example.com", ["c@example.com"])
        transaction.set_rollback(True)
    assert Message.objects.count() == 1


def scheduled(send_at) -> Message:
    email = EmailMessage("Later", "B", "from@example.com", ["to@example.com"])
    email.smtprelay_send_at = send_at
    email.send()
    return Message.objects.latest("pk")


def test_a_send_at_in_the_past_is_clamped_to_now(relay_settings) -> None:
    from datetime import timedelta

    from django.utils import timezone

    relay_settings(MAX_LIFETIME_SECONDS=3600)
    message = scheduled(timezone.now() - timedelta(days=3))
    assert message.next_attempt_at == message.created_at
    assert message.expires_at == message.created_at + timedelta(hours=1)


def test_a_scheduled_message_has_its_whole_lifetime_after_its_send_at(relay_settings) -> None:
    from datetime import timedelta

    from django.utils import timezone

    relay_settings(MAX_LIFETIME_SECONDS=3600)
    later = timezone.now() + timedelta(days=10)
    message = scheduled(later)
    assert message.next_attempt_at == later
    assert message.expires_at == later + timedelta(hours=1)
    soon = timezone.now() + timedelta(minutes=10)
    message = scheduled(soon)
    assert message.expires_at == soon + timedelta(hours=1), "never cut short by the send_at"


def test_an_address_too_long_only_once_idna_encoded_is_refused_saying_so() -> None:
    label = "".join(chr(0x4E00 + i * 37) for i in range(14))  # 14 CJK: 33 once encoded
    address = "l" * 64 + "@" + ".".join([label] * 8) + ".com"
    assert len(address) <= 254
    with pytest.raises(InvalidMessageError, match="once its domain is IDNA-encoded") as info:
        send_mail("IDN", "B", "from@example.com", [address])
    assert "at most 254" in str(info.value)
    assert Message.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_message_queued_receiver_that_raises_does_not_fail_the_send(caplog) -> None:
    from django_smtprelay import signals

    heard: list[list[int]] = []

    def broken(sender, message_ids, **kwargs):
        raise RuntimeError("alerting is down")

    def working(sender, message_ids, **kwargs):
        heard.append(list(message_ids))

    signals.message_queued.connect(broken, weak=False)
    signals.message_queued.connect(working, weak=False)
    try:
        # Committed before the receivers run: a raise would invite a resend.
        assert send_mail("s", "b", "a@example.com", ["b@example.net"]) == 1
    finally:
        signals.message_queued.disconnect(broken)
        signals.message_queued.disconnect(working)
    assert heard == [[Message.objects.get().pk]]
    assert "message_queued receiver" in caplog.text and "alerting is down" in caplog.text


def domain_writes(queries) -> list[str]:
    return [q["sql"] for q in queries if "senderdomain" in q["sql"].lower()]


@pytest.mark.django_db(transaction=True)
def test_a_committed_sending_domain_is_not_written_again() -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    send_mail("A", "Body", "a@example.com", ["to@example.org"])
    with CaptureQueriesContext(connection) as second:
        send_mail("B", "Body", "b@example.com", ["to@example.org"])
    assert domain_writes(second.captured_queries) == []
    assert list(SenderDomain.objects.values_list("domain", flat=True)) == ["example.com"]
    with CaptureQueriesContext(connection) as other:
        send_mail("C", "Body", "c@example.net", ["to@example.org"])
    assert len(domain_writes(other.captured_queries)) == 1


@pytest.mark.django_db(transaction=True)
def test_a_sending_domain_is_written_again_once_forgotten(monkeypatch) -> None:
    from django_smtprelay.models import store

    with transaction.atomic():  # rolled back: never remembered
        send_mail("A", "Body", "a@example.com", ["to@example.org"])
        transaction.set_rollback(True)
    send_mail("B", "Body", "b@example.com", ["to@example.org"])
    assert SenderDomain.objects.filter(domain="example.com").exists()
    SenderDomain.objects.all().delete()  # through the ORM: forgotten at once
    send_mail("C", "Body", "c@example.com", ["to@example.org"])
    assert SenderDomain.objects.filter(domain="example.com").exists()
    # Deleted where this process cannot see it: written again once its memory ends.
    SenderDomain.objects.all()._raw_delete(SenderDomain.objects.db)
    monkeypatch.setattr(store, "DOMAIN_MEMORY", 0.0)
    send_mail("D", "Body", "d@example.com", ["to@example.org"])
    assert SenderDomain.objects.filter(domain="example.com").exists()


def test_an_unknown_priority_is_refused_naming_the_message_and_the_priorities() -> None:
    email = EmailMessage("Weekly", "B", "from@example.com", ["to@example.com"])
    email.smtprelay_priority = "urgent"
    with pytest.raises(InvalidMessageError) as info:
        email.send()
    assert str(info.value) == (
        "Message 'Weekly' has priority 'urgent'; use one of now, high, normal, low."
    )


@pytest.mark.django_db(transaction=True)
def test_fail_silently_logs_each_refused_message_with_its_error_and_counts_none(caplog) -> None:
    bad = [
        EmailMessage("One", "B", "from@example.com", ["not-an-address"]),
        EmailMessage("Two", "B", "from@example.com", []),
    ]
    with caplog.at_level(logging.WARNING, logger="django_smtprelay"):
        count = mail.get_connection(fail_silently=True).send_messages(bad)
    assert count == 0
    assert Message.objects.count() == 0
    records = [r for r in caplog.records if r.name == "django_smtprelay.queue"]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.WARNING, "Message not queued"),
        (logging.WARNING, "Message not queued"),
    ]
    errors = [r.exc_info[1] for r in records if r.exc_info]
    assert [type(e) for e in errors] == [InvalidMessageError, InvalidMessageError]
    assert "'not-an-address'" in str(errors[0])
    assert str(errors[1]) == "Message 'Two' has no recipients: set to, cc or bcc."


def _prepared(**fields):
    from django_smtprelay.envelope import PreparedMessage

    values = {
        "from_email": "from@example.com",
        "recipients": ["to@example.com"],
        "data": b"Subject: S\r\n\r\nB\r\n",
        "subject": "S",
        "message_id": "<1@example.com>",
        "route_hint": "",
        "priority": "",
        "from_domain": "example.com",
    }
    values.update(fields)
    return PreparedMessage(**values)


def _cut(value: str) -> str:
    """A long value as error messages show it: its repr cut to 80 characters."""
    return "'" + value[:78] + "\u2026"


# The submission listener hands check_storable the SMTP envelope and header
# fields as they came, so each column's guard is reachable there.
_COLUMNS = [
    ("from_email", "envelope sender", 254),
    ("from_domain", "From header's domain", 253),
    ("subject", "subject", 255),
    ("message_id", "Message-ID", 255),
    ("route_hint", "route hint", 100),
    ("recipients", "recipient", 254),
]


@pytest.mark.parametrize(("field", "label", "limit"), _COLUMNS, ids=[c[0] for c in _COLUMNS])
def test_each_field_too_long_for_its_column_is_refused_naming_the_field_and_its_limit(
    field, label, limit
) -> None:
    from django_smtprelay.backends import check_storable

    def filled(length: int) -> str:
        return "v" * (length - len("@example.com")) + "@example.com"

    fits = filled(limit)
    check_storable(_prepared(**{field: [fits] if field == "recipients" else fits}))
    value = filled(limit + 1)
    p = _prepared(**{field: [value] if field == "recipients" else value})
    with pytest.raises(InvalidMessageError) as info:
        check_storable(p)
    subject = f"{_cut(value)} ({limit + 1} characters)" if field == "subject" else "'S'"
    assert str(info.value) == (
        f"Message {subject}: its {label} {_cut(value)} is {limit + 1} characters long; "
        f"at most {limit} can be stored. Shorten it."
    )


@pytest.mark.parametrize(("field", "label", "limit"), _COLUMNS, ids=[c[0] for c in _COLUMNS])
def test_each_field_with_a_nul_character_is_refused_naming_the_field(field, label, limit) -> None:
    from django_smtprelay.backends import check_storable

    value = "a\x00b@example.com"
    p = _prepared(**{field: [value] if field == "recipients" else value})
    with pytest.raises(InvalidMessageError) as info:
        check_storable(p)
    subject = repr(value) if field == "subject" else "'S'"
    assert str(info.value) == (
        f"Message {subject}: its {label} {value!r} contains a NUL character, "
        "which cannot be stored or sent; remove it."
    )


def test_a_sender_with_an_at_sign_in_its_quoted_local_part_is_filed_under_its_domain() -> None:
    send_mail("Quoted", "B", '"a@b"@Example.com', ["to@example.org"])
    message = Message.objects.get()
    assert message.from_email == '"a@b"@Example.com'
    assert message.sender_domain == "example.com"
    assert list(SenderDomain.objects.values_list("domain", flat=True)) == ["example.com"]


def test_a_queued_message_starts_with_no_attempt_no_error_and_no_route_to_retry() -> None:
    send_mail("Fresh", "B", "from@example.com", ["to@example.com"])
    message = Message.objects.get()
    assert message.attempt_count == 0
    assert message.last_error == ""
    assert message.retry_route == ""
    assert message.possible_duplicate is False


def test_queueing_logs_how_many_messages_it_stored(caplog) -> None:
    datatuple = [(f"S{i}", "B", "from@example.com", ["to@example.com"]) for i in range(3)]
    with caplog.at_level(logging.DEBUG, logger="django_smtprelay.queue"):
        send_mass_mail(datatuple)
    assert ("django_smtprelay.queue", logging.DEBUG, "Queued 3 message(s)") in [
        (r.name, r.levelno, r.getMessage()) for r in caplog.records
    ]


@pytest.mark.django_db(transaction=True)
def test_a_broken_message_queued_receiver_is_logged_by_name_with_its_traceback(caplog) -> None:
    from django_smtprelay import signals

    senders: list[object] = []

    def broken(sender, message_ids, **kwargs):
        senders.append(sender)
        raise RuntimeError("alerting is down")

    signals.message_queued.connect(broken, weak=False)
    try:
        with caplog.at_level(logging.ERROR, logger="django_smtprelay"):
            assert send_mass_mail([("a", "b", "a@example.com", ["b@example.net"])] * 2) == 2
    finally:
        signals.message_queued.disconnect(broken)
    assert senders == [Message]
    [record] = [r for r in caplog.records if r.name == "django_smtprelay.queue"]
    assert record.levelno == logging.ERROR
    assert record.getMessage() == (
        f"A message_queued receiver {broken!r} failed for 2 committed message(s)"
    )
    assert isinstance(record.exc_info[1], RuntimeError)
    assert str(record.exc_info[1]) == "alerting is down"


class _RaisingFilter(logging.Filter):
    """A site's logging filter that fails on the error records it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            raise RuntimeError("the log filter is broken")
        return True


@pytest.mark.django_db(transaction=True)
def test_an_error_while_announcing_committed_messages_never_fails_the_send(caplog) -> None:
    from django_smtprelay import signals

    def broken(sender, message_ids, **kwargs):
        raise ValueError("receiver down")

    # Even logging the broken receiver fails: the messages are committed, so
    # the caller must still hear they were queued (else it sends them again).
    queue_logger = logging.getLogger("django_smtprelay.queue")
    log_filter = _RaisingFilter()
    queue_logger.addFilter(log_filter)
    signals.message_queued.connect(broken, weak=False)
    try:
        with caplog.at_level(logging.ERROR, logger="django.db.backends"):
            assert send_mail("s", "b", "a@example.com", ["b@example.net"]) == 1
    finally:
        signals.message_queued.disconnect(broken)
        queue_logger.removeFilter(log_filter)
    assert Message.objects.count() == 1
    assert "the log filter is broken" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_an_error_while_publishing_committed_messages_never_fails_the_send(
    relay_settings, caplog
) -> None:
    # A PUBLISH_TIMEOUT the publish refuses (system checks report it too).
    relay_settings(PUBLISH_ON_COMMIT=True, PUBLISH_TIMEOUT=0)
    with caplog.at_level(logging.ERROR, logger="django.db.backends"):
        assert send_mail("s", "b", "a@example.com", ["b@example.net"]) == 1
    assert Message.objects.get().status == Message.Status.QUEUED
    assert "SMTPRELAY['PUBLISH_TIMEOUT'] must be a number >= 0.01, got 0." in caplog.text


class _RelayDatabaseRouter:
    """A site's router that keeps the relay's tables in a database of their own."""

    def db_for_read(self, model, **hints):
        return "relay" if model._meta.app_label == "django_smtprelay" else None

    db_for_write = db_for_read


@pytest.fixture
def relay_database(settings) -> str:
    """The relay's models routed to the alias ``relay`` (tests/settings.py): a
    second connection to the test database, as a site with a database for
    mail has."""
    settings.DATABASE_ROUTERS = [_RelayDatabaseRouter()]
    return "relay"


@pytest.mark.django_db(transaction=True, databases=["default", "relay"])
def test_the_queue_commits_and_publishes_with_the_database_the_sites_router_chooses(
    relay_database,
    broker_app,  # noqa: F811 (the fixture of tests/test_publish_bound.py)
    relay_settings,
) -> None:
    from django_smtprelay import signals

    app = broker_app("memory://")
    relay_settings(PUBLISH_ON_COMMIT=True, CELERY_QUEUE="backend-relay-database")
    heard: list[list[int]] = []

    def heard_of(sender, message_ids, **kwargs):
        heard.append(list(message_ids))

    signals.message_queued.connect(heard_of, weak=False)
    try:
        # Rolled back on the relay's database: nothing published or announced,
        # though the default database has no transaction open.
        with transaction.atomic(using=relay_database):
            send_mail("Rolled back", "B", "from@example.com", ["to@example.com"])
            transaction.set_rollback(True, using=relay_database)
        assert published(app, "backend-relay-database") == []
        assert heard == []
        send_mail("Kept", "B", "from@example.com", ["to@example.com"])
    finally:
        signals.message_queued.disconnect(heard_of)
    pk = Message.objects.using(relay_database).get(subject="Kept").pk
    assert published(app, "backend-relay-database") == [[pk]]
    assert heard == [[pk]]


@pytest.mark.django_db
def test_a_sending_domain_is_not_remembered_from_hooks_run_inside_a_transaction(
    django_capture_on_commit_callbacks,
) -> None:
    from django_smtprelay.models import store

    # A site's test runs on-commit hooks inside its transaction, then rolls it back.
    with django_capture_on_commit_callbacks(execute=True):
        send_mail("A", "Body", "a@example.com", ["to@example.org"])
    assert not store._known("default", "example.com")


@pytest.mark.django_db(transaction=True)
def test_a_flush_forgets_the_remembered_sending_domains() -> None:
    from django.core.management import call_command

    from django_smtprelay.models import store

    send_mail("A", "Body", "a@example.com", ["to@example.org"])
    assert store._known("default", "example.com")
    call_command("flush", interactive=False, verbosity=0)
    assert not store._known("default", "example.com")
    send_mail("B", "Body", "b@example.com", ["to@example.org"])
    assert SenderDomain.objects.filter(domain="example.com").exists()
