"""Any failure inside a route is a route fault for that route, never a crashed batch."""

from __future__ import annotations

import logging

import pytest
from django.core.mail import send_mail

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.models import DeliveryAttempt, Message, Route
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
    make_route(server)
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
    assert "UnicodeEncodeError" in caplog.text, "the traceback is logged"
    # The next drain runs as well (nothing is left half-claimed).
    _send("second")
    assert DeliveryEngine().run().deferred == 1


class _FailsAfterTheFirstSend(SMTPTransport):
    """A real SMTP transport with a defect after its first send: the relay has
    the message, then the transport raises what it never should."""

    sends = 0

    def send(self, envelope, **kwargs):  # type: ignore[no-untyped-def]
        result = super().send(envelope, **kwargs)
        type(self).sends += 1
        if type(self).sends == 1:
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

    def transports(route):
        return _FailsAfterTheFirstSend(route) if route.name == broken.name else get_transport(route)

    report = DeliveryEngine(transport_factory=transports).run()
    assert report.sent == 2
    assert len(first.messages) == 1, "the first relay took one before the defect"
    assert len(second.messages) == 2, "both went out through the next route"
    faults = DeliveryAttempt.objects.filter(outcome=DeliveryAttempt.Outcome.ROUTE_FAULT)
    assert {a.exception for a in faults} == {"RuntimeError"}
    assert all("defect" not in a.reply for a in faults), "only the class is recorded"
    # Only the message being sent may have reached the first relay.
    assert dict(faults.values_list("message__subject", "possible_duplicate")) == {
        "one": True,
        "two": False,
    }
