"""envelope.py: what prepare() makes of a message, and the exact words of what it refuses."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from datetime import timezone as dt_timezone

import pytest
from django.core.mail import EmailMessage

from django_smtprelay.envelope import envelope_address, prepare, shown
from django_smtprelay.exceptions import InvalidMessageError
from django_smtprelay.models import Message

HINT = (
    "use a timezone-aware datetime or an ISO 8601 time with an offset, "
    "such as 2030-01-31T09:00:00+00:00."
)
POSITIVE = "use a positive datetime.timedelta, such as timedelta(minutes=10)."


def email(
    subject: str = "Hi",
    to: tuple[str, ...] = ("to@example.com",),
    from_email: str = "from@example.com",
    headers: dict | None = None,
    **attrs: object,
) -> EmailMessage:
    """A message; each keyword is set as its ``smtprelay_<name>`` attribute."""
    message = EmailMessage(subject, "Body", from_email, list(to), headers=headers)
    for key, value in attrs.items():
        setattr(message, f"smtprelay_{key}", value)
    return message


def refused(message: EmailMessage) -> str:
    with pytest.raises(InvalidMessageError) as info:
        prepare(message)
    return str(info.value)


class _NoOffset(tzinfo):
    """A tzinfo that knows no offset: a datetime with it is naive after all."""

    def utcoffset(self, dt):
        return None

    def dst(self, dt):
        return None

    def tzname(self, dt):
        return "nowhere"


@pytest.mark.parametrize(
    ("value", "kwargs", "expected"),
    [
        ("a" * 77, {}, repr("a" * 77)),  # repr is 79 characters: whole
        ("a" * 78, {}, repr("a" * 78)),  # exactly the limit, 80: whole
        ("a" * 79, {}, "'" + "a" * 78 + "\u2026 (79 characters)"),  # 81: cut to 79 and marked
        ("a" * 79, {"count": False}, "'" + "a" * 78 + "\u2026"),
        (b"b" * 100, {}, "b'" + "b" * 77 + "\u2026 (100 characters)"),  # a bytes' own length
        (list(range(40)), {}, repr(list(range(40)))[:79] + "\u2026 (150 characters)"),  # repr's
        ("a" * 20, {"limit": 10}, "'aaaaaaaa\u2026 (20 characters)"),
    ],
)
def test_shown_cuts_long_values_to_the_limit_and_marks_the_cut_with_the_length(
    value, kwargs, expected
) -> None:
    assert shown(value, **kwargs) == expected


@pytest.mark.parametrize(
    ("value", "role", "expected"),
    [
        (
            123,
            "sender",
            "Invalid sender address 123: it is int, not a string; "
            "pass 'user@example.com' or 'Name <user@example.com>'.",
        ),
        (
            "not an address",
            "recipient",
            "Invalid recipient address 'not an address': expected 'user@example.com' or "
            "'Name <user@example.com>'.",
        ),
    ],
)
def test_an_address_error_names_the_role_and_the_value(value, role, expected) -> None:
    with pytest.raises(InvalidMessageError) as info:
        envelope_address(value, role=role)
    assert str(info.value) == expected


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"to": ()}, "Message 'Hi' has no recipients: set to, cc or bcc."),
        (
            {"from_email": "nobody"},
            "Invalid sender address 'nobody': expected 'user@example.com' or "
            "'Name <user@example.com>'.",
        ),
        (
            {"to": ("ok@example.com", "nobody")},
            "Invalid recipient address 'nobody': expected 'user@example.com' or "
            "'Name <user@example.com>'.",
        ),
        (
            {"headers": {"From": "nobody"}},
            "Invalid From header address 'nobody': expected 'user@example.com' or "
            "'Name <user@example.com>'.",
        ),
        (
            {"subject": "a\x00b"},
            "Message subject 'a\\x00b' contains a NUL character, which a mail header "
            "cannot carry; remove it.",
        ),
        (
            {"headers": {"X-Tag": "a\nb"}},
            "Header 'X-Tag' has a line break in its value 'a\\nb': headers must be one line.",
        ),
        (
            {"headers": {"X-\nTag": "v"}},
            "Header 'X-\\nTag' has a line break in its value 'v': headers must be one line.",
        ),
        (
            {"headers": {"X-Tag": "a\x00b"}},
            "Header 'X-Tag' has a NUL character in its value 'a\\x00b'; remove it.",
        ),
        (
            {"headers": {"X-\x00Tag": "v"}},
            "Header 'X-\\x00Tag' has a NUL character in its value 'v'; remove it.",
        ),
        (
            {"headers": {"x-smtprelay-route": "a", "X-SMTPRelay-Route": "b"}},
            "Message 'Hi' sets X-SMTPRelay-Route twice, in different letter cases, "
            "to 'a' and 'b'; set it once.",
        ),
        ({"send_at": "soon"}, f"Message 'Hi' has send_at 'soon': {HINT}"),
        ({"expires_at": "soon"}, f"Message 'Hi' has expires_at 'soon': {HINT}"),
        ({"expires_in": 600}, f"Message 'Hi' has expires_in 600: {POSITIVE}"),
        (
            {"expires_in": timedelta(0)},
            f"Message 'Hi' has expires_in datetime.timedelta(0): {POSITIVE}",
        ),
        (
            {"expires_in": timedelta(minutes=5), "expires_at": "2030-01-01T00:00:00+00:00"},
            "Message 'Hi' sets both expires_at '2030-01-01T00:00:00+00:00' and "
            "expires_in datetime.timedelta(seconds=300); set one of them.",
        ),
    ],
)
def test_a_refused_message_is_told_exactly_what_is_wrong(kwargs, expected) -> None:
    assert refused(email(**kwargs)) == expected


def test_what_django_refuses_to_write_is_refused_naming_the_message() -> None:
    message = refused(email(subject="Line one\nLine two"))
    prefix = "Message 'Line one\\nLine two' is invalid: "
    assert message.startswith(prefix)
    # Django's own reason follows; its words differ between Django versions.
    assert message[len(prefix) :].strip()


@pytest.mark.parametrize("name", ["send_at", "expires_at"])
@pytest.mark.parametrize(
    "value",
    [
        "2030-01-01 09:00",  # no offset
        datetime(2030, 1, 1),  # naive
        datetime(2030, 1, 1, tzinfo=_NoOffset()),  # a tzinfo without an offset
        5,  # not a time at all
    ],
)
def test_a_time_without_an_offset_is_refused(name, value) -> None:
    assert refused(email(**{name: value})) == f"Message 'Hi' has {name} {shown(value)}: {HINT}"


AWARE = datetime(2030, 1, 31, 8, 0, tzinfo=dt_timezone.utc)


@pytest.mark.parametrize(
    ("how", "value"),
    [
        ("attribute", AWARE),
        ("attribute", "2030-01-31T09:00:00+01:00"),
        ("attribute", " 2030-01-31T08:00:00Z "),
        ("header", "2030-01-31T09:00:00+01:00"),
        ("header", "2030-01-31T08:00:00+00:00"),
    ],
)
def test_a_send_at_or_expires_at_is_taken_as_the_aware_time_it_names(how, value) -> None:
    for name, field in (("send_at", "send_at"), ("expires_at", "deliver_by")):
        if how == "attribute":
            message = email(**{name: value})
        else:
            message = email(headers={f"X-SMTPRelay-{name.replace('_', '-').title()}": value})
        when = getattr(prepare(message), field)
        assert when == AWARE
        assert when.utcoffset() is not None


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"send_at": "", "expires_at": "", "expires_in": ""},
        {"send_at": None, "expires_at": None, "expires_in": None},
        {"headers": {"X-SMTPRelay-Send-At": "", "X-SMTPRelay-Expires-At": ""}},
    ],
)
def test_no_time_or_an_empty_one_means_none(kwargs) -> None:
    prepared = prepare(email(**kwargs))
    assert prepared.send_at is None
    assert prepared.deliver_by is None


def test_an_expires_in_is_counted_from_now() -> None:
    before = datetime.now(dt_timezone.utc)
    prepared = prepare(email(expires_in=timedelta(minutes=10)))
    after = datetime.now(dt_timezone.utc)
    assert before + timedelta(minutes=10) <= prepared.deliver_by <= after + timedelta(minutes=10)
    prepared = prepare(email(expires_in=timedelta(seconds=1)))
    assert prepared.deliver_by > before, "a second is positive"


def test_no_route_or_priority_is_empty() -> None:
    prepared = prepare(email())
    assert (prepared.route_hint, prepared.priority) == ("", "")


@pytest.mark.parametrize(
    ("from_email", "headers", "domain"),
    [
        ("from@Example.COM", None, "example.com"),
        ('"a@b"@Example.COM', None, "example.com"),
        ("from@example.com", {"From": "Site <news@Other.Example>"}, "other.example"),
        ("from@example.com", {"from": '"a@b"@Other.Example'}, "other.example"),
        ("from@example.com", {"FROM": "news@Bücher.Example"}, "xn--bcher-kva.example"),
    ],
)
def test_the_from_domain_is_the_from_headers_else_the_senders_lower_case(
    from_email, headers, domain
) -> None:
    assert prepare(email(from_email=from_email, headers=headers)).from_domain == domain


def test_subject_and_message_id_are_cut_to_what_a_column_holds() -> None:
    message_id = "<" + "a" * 300 + "@example.com>"
    prepared = prepare(email(subject="s" * 300, headers={"Message-ID": message_id}))
    assert prepared.subject == "s" * 255
    assert prepared.message_id == message_id[:255]
    assert prepare(email(subject="")).subject == ""


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-SMTPRelay-Route", "transactional"),
        ("x-smtprelay-priority", "high"),
        ("X-SMTPRELAY-SEND-AT", "2000-01-01T00:00:00+00:00"),
        ("X-SMTPRelay-Expires-At", "2099-01-01T00:00:00+00:00"),
    ],
)
def test_each_control_header_is_removed_from_the_stored_bytes(header, value) -> None:
    message = email(subject="Control", headers={header: value, "X-Tag": "kept"})
    message.send()
    raw = bytes(Message.objects.get().raw)
    assert header.lower().encode() not in raw.lower()
    assert value.encode() not in raw
    assert b"X-Tag: kept" in raw
    assert message.extra_headers == {header: value, "X-Tag": "kept"}


@pytest.mark.django_db
def test_the_times_given_are_stored_with_the_message() -> None:
    email(
        send_at="2099-01-01T00:00:00+00:00",
        headers={"X-SMTPRelay-Expires-At": "2099-01-02T00:00:00+00:00"},
        from_email="from@example.com",
    ).send()
    message = Message.objects.get()
    assert message.next_attempt_at == datetime(2099, 1, 1, tzinfo=dt_timezone.utc)
    assert message.deliver_by == datetime(2099, 1, 2, tzinfo=dt_timezone.utc)
