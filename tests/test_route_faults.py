"""Any failure inside a route is a route fault for that route, never a crashed batch."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.core.mail import send_mail

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.health import RouteHealthService
from django_smtprelay.models import DeliveryAttempt, Message, Recipient, Route
from django_smtprelay.transports import get_transport
from django_smtprelay.transports.smtp import SMTPTransport

pytestmark = pytest.mark.django_db


def _send(subject: str = "S") -> None:
    send_mail(subject, "B", "from@example.com", ["to@example.com"])


def test_a_route_without_a_transport_is_a_route_fault_and_the_next_route_delivers(
    smtp_server, make_route
):
    server = smtp_server()
    unknown = make_route(server, priority=10)
    make_route(server, priority=20)
    # A kind this version has no transport for (written by a newer one, say).
    Route.objects.filter(pk=unknown.pk).update(kind="carrier-pigeon")
    _send()
    report = DeliveryEngine().run()
    assert report.sent == 1
    fault = DeliveryAttempt.objects.get(route_name=unknown.name)
    assert fault.outcome == DeliveryAttempt.Outcome.ROUTE_FAULT
    assert fault.exception == "ValueError"
    assert "setting up the transport" in fault.reply


def test_an_exception_while_connecting_defers_the_message_and_later_drains_still_run(
    smtp_server, make_route, relay_settings, caplog
):
    # smtplib encodes commands as ASCII: a non-ASCII EHLO name raises
    # UnicodeEncodeError, which is neither an OSError nor an SMTPException.
    relay_settings(EHLO_HOSTNAME="hôte.example")
    server = smtp_server()
    route = make_route(server)
    _send()
    with caplog.at_level(logging.ERROR, logger="django_smtprelay.delivery"):
        report = DeliveryEngine().run()
    assert report.deferred == 1
    message = Message.objects.get()
    assert message.status == Message.Status.DEFERRED
    assert message.lease_token is None
    attempt = message.attempts.get()
    assert attempt.outcome == DeliveryAttempt.Outcome.ROUTE_FAULT
    assert attempt.exception == "UnicodeEncodeError"
    assert attempt.possible_duplicate is False, "nothing was sent yet"
    assert attempt.stage == "connect"
    assert message.last_error.startswith(
        f"{route.name}: unexpected UnicodeEncodeError while connecting (the worker's log"
    )
    assert timedelta(0) <= attempt.duration < timedelta(seconds=30)
    assert attempt.reply == (
        "unexpected UnicodeEncodeError while connecting (the worker's log has the traceback)"
    )
    (logged,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert logged.getMessage() == (
        f"Route {route.name} failed unexpectedly while connecting; "
        "its messages go to the next route"
    )
    assert logged.exc_info[0] is UnicodeEncodeError, "the traceback is logged"
    # The route's health counts it: one route fault in a row.
    assert RouteHealthService().state(route.name).consecutive_faults == 1
    # The next drain runs as well (nothing is left half-claimed).
    _send("second")
    assert DeliveryEngine().run().deferred == 1


def test_an_unexpected_failure_is_said_once_in_the_error_and_per_recipient_in_the_attempt(
    smtp_server, make_route, relay_settings
):
    """The message's error names the route and the failure once (its reply is
    its reason: no ``route: X: X``); the attempt says it for each recipient."""
    relay_settings(EHLO_HOSTNAME="hôte.example")  # smtplib raises UnicodeEncodeError
    route = make_route(smtp_server())
    send_mail("S", "B", "from@example.com", ["a@example.com", "b@example.com"])
    assert DeliveryEngine().run().deferred == 1
    reason = "unexpected UnicodeEncodeError while connecting (the worker's log has the traceback)"
    message = Message.objects.get()
    assert message.last_error == f"{route.name}: {reason}"
    assert message.attempts.get().recipients == [
        {"address": address, "outcome": "route_fault", "reply": reason}
        for address in ("a@example.com", "b@example.com")
    ]


def test_an_unexpected_failure_that_opens_the_circuit_is_named_as_its_last_fault(
    smtp_server, make_route, relay_settings
):
    relay_settings(EHLO_HOSTNAME="hôte.example", BREAKER_FAILURE_THRESHOLD=1)
    route = make_route(smtp_server())
    _send()
    DeliveryEngine().run()
    state = RouteHealthService().state(route.name)
    assert state.state == "open"
    assert state.reason == (
        "1 route faults in a row; last: unexpected UnicodeEncodeError while connecting "
        "(the worker's log has the traceback)"
    )


def test_a_relay_refusing_the_sending_host_at_its_greeting_fails_the_message_on_its_last_route(
    smtp_server, make_route
):
    """That refusal is a route fault another route may not share, but with no
    route left, retrying cannot help: the recipients fail, not wait."""
    make_route(smtp_server(greeting="554 5.7.1 Client host rejected: blocked using a blocklist"))
    _send()
    assert DeliveryEngine().run().failed == 1
    assert Message.objects.get().recipients.get().status == Recipient.Status.FAILED


class _FailsAfterTheFirstSend(SMTPTransport):
    """A real SMTP transport with a defect after its first send: the relay has
    the message, then the transport raises what it never should."""

    def __init__(self, route, sends: list[int]) -> None:  # type: ignore[no-untyped-def]
        super().__init__(route)
        self.sends = sends  # shared by the transports of one test

    def send(self, envelope, **kwargs):  # type: ignore[no-untyped-def]
        result = super().send(envelope, **kwargs)
        self.sends.append(1)
        if len(self.sends) == 1:
            raise RuntimeError("defect after the final dot")
        return result


def test_an_exception_while_sending_faults_the_route_and_flags_the_next_delivery(
    smtp_server, make_route
):
    first, second = smtp_server(), smtp_server()
    broken = make_route(first, priority=10)
    make_route(second, priority=20)
    _send("one")
    _send("two")

    sends: list[int] = []

    def transports(route):
        if route.name == broken.name:
            return _FailsAfterTheFirstSend(route, sends)
        return get_transport(route)

    report = DeliveryEngine(transport_factory=transports).run()
    assert report.sent == 2
    assert len(first.messages) == 1, "the first relay took one before the defect"
    assert len(second.messages) == 2, "both went out through the next route"
    faults = DeliveryAttempt.objects.filter(outcome=DeliveryAttempt.Outcome.ROUTE_FAULT)
    assert {a.exception for a in faults} == {"RuntimeError"}
    assert {a.stage for a in faults} == {"data"}, "the message had been handed over"
    assert all("defect" not in a.reply for a in faults), "only the class is recorded"
    # Only the message being sent may have reached the first relay.
    assert dict(faults.values_list("message__subject", "possible_duplicate")) == {
        "one": True,
        "two": False,
    }


class _NeverCallsBack(SMTPTransport):
    """A pipelining transport that never calls ``meanwhile`` (allowed: the
    protocol says *when it can be*)."""

    def send(self, envelope, *, following=None, meanwhile=None):  # type: ignore[no-untyped-def]
        return super().send(envelope, following=following, meanwhile=None)


def test_a_transport_that_never_calls_back_still_gets_each_result_applied_once(
    smtp_server, make_route
):
    server = smtp_server()
    make_route(server)
    for subject in ("one", "two", "three"):
        _send(subject)
    report = DeliveryEngine(transport_factory=_NeverCallsBack).run()
    assert report.sent == 3
    assert len(server.messages) == 3, "no message is sent twice"
    assert DeliveryAttempt.objects.count() == 3
