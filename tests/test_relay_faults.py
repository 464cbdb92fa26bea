"""Relays that misbehave: the engine never raises, each fault is recorded and bounded in time.

Each broken relay is a real loopback server (``tests.rawrelay``) on a route
with a one-second timeout. A fault before the final dot moves the message to
the next route (an honest aiosmtpd relay) with a route-fault attempt saying
what happened; a fault after the final dot leaves it deferred on the same
route as a possible duplicate, since the relay may have taken it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from django.core.mail import EmailMessage
from django.utils import timezone

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.models import DeliveryAttempt, Message, MessageContent, Route
from tests.rawrelay import Conn, RawRelay, raw_relays, smtp_dialogue

pytestmark = pytest.mark.django_db

TIMEOUT = 1.0
# A fault costs at most a timeout or two; the rest of a run is well under a second.
BOUND = 6.0


@pytest.fixture
def raw_relay() -> Iterator[Callable[..., RawRelay]]:
    yield from raw_relays()


def queue_one() -> Message:
    EmailMessage("Hello", "Body", "sender@example.com", ["rcpt@example.com"]).send()
    return Message.objects.latest("pk")


def run_bounded(**kwargs) -> float:
    """Run the engine once; it must return (never raise) within BOUND seconds."""
    started = time.monotonic()
    DeliveryEngine(**kwargs).run()
    took = time.monotonic() - started
    assert took < BOUND, f"the drain took {took:.1f}s"
    return took


def broken_then_good(broken: RawRelay, smtp_server, make_route, **fields) -> tuple[Route, object]:
    route = make_route(port=broken.port, name="broken", priority=1, timeout=TIMEOUT, **fields)
    good = smtp_server()
    make_route(good, name="good", priority=2)
    return route, good


def moved_on(message: Message, good) -> DeliveryAttempt:
    """The message went out through the good route; the broken route's attempt."""
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert len(good.messages) == 1
    fault = message.attempts.get(route_name="broken")
    assert fault.outcome == DeliveryAttempt.Outcome.ROUTE_FAULT
    assert message.attempts.get(route_name="good").outcome == DeliveryAttempt.Outcome.DELIVERED
    return fault


# -- before the message: the next route takes it ------------------------------


def test_no_greeting_times_out_and_the_next_route_takes_the_message(
    raw_relay, smtp_server, make_route
):
    broken = raw_relay(lambda conn: conn.hold())
    _, good = broken_then_good(broken, smtp_server, make_route)
    message = queue_one()
    took = run_bounded()
    fault = moved_on(message, good)
    assert fault.stage == "greeting"
    assert "timed out" in fault.reply
    assert took >= TIMEOUT


def test_no_greeting_on_the_only_route_defers(raw_relay, make_route):
    broken = raw_relay(lambda conn: conn.hold())
    make_route(port=broken.port, name="broken", timeout=TIMEOUT)
    message = queue_one()
    run_bounded()
    message.refresh_from_db()
    assert message.status == Message.Status.DEFERRED
    assert "timed out at greeting" in message.last_error
    assert message.attempts.get().outcome == DeliveryAttempt.Outcome.ROUTE_FAULT


def test_a_421_greeting_moves_the_message_on(raw_relay, smtp_server, make_route):
    broken = raw_relay(lambda conn: conn.say("421 4.3.2 Service not available, closing"))
    _, good = broken_then_good(broken, smtp_server, make_route)
    message = queue_one()
    run_bounded()
    fault = moved_on(message, good)
    assert (fault.stage, fault.smtp_code, fault.enhanced_code) == ("greeting", 421, "4.3.2")
    assert "Service not available" in fault.reply


def _garbage_greeting(conn: Conn) -> None:
    conn.say(b"HTTP/1.1 400 Bad Request\r\n\r\n\x00\xff\xfe")


def _garbage_ehlo(conn: Conn) -> None:
    conn.say("220 raw.test ESMTP")
    while conn.line():  # EHLO, then HELO
        conn.say(b"<html>\xff\xfe not SMTP</html>\r\n")


def _truncated_greeting(conn: Conn) -> None:
    conn.say(b"220 raw.te")  # then closed: the next reply never comes


def _truncated_ehlo(conn: Conn) -> None:
    conn.say("220 raw.test ESMTP")
    conn.line()
    conn.say(b"250-raw.test\r\n250-PIPEL")


def _truncated_mail(conn: Conn) -> None:
    conn.say("220 raw.test ESMTP")
    conn.line()
    conn.say("250-raw.test\r\n250 PIPELINING")
    conn.line()
    conn.say(b"250 2.1")  # MAIL's reply cut off; RCPT's never comes


@pytest.mark.parametrize(
    ("script", "stage", "says"),
    [
        # smtplib keeps what follows the first four characters of a garbled line.
        (_garbage_greeting, "greeting", "unreadable reply (-1): /1.1 400 Bad Request"),
        (_garbage_ehlo, "ehlo", "unreadable reply (-1): l>\ufffd\ufffd not SMTP"),
        (_truncated_greeting, "ehlo", "closed"),
        (_truncated_ehlo, "ehlo", "closed"),
        (_truncated_mail, "rcpt", "closed"),
    ],
    ids=["garbage-greeting", "garbage-ehlo", "cut-greeting", "cut-ehlo", "cut-mail"],
)
def test_garbage_and_truncated_replies_move_the_message_on(
    raw_relay, smtp_server, make_route, script, stage, says
):
    broken = raw_relay(script)
    _, good = broken_then_good(broken, smtp_server, make_route)
    message = queue_one()
    run_bounded()
    fault = moved_on(message, good)
    assert fault.stage == stage
    assert says in fault.reply


# -- after the final dot: the relay may have it -------------------------------


@pytest.mark.parametrize(
    ("on_dot", "says"),
    [
        (None, "closed"),  # dropped without a reply
        (lambda conn, data: conn.say(b"25"), "unreadable reply (25)"),  # a reply cut off
        (lambda conn, data: conn.say(b"OK THANKS\r\n"), "unreadable reply (-1)"),  # not SMTP
        (lambda conn, data: conn.hold(TIMEOUT * 3), "timed out"),  # stalled
    ],
    ids=["dropped", "cut", "garbage", "stalled"],
)
def test_a_fault_after_the_final_dot_is_retried_on_the_same_route_as_a_possible_duplicate(
    raw_relay, smtp_server, make_route, on_dot, says
):
    def script(conn: Conn) -> None:
        if conn.session == 1:
            smtp_dialogue(conn, on_dot=on_dot or (lambda conn, data: None))
        else:
            smtp_dialogue(conn)

    broken = raw_relay(script)
    _, good = broken_then_good(broken, smtp_server, make_route)
    message = queue_one()
    run_bounded()
    message.refresh_from_db()
    assert message.status == Message.Status.DEFERRED
    assert message.retry_route == "broken"
    assert good.messages == []
    attempt = message.attempts.get()
    assert attempt.outcome == DeliveryAttempt.Outcome.UNCERTAIN
    assert attempt.possible_duplicate is True
    assert says in attempt.reply
    # The retry goes back to the same relay, which now accepts it.
    later = message.next_attempt_at + timezone.timedelta(seconds=1)
    run_bounded(clock=lambda: later)
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert len(broken.messages) == 2 and good.messages == []


def test_a_relay_that_stops_reading_mid_data_is_bounded_by_the_timeout(raw_relay, make_route):
    def script(conn: Conn) -> None:
        smtp_dialogue(conn, on_data=lambda conn: (conn.say("354 go ahead"), conn.hold()))

    broken = raw_relay(script)
    make_route(port=broken.port, name="broken", timeout=TIMEOUT)
    # Larger than the loopback socket buffers, so the client blocks writing it.
    EmailMessage("Big", "x" * 60 + "\n", "sender@example.com", ["rcpt@example.com"]).send()
    message = Message.objects.latest("pk")
    big = bytes(message.raw) + (b"y" * 998 + b"\r\n") * 24_000
    MessageContent.objects.filter(message=message).update(raw=big)
    run_bounded()
    message.refresh_from_db()
    assert message.status == Message.Status.DEFERRED
    attempt = message.attempts.get()
    assert (attempt.outcome, attempt.stage) == (DeliveryAttempt.Outcome.ROUTE_FAULT, "data")
    assert "timed out" in attempt.reply


# -- TLS ----------------------------------------------------------------------


def _plaintext(conn: Conn) -> None:
    smtp_dialogue(conn)


def _starttls_then_garbage(conn: Conn) -> None:
    conn.say("220 raw.test ESMTP")
    conn.line()
    conn.say("250-raw.test\r\n250 STARTTLS")
    conn.line()
    conn.say("220 2.0.0 Ready to start TLS")
    conn.say(b"this is not a TLS record\r\n" * 4)


@pytest.mark.parametrize(
    ("script", "security", "stage"),
    [(_plaintext, "tls", "connect"), (_starttls_then_garbage, "starttls", "starttls")],
    ids=["implicit-tls-to-plaintext", "starttls-garbage"],
)
def test_a_failed_tls_handshake_moves_the_message_on(
    raw_relay, smtp_server, make_route, trust_test_ca, script, security, stage
):
    broken = raw_relay(script)
    _, good = broken_then_good(broken, smtp_server, make_route, security=security)
    message = queue_one()
    run_bounded()
    fault = moved_on(message, good)
    assert fault.stage == stage
    assert "TLS" in fault.reply or "SSL" in fault.reply or "closed" in fault.reply
    assert broken.messages == []


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_a_certificate_for_another_host_fails_before_any_credentials_are_sent(
    raw_relay, smtp_server, make_route, trust_test_ca, tls_certs, security
):
    context = tls_certs.server_context("wrong_host")

    def script(conn: Conn) -> None:
        if security == "starttls":
            conn.say("220 raw.test ESMTP")
            conn.line()
            conn.say("250-raw.test\r\n250-AUTH PLAIN LOGIN\r\n250 STARTTLS")
            conn.line()
            conn.say("220 2.0.0 Ready to start TLS")
            if not conn.starttls(context):
                return
        smtp_dialogue(conn, ehlo="250-raw.test\r\n250 AUTH PLAIN LOGIN")

    broken = raw_relay(script, tls=context if security == "tls" else None)
    _, good = broken_then_good(
        broken,
        smtp_server,
        make_route,
        security=security,
        username="relayuser",
        password="s3cret-Pa55",
    )
    message = queue_one()
    run_bounded()
    fault = moved_on(message, good)
    assert "certificate" in fault.reply.lower() and "127.0.0.1" in fault.reply
    assert "s3cret" not in fault.reply
    assert "AUTH" not in broken.commands()
    assert not any(b"s3cret" in line or b"relayuser" in line for line in broken.lines)


# -- relays that never finish a reply (tarpits) ---------------------------------


def _endless(conn: Conn, *, interval: float) -> None:
    """Continuation lines ("250-...") that never end, until the client gives up."""
    for _ in range(100_000):
        try:
            conn.say("250-still thinking about it")
        except OSError:
            return
        time.sleep(interval)


@pytest.mark.parametrize("interval", [0.2, 0.0], ids=["slow-lines", "flood"])
def test_an_ehlo_reply_that_never_ends_is_cut_off_and_the_next_route_delivers(
    raw_relay, smtp_server, make_route, interval
):
    def script(conn: Conn) -> None:
        conn.say("220 tarpit.test ESMTP")
        conn.line()  # EHLO
        _endless(conn, interval=interval)

    _, good = broken_then_good(raw_relay(script), smtp_server, make_route)
    message = queue_one()
    run_bounded()
    fault = moved_on(message, good)
    assert "went on for more than" in fault.reply


def test_a_reply_to_the_dot_that_never_ends_is_cut_off_as_uncertain(raw_relay, make_route):
    relay = raw_relay(
        lambda conn: smtp_dialogue(conn, on_dot=lambda c, _data: _endless(c, interval=0.2))
    )
    make_route(port=relay.port, name="tarpit", timeout=TIMEOUT)
    message = queue_one()
    run_bounded()
    message.refresh_from_db()
    assert message.status == Message.Status.DEFERRED
    attempt = message.attempts.get()
    assert attempt.outcome == DeliveryAttempt.Outcome.UNCERTAIN
    assert attempt.possible_duplicate is True
    assert message.possible_duplicate is True
