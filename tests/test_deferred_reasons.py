"""A deferred message's error names every route it could not use, and why."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.mail import EmailMessage, send_mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.health import BreakerPolicy, CircuitBreaker, RateLimits, RouteHealthService
from django_smtprelay.models import Message, Recipient
from django_smtprelay.routing import Router

pytestmark = pytest.mark.django_db


def queue() -> Message:
    send_mail("Hello", "Body", "from@example.com", ["to@example.net"])
    return Message.objects.latest("pk")


def test_the_error_names_each_route_and_why(smtp_server, make_route, relay_settings):
    relay_settings(BREAKER_FAILURE_THRESHOLD=2)
    # Five minutes into an hour to come: relay-b's hourly window has 55 minutes left.
    now = (timezone.now() + timedelta(hours=1)).replace(minute=5, second=0, microsecond=0)
    a_server, b_server = smtp_server(), smtp_server()
    make_route(a_server, name="relay-a", priority=1)
    make_route(b_server, name="relay-b", priority=2, max_per_hour=1)
    make_route(smtp_server(), name="relay-c", priority=3, enabled=False)
    make_route(smtp_server(), name="relay-d", priority=4, sender_domains="other.example")
    breaker = CircuitBreaker("relay-a", BreakerPolicy(failure_threshold=2))
    for _ in range(2):
        breaker.record_fault("timed out at greeting", now - timedelta(seconds=30))
    # relay-b's one send this hour is taken.
    assert RouteHealthService().before_send("relay-b", RateLimits(per_hour=1), now) == 0
    message = queue()
    DeliveryEngine(clock=lambda: now).run()
    message.refresh_from_db()
    until = timezone.localtime(now + timedelta(seconds=90))
    assert message.status == Message.Status.DEFERRED
    assert message.last_error == (
        f"relay-a: circuit open until {until:%H:%M:%S %Z} "
        "(2 route faults in a row; last: timed out at greeting); "
        "relay-b: rate limit, next send in 3300s; "
        "relay-d (sender domains do not match) and relay-c (disabled) do not take it"
    )
    assert Recipient.objects.get().reply == message.last_error
    assert a_server.sessions == 0 and b_server.sessions == 0


def test_a_route_fault_and_the_routes_that_do_not_match(make_route, refused_port):
    make_route(port=refused_port, name="relay-a", priority=1)
    make_route(port=refused_port, name="relay-b", priority=2, enabled=False)
    make_route(port=refused_port, name="relay-c", priority=3, recipient_domains="example.org")
    message = queue()
    DeliveryEngine().run()
    message.refresh_from_db()
    assert message.status == Message.Status.DEFERRED
    assert message.last_error.startswith("relay-a: ")
    assert "Connection refused" in message.last_error
    assert message.last_error.endswith(
        "; relay-c (recipient domains do not match) and relay-b (disabled) do not take it"
    )


def test_when_no_route_matches_each_one_says_why(smtp_server, make_route):
    make_route(smtp_server(), name="relay-c", enabled=False)
    make_route(smtp_server(), name="relay-d", sender_domains="other.example")
    make_route(smtp_server(), name="relay-e", tags="bulk")
    message = queue()
    DeliveryEngine().run()
    message.refresh_from_db()
    assert message.status == Message.Status.DEFERRED
    assert message.last_error == (
        "no enabled route takes this message: relay-d (sender domains do not match), "
        "relay-e (takes only messages that ask for its name or tags) "
        "and relay-c (disabled) do not take it"
    )


def test_a_delivered_batch_never_reads_the_disabled_routes(smtp_server, make_route):
    make_route(smtp_server(), name="relay-a")
    make_route(smtp_server(), name="relay-c", enabled=False)
    queue()
    with CaptureQueriesContext(connection) as queries:
        assert DeliveryEngine().run().sent == 1
    route_reads = [q["sql"] for q in queries if 'FROM "django_smtprelay_route"' in q["sql"]]
    assert len(route_reads) == 1  # the enabled routes, once


def test_why_not_agrees_with_matching(make_route, refused_port):
    make_route(port=refused_port, name="any")
    make_route(port=refused_port, name="senders", sender_domains="*.example.com")
    make_route(port=refused_port, name="recipients", recipient_domains="example.org")
    make_route(port=refused_port, name="tagged", tags="bulk")
    make_route(port=refused_port, name="small", max_message_size=100)
    router = Router()
    names = {r.name for r in router.routes}
    cases = [
        {},
        {"route_hint": "bulk"},
        {"route_hint": "senders", "sender_domain": "a.example.com"},
        {"sender_domain": "mail.example.com", "recipient_domain": "example.org", "size": 50},
        {"from_domain": "example.com", "recipient_domain": "example.net", "size": 500},
    ]
    for case in cases:
        taken = {r.name for r in router.matching(**case)}
        refused = {name for name, _why in router.why_not(**case)}
        assert taken | refused == names and not taken & refused, case


def test_recipients_split_off_by_a_too_many_reply_keep_the_reasons(
    smtp_server, make_route, refused_port
):
    """A 452 "too many recipients" sends the rest in a new transaction; when that one
    finds no route left, its error still says why the other routes do not take it."""
    mails = iter(range(100))
    server = smtp_server(
        rcpt_replies={"b@example.net": "452 4.5.3 Too many recipients"},
        # A route fault for the second transaction (a 421 would be the relay's
        # answer, deferring the recipients there, with no other route asked).
        mail_reply=lambda sender: None if next(mails) == 0 else "530 5.7.0 Authentication required",
    )
    make_route(server, name="relay-a", priority=1)
    make_route(port=refused_port, name="relay-r", priority=2, recipient_domains="example.org")
    send_mail("Hello", "Body", "from@example.com", ["a@example.net", "b@example.net"])
    DeliveryEngine().run()
    b = Recipient.objects.get(address="b@example.net")
    assert b.status == Recipient.Status.DEFERRED
    assert b.reply.startswith("relay-a: ")
    assert b.reply.endswith("; relay-r (recipient domains do not match) does not take it")
    assert Recipient.objects.get(address="a@example.net").status == Recipient.Status.DELIVERED


def test_when_no_route_matches_the_error_says_which_route_the_message_asks_for(
    smtp_server, make_route
):
    make_route(smtp_server(), name="relay-e", tags="bulk")
    email = EmailMessage("Hello", "Body", "from@example.com", ["to@example.net"])
    email.smtprelay_route = "Receipts"
    email.send()
    message = Message.objects.latest("pk")
    DeliveryEngine().run()
    message.refresh_from_db()
    assert message.status == Message.Status.DEFERRED
    assert message.last_error == (
        "no enabled route takes this message (it asks for 'Receipts'): "
        "relay-e (the message asks for route or tag 'receipts') does not take it"
    )


def test_a_circuit_another_worker_is_probing_is_named_half_open(
    smtp_server, make_route, relay_settings
):
    relay_settings(BREAKER_FAILURE_THRESHOLD=2)
    now = timezone.now()
    make_route(smtp_server(), name="relay-a")
    breaker = CircuitBreaker("relay-a", BreakerPolicy(failure_threshold=2))
    for _ in range(2):
        breaker.record_fault("timed out at greeting", now - timedelta(seconds=30))
    until = RouteHealthService().state("relay-a").until
    # At the end of the cool-down, to the second, another worker takes the one probe.
    assert RouteHealthService().usable("relay-a", until)
    message = queue()
    DeliveryEngine(clock=lambda: until).run()
    message.refresh_from_db()
    assert message.status == Message.Status.DEFERRED
    assert message.last_error == (
        "relay-a: circuit half-open, another worker is probing it "
        "(2 route faults in a row; last: timed out at greeting)"
    )


def test_when_no_route_matches_a_message_too_large_says_the_limit(smtp_server, make_route):
    make_route(smtp_server(), name="small", max_message_size=100)
    make_route(smtp_server(), name="other", sender_domains="other.example")
    message = queue()
    DeliveryEngine().run()
    message.refresh_from_db()
    assert message.last_error == (
        "no enabled route takes this message: small (larger than its limit of 100 bytes) "
        "and other (sender domains do not match) do not take it"
    )


def test_a_route_that_takes_the_message_by_its_from_header_is_not_listed_as_not_taking_it(
    make_route, refused_port
):
    make_route(port=refused_port, name="shop", sender_domains="shop.example")
    email = EmailMessage(
        "Hello", "Body", "bounce@other.example", ["to@example.net"],
        headers={"From": "Shop <shop@shop.example>"},
    )  # fmt: skip
    email.send()
    message = Message.objects.latest("pk")
    DeliveryEngine().run()
    message.refresh_from_db()
    assert message.status == Message.Status.DEFERRED
    assert message.last_error.startswith("shop: ")
    assert "take it" not in message.last_error


def test_a_route_that_takes_the_envelope_senders_domain_is_not_said_to_refuse_it(
    make_route, refused_port
):
    """The envelope sender's domain matches the route (the From header's does not):
    the route was tried and failed, and the error does not say it refuses the message."""
    make_route(port=refused_port, name="bounces", sender_domains="bounce.example")
    EmailMessage(
        "S", "B", "x@bounce.example", ["to@example.com"], headers={"From": "shop@shop.example"}
    ).send()
    assert DeliveryEngine().run().deferred == 1
    error = Message.objects.get().last_error
    assert error.startswith("bounces: "), error
    assert "take it" not in error, error
