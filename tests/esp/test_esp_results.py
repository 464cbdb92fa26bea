"""An ESP's answers become recipient outcomes, as an SMTP relay's replies do."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.core.mail import send_mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.delivery.results import write_provider_ids
from django_smtprelay.health import RouteHealthService
from django_smtprelay.models import DeliveryAttempt, Message, Recipient
from django_smtprelay.models.messages import Claim
from tests.espserver import ERRORS, postmark_inactive, postmark_some_inactive

pytestmark = pytest.mark.django_db

FLAVOURS = ("postmark", "mailgun", "sendgrid", "resend", "amazon_ses")


def _send(*recipients: str, subject: str = "S") -> None:
    send_mail(subject, "Body\n", "from@example.com", list(recipients) or ["to@example.com"])


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_an_accepted_message_is_sent_with_the_esps_message_id_per_recipient(
    flavour, esp_server, make_esp_route
):
    server = esp_server(flavour)
    route = make_esp_route(server)
    _send("a@example.com", "b@example.org")
    report = DeliveryEngine().run()
    assert report.sent == 1
    rows = list(Recipient.objects.values_list("status", "provider_message_id", "route_id"))
    assert [r[0] for r in rows] == [Recipient.Status.DELIVERED] * 2
    assert all(r[1] for r in rows), "the ESP's id is kept for each recipient"
    assert {r[2] for r in rows} == {route.pk}
    attempt = DeliveryAttempt.objects.get()
    assert attempt.outcome == DeliveryAttempt.Outcome.DELIVERED
    assert attempt.stage == "api"


def test_a_recipient_the_esp_rejects_fails_and_the_others_are_sent(esp_server, make_esp_route):
    server = esp_server("postmark")
    make_esp_route(server)
    server.answer(lambda request: postmark_some_inactive(request, ["gone@example.com"]))
    _send("ok@example.com", "gone@example.com")
    DeliveryEngine().run()
    status = dict(Recipient.objects.values_list("address", "status"))
    assert status == {"ok@example.com": "delivered", "gone@example.com": "failed"}
    gone = Recipient.objects.get(address="gone@example.com")
    assert "rejected" in gone.reply
    assert gone.provider_message_id == ""
    assert Message.objects.get().status == Message.Status.SENT
    assert DeliveryAttempt.objects.get().outcome == DeliveryAttempt.Outcome.PARTIAL


def test_every_recipient_refused_fails_the_message(esp_server, make_esp_route):
    """Postmark's 422 ErrorCode 406: anymail's AnymailRecipientsRefused case."""
    server = esp_server("postmark")
    make_esp_route(server)
    server.answer(postmark_inactive(["a@example.com", "b@example.com"]))
    _send("a@example.com", "b@example.com")
    report = DeliveryEngine().run()
    assert report.failed == 1
    assert set(Recipient.objects.values_list("status", flat=True)) == {"failed"}


def test_each_send_reads_its_own_status(esp_server, make_esp_route):
    """anymail resets ``anymail_status`` per send: a refusal never leaks into the next one."""
    server = esp_server("postmark")
    make_esp_route(server)
    server.answer(postmark_inactive(["a@example.com"]))
    _send("a@example.com", subject="first")
    _send("b@example.com", subject="second")
    DeliveryEngine().run()
    status = dict(Recipient.objects.values_list("address", "status"))
    assert status == {"a@example.com": "failed", "b@example.com": "delivered"}


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_refused_credentials_are_a_route_fault_never_a_failed_recipient(
    flavour, esp_server, make_esp_route
):
    server = esp_server(flavour)
    route = make_esp_route(server)
    server.always = ERRORS[flavour]["auth"]
    _send(subject="one")
    _send(subject="two")
    report = DeliveryEngine().run()
    assert report.deferred == 2 and report.failed == 0
    assert len(server.requests) == 1, "the route is done for the session after the refusal"
    attempts = DeliveryAttempt.objects.filter(route=route)
    assert set(attempts.values_list("outcome", flat=True)) == {"route_fault"}
    first = attempts.order_by("pk").first()
    assert first.smtp_code in (401, 403)
    assert "credentials" in first.reply
    assert first.possible_duplicate is False


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_rate_limit_defers_and_slows_the_route(flavour, esp_server, make_esp_route):
    server = esp_server(flavour)
    route = make_esp_route(server)
    server.answer(ERRORS[flavour]["rate"])
    _send()
    report = DeliveryEngine().run()
    assert report.deferred == 1
    attempt = DeliveryAttempt.objects.get()
    assert attempt.outcome == "route_fault" and attempt.smtp_code == 429
    limiter = RouteHealthService().limiter(route.name, None)
    assert limiter.slowed(timezone.now()) is not None
    assert RouteHealthService().usable(route.name), "a rate limit never opens the circuit"


def test_an_esp_that_answers_500_opens_the_circuit(esp_server, make_esp_route, relay_settings):
    relay_settings(BREAKER_FAILURE_THRESHOLD=3)
    server = esp_server("sendgrid")
    route = make_esp_route(server)
    server.always = ERRORS["sendgrid"]["server"]
    for n in range(4):
        _send(subject=f"m{n}")
        DeliveryEngine().run()
        Message.objects.update(next_attempt_at=timezone.now())
    assert not RouteHealthService().usable(route.name)
    requests_before = len(server.requests)
    _send(subject="after")
    DeliveryEngine().run()
    assert len(server.requests) == requests_before, "an open circuit sends nothing"
    assert Recipient.objects.filter(status="failed").count() == 0


@pytest.mark.parametrize("flavour", ["postmark", "amazon_ses"])
def test_a_timeout_after_the_request_was_sent_is_uncertain(flavour, esp_server, make_esp_route):
    server = esp_server(flavour)
    route = make_esp_route(server, timeout=0.3)
    server.delay = 1.0
    _send()
    report = DeliveryEngine().run()
    assert report.deferred == 1
    message = Message.objects.get()
    assert message.possible_duplicate is True
    assert message.retry_route == route.name
    attempt = DeliveryAttempt.objects.get()
    assert attempt.outcome == "uncertain"
    assert attempt.exception in ("ReadTimeout", "ReadTimeoutError")  # requests, botocore


def test_an_esp_that_cannot_be_reached_is_a_route_fault_without_duplicate(
    esp_server, make_esp_route
):
    server = esp_server("postmark")
    make_esp_route(server)
    server.__exit__(None, None, None)  # nothing listens on its port now
    _send()
    report = DeliveryEngine().run()
    assert report.deferred == 1
    attempt = DeliveryAttempt.objects.get()
    assert attempt.outcome == "route_fault"
    assert attempt.possible_duplicate is False
    assert Message.objects.get().possible_duplicate is False


def test_a_message_the_esp_refuses_fails_when_no_other_route_is_left(esp_server, make_esp_route):
    server = esp_server("mailgun")
    make_esp_route(server)
    server.answer(ERRORS["mailgun"]["refused"])
    _send()
    report = DeliveryEngine().run()
    assert report.failed == 1
    assert "refused the message (HTTP 400)" in Recipient.objects.get().reply


def test_an_unverified_sender_waits_for_the_route_to_be_fixed(esp_server, make_esp_route):
    server = esp_server("amazon_ses")
    make_esp_route(server)
    server.answer(ERRORS["amazon_ses"]["refused"])
    _send()
    report = DeliveryEngine().run()
    assert report.deferred == 1
    assert "may not send as this sender" in Message.objects.get().last_error


def test_each_message_keeps_its_own_esp_id_when_a_flush_writes_many(esp_server, make_esp_route):
    """Ids differ per message: one flush writes them all (write_provider_ids), each to its row."""
    server = esp_server("postmark")
    make_esp_route(server)
    for n in range(5):
        _send(f"r{n}a@example.com", f"r{n}b@example.com", subject=f"m{n}")
    assert DeliveryEngine().run().sent == 5
    answered = {
        request.json()["Subject"]: answer.body["MessageID"]
        for request, answer in zip(server.requests, server.answers, strict=True)
    }
    assert len(set(answered.values())) == 5
    for message in Message.objects.all():
        per_rcpt = set(message.recipients.values_list("provider_message_id", flat=True))
        assert per_rcpt == {answered[message.subject]}, "the id the ESP gave this message"


def _claimed_recipients(count: int) -> tuple[Claim, list[int]]:
    """One message to ``count`` recipients, claimed: its lease holds it as a flush would."""
    send_mail("S", "Body\n", "from@example.com", [f"r{n}@example.com" for n in range(count)])
    claim = Message.objects.claim(10, timedelta(minutes=5))
    return claim, list(Recipient.objects.order_by("pk").values_list("pk", flat=True))


def test_provider_ids_for_more_recipients_than_one_statement_takes_all_reach_their_rows():
    """Past 400 ids the writer goes on in another statement, the 401st included."""
    claim, pks = _claimed_recipients(401)
    write_provider_ids({pk: f"id-{pk}" for pk in pks}, claim.token)
    written = dict(Recipient.objects.values_list("pk", "provider_message_id"))
    assert written == {pk: f"id-{pk}" for pk in pks}


def test_provider_ids_of_one_flush_are_written_in_one_statement():
    claim, pks = _claimed_recipients(3)
    with CaptureQueriesContext(connection) as queries:
        write_provider_ids({pk: f"id-{pk}" for pk in pks}, claim.token)
    assert len(queries.captured_queries) == 1, [q["sql"] for q in queries.captured_queries]
    assert set(Recipient.objects.values_list("provider_message_id", flat=True)) == {
        f"id-{pk}" for pk in pks
    }


def test_a_provider_id_longer_than_its_column_is_cut_to_255_characters():
    claim, [pk] = _claimed_recipients(1)
    write_provider_ids({pk: "x" * 300}, claim.token)
    assert Recipient.objects.get().provider_message_id == "x" * 255


def test_provider_ids_are_not_written_once_the_lease_is_lost():
    claim, [pk] = _claimed_recipients(1)
    write_provider_ids({pk: "stale"}, uuid.uuid4())
    Message.objects.update(status=Message.Status.QUEUED)
    write_provider_ids({pk: "not sending"}, claim.token)
    assert Recipient.objects.get().provider_message_id == ""
