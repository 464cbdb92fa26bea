"""Property-based tests of the queued backend: whatever a caller passes, nothing is half-done.

Each ``send_messages()`` call stores every one of its messages or raises a
clear ``InvalidMessageError`` and stores nothing; every stored message holds
exactly the bytes Django's ``message()`` gives; draining the queue to a real
loopback relay delivers those bytes or fails with a recorded reason, and the
drain never raises.

Examples are derandomized (the same ones every run, here and in CI); set
``SMTPRELAY_HYPOTHESIS_EXAMPLES`` to try more of them locally.
"""

from __future__ import annotations

import email.generator
import inspect
import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import pytest
from django.core.cache import caches
from django.core.mail import EmailMessage, EmailMultiAlternatives, get_connection
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.exceptions import InvalidMessageError
from django_smtprelay.models import Message, SenderDomain

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("SMTPRELAY_HYPOTHESIS_EXAMPLES", "150"))
settings.register_profile(
    "smtprelay-backend",
    max_examples=EXAMPLES,
    derandomize=True,  # reproducible: the same examples on every run
    database=None,
    deadline=None,  # a drain talks to a real SMTP server; timings vary
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
profile = settings.get_profile("smtprelay-backend")

# Every code point but surrogates, which no str from a caller can encode:
# control characters, NUL, line breaks, combining marks, astral planes.
ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=30)
ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
ASCII_LABEL = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
IDN_LABEL = st.text("abcäöüßçñéøæ漢字\u0440\u0444\u0438\u03be", min_size=1, max_size=12)
LONG_LABEL = st.integers(min_value=50, max_value=63).map(lambda n: "d" * n)
# Mostly valid, so that most calls are queued and delivered; odd forms now and then.
# (Repeating a branch of one_of is how its weight goes up.)
PLAIN_LOCAL = st.text(ATEXT, min_size=1, max_size=64)
ODD_LOCAL = st.sampled_from(['"quoted local"', "a.b.c", "o'brien", "ünï", "a..b", ".a", "x" * 65])
LOCAL = st.one_of(*[PLAIN_LOCAL] * 7, ODD_LOCAL)
DOMAIN = st.builds(
    lambda labels, tld: ".".join([*labels, tld]),
    st.lists(st.one_of(*[ASCII_LABEL] * 3, IDN_LABEL, LONG_LABEL), min_size=1, max_size=5),
    st.sampled_from(["com", "example", "org", "xn--p1ai", "рф", "museum"]),
)
ADDRESS = st.builds(lambda local, domain: f"{local}@{domain}", LOCAL, DOMAIN)
PRINTABLE = st.text(st.characters(categories=["L", "M", "N", "P", "S", "Zs"]), max_size=30)
NAME = st.one_of(*[PRINTABLE] * 3, ANY_TEXT)
TEXT = NAME


def _quoted(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', '\\"')


NAMED_ADDRESS = st.one_of(
    *[ADDRESS] * 3,
    st.builds(lambda name, addr: f'"{_quoted(name)}" <{addr}>', NAME, ADDRESS),
    st.builds(lambda name, addr: f"{name} <{addr}>", NAME, ADDRESS),
)
HEADER_NAME = st.from_regex(r"X-[A-Za-z0-9-]{1,20}", fullmatch=True).filter(
    lambda name: not name.lower().startswith("x-smtprelay")
)
ATTACHMENT = st.tuples(
    st.one_of(st.none(), ANY_TEXT, st.sampled_from(["a.pdf", "é ü.txt", '"q".csv', "x" * 200])),
    st.one_of(st.binary(max_size=300), ANY_TEXT),
    st.sampled_from([None, "application/octet-stream", "text/plain", "text/csv", "image/png"]),
)


_SERIAL = itertools.count(1)


@st.composite
def messages(draw: st.DrawFn) -> EmailMessage:
    number = next(_SERIAL)
    headers = draw(st.dictionaries(HEADER_NAME, TEXT, max_size=3))
    # Fixed: Django would pick them at random, and the bytes are compared.
    headers["Date"] = "Mon, 30 Nov 2026 16:00:00 -0000"
    headers["Message-ID"] = f"<prop.{number}@example.com>"
    message = EmailMultiAlternatives(
        subject=draw(TEXT),
        body=draw(st.text(st.characters(codec="utf-8"), max_size=300)),
        from_email=draw(NAMED_ADDRESS),
        to=draw(st.lists(NAMED_ADDRESS, min_size=1, max_size=2)),
        cc=draw(st.lists(ADDRESS, max_size=1)),
        bcc=draw(st.lists(ADDRESS, max_size=1)),
        headers=headers,
    )
    if draw(st.booleans()):
        message.attach_alternative(draw(TEXT), "text/html")
    for filename, content, mimetype in draw(st.lists(ATTACHMENT, max_size=5)):
        # Django guesses a type from the name, so an unnamed one needs a type.
        message.attach(filename, content, mimetype or (None if filename else "text/plain"))
    return message


@contextmanager
def fixed_boundaries() -> Iterator[None]:
    """Multipart boundaries are random too: one fixed string makes the bytes comparable."""
    with mock.patch.object(
        email.generator.Generator,
        "_make_boundary",
        classmethod(lambda cls, text=None: "===============smtprelay-property=="),
    ):
        yield


def django_bytes(message: EmailMessage) -> bytes:
    """What Django's SMTP backend sends: ``message().as_bytes()`` with CRLF line ends."""
    msg = message.message()
    if "linesep" in inspect.signature(msg.as_bytes).parameters:  # Django <= 5.2
        data = msg.as_bytes(linesep="\r\n")
    else:  # Django 6: email.message.EmailMessage
        data = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def start_clean() -> None:
    Message.objects.all().delete()
    SenderDomain.objects.all().delete()
    for cache in caches.all():  # route health: one example's failures must not open the circuit
        cache.clear()


def queue_or_refuse(batch: list[EmailMessage]) -> bool:
    """Send ``batch``; True when queued whole, False when refused whole (nothing stored)."""
    try:
        with fixed_boundaries():
            count = get_connection().send_messages(batch)
    except InvalidMessageError as error:
        assert str(error), "the error says what is wrong"
        event(f"refused: {str(error).split(':')[0][:40]}")
        assert Message.objects.count() == 0, f"refused ({error}) yet something was stored"
        return False
    assert count == len(batch)
    assert Message.objects.count() == len(batch)
    event("queued")
    return True


def check_stored_bytes(batch: list[EmailMessage]) -> dict[str, Message]:
    stored = {m.message_id: m for m in Message.objects.select_related("content")}
    for message in batch:
        with fixed_boundaries():
            expected = django_bytes(message)
        row = stored[message.extra_headers["Message-ID"]]
        assert bytes(row.raw) == expected, "stored bytes differ from Django's message()"
    return stored


# Not traced for coverage (make test measures it): tracing the generated calls
# nearly doubles this test's time, and they reach no line the other tests miss.
@pytest.mark.no_cover
@profile
@given(batch=st.lists(messages(), min_size=1, max_size=3))
def test_a_call_stores_all_its_messages_with_djangos_bytes_or_refuses_all(
    batch: list[EmailMessage],
) -> None:
    start_clean()
    if queue_or_refuse(batch):
        check_stored_bytes(batch)


@pytest.fixture
def relay(smtp_server, make_route):
    server = smtp_server()
    make_route(server)
    return server


@settings(profile, max_examples=max(1, EXAMPLES // 3))
@given(batch=st.lists(messages(), min_size=1, max_size=2))
def test_every_stored_message_is_delivered_byte_for_byte_or_fails_with_a_reason(
    relay, batch: list[EmailMessage]
) -> None:
    start_clean()
    if not queue_or_refuse(batch):
        return
    stored = check_stored_bytes(batch)
    seen = len(relay.attempts)
    DeliveryEngine().run()  # must not raise, whatever was queued
    received = {}
    for attempt in relay.attempts[seen:]:
        for line in attempt.data.split(b"\r\n"):
            if line.lower().startswith(b"message-id:"):
                received[line.split(b":", 1)[1].strip().decode()] = attempt
                break
    for message_id, row in stored.items():
        row.refresh_from_db()
        recipients = list(row.recipients.values_list("address", "status", "reply"))
        if row.status == Message.Status.SENT:
            got = received[message_id]
            assert got.data == bytes(row.raw), "the relay received other bytes than stored"
            assert sorted(got.rcpt_tos) == sorted(a for a, _s, _r in recipients)
            event("delivered")
        else:
            assert row.status in (Message.Status.FAILED, Message.Status.DEFERRED), row.status
            reasons = [row.last_error, *(reply for _a, _s, reply in recipients)]
            assert any(reasons), f"{row.status} with no recorded reason"
            event(f"{row.status}: {next(r for r in reasons if r)[:40]}")
