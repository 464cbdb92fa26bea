"""The delivery engine against real SMTP servers on loopback."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.core.mail import EmailMessage, send_mail
from django.utils import timezone

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.models import DeliveryAttempt, Message, Recipient, Route, Suppression

pytestmark = pytest.mark.django_db


def queue_one(to=("rcpt@example.com",), subject="Hello", **kwargs) -> Message:
    EmailMessage(subject, "Body", "sender@example.com", list(to), **kwargs).send()
    return Message.objects.latest("pk")


def deliver(**kwargs):
    return DeliveryEngine(**kwargs).run()


def test_delivers_the_stored_bytes_to_every_envelope_recipient(smtp_server, make_route):
    server = smtp_server()
    make_route(server)
    message = queue_one(to=["a@example.com"], cc=["b@example.com"], bcc=["c@example.com"])
    report = deliver()
    assert report.sent == 1
    (received,) = server.messages
    assert received.mail_from == "sender@example.com"
    assert sorted(received.rcpt_tos) == ["a@example.com", "b@example.com", "c@example.com"]
    assert received.data == bytes(message.raw)
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert message.sent_at is not None
    assert set(message.recipients.values_list("status", flat=True)) == {"delivered"}
    attempt = message.attempts.get()
    assert attempt.outcome == DeliveryAttempt.Outcome.DELIVERED
    assert attempt.smtp_code == 250


def test_a_batch_shares_one_smtp_session(smtp_server, make_route):
    server = smtp_server()
    make_route(server)
    for i in range(5):
        queue_one(subject=f"m{i}")
    report = deliver()
    assert report.sent == 5
    assert len(server.messages) == 5
    assert server.sessions == 1


def test_replies_in_a_pipelined_batch_go_to_the_message_they_answer(smtp_server, make_route):
    # Each message's commands travel with the previous message's content: a
    # refusal at RCPT or at the dot must still land on its own message.
    server = smtp_server(
        rcpt_replies={"gone@example.com": "550 5.1.1 no such user"},
        dot_reply=lambda m: "554 5.7.1 rejected" if b"Subject: spam" in m.data else None,
    )
    make_route(server)
    subjects = ["m0", "spam", "m2", "m3", "m4"]
    messages = [
        queue_one(to=["gone@example.com"] if s == "m3" else [f"{s}@example.com"], subject=s)
        for s in subjects
    ]
    deliver()
    statuses = []
    for message in messages:
        message.refresh_from_db()
        statuses.append(message.status)
    assert statuses == ["sent", "failed", "sent", "failed", "sent"]
    assert "5.7.1" in messages[1].last_error and "5.1.1" in messages[3].last_error
    assert sorted(a for m in server.messages if m.accepted for a in m.rcpt_tos) == [
        "m0@example.com",
        "m2@example.com",
        "m4@example.com",
    ]
    assert server.sessions == 1


def test_one_refused_recipient_does_not_fail_the_others(smtp_server, make_route):
    server = smtp_server(
        rcpt_replies={"gone@example.com": "550 5.1.1 <gone@example.com>: no such user"}
    )
    make_route(server)
    message = queue_one(to=["ok@example.com", "gone@example.com"])
    deliver()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    statuses = dict(message.recipients.values_list("address", "status"))
    assert statuses == {"ok@example.com": "delivered", "gone@example.com": "failed"}
    gone = message.recipients.get(address="gone@example.com")
    assert (gone.smtp_code, gone.enhanced_code) == (550, "5.1.1")
    assert "no such user" in gone.reply
    assert server.messages[0].rcpt_tos == ("ok@example.com",)
    assert message.attempts.get().outcome == DeliveryAttempt.Outcome.PARTIAL


def test_all_recipients_refused_fails_the_message_with_the_reason(smtp_server, make_route):
    server = smtp_server(rcpt_replies={"gone@example.com": "550 5.1.1 no such user"})
    make_route(server)
    message = queue_one(to=["gone@example.com"])
    deliver()
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert "550" in message.last_error and "no such user" in message.last_error
    assert server.messages == []


@pytest.mark.parametrize("reply", ["451 4.3.0 Try again later", "450 4.2.1 Mailbox busy"])
def test_a_4xx_after_data_defers_with_backoff_then_delivers(smtp_server, make_route, reply):
    server = smtp_server(dot_reply=reply, dot_reply_times=1)
    make_route(server)
    message = queue_one()
    now = timezone.now()
    deliver(clock=lambda: now)
    message.refresh_from_db()
    assert message.status == Message.Status.DEFERRED
    assert message.recipients.get().status == Recipient.Status.DEFERRED
    assert message.next_attempt_at == now + timedelta(minutes=5)  # RETRY_BASE_SECONDS
    assert reply.split()[0] in message.last_error
    # Not due yet: nothing is sent.
    assert deliver(clock=lambda: now + timedelta(minutes=4)).claimed == 0
    later = now + timedelta(minutes=5, seconds=1)
    deliver(clock=lambda: later)
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert message.attempt_count == 2
    assert len(server.messages) == 1


def test_backoff_grows_exponentially_to_the_cap(relay_settings):
    relay_settings(RETRY_BASE_SECONDS=60, RETRY_MAX_SECONDS=600, RETRY_JITTER=0)
    engine = DeliveryEngine()
    delays = [engine.backoff(n).total_seconds() for n in range(1, 7)]
    assert delays == [60, 120, 240, 480, 600, 600]


def test_jitter_stays_within_its_fraction(relay_settings):
    relay_settings(RETRY_BASE_SECONDS=100, RETRY_JITTER=0.2)
    engine = DeliveryEngine()
    delays = {engine.backoff(1).total_seconds() for _ in range(50)}
    assert all(80 <= d <= 120 for d in delays)
    assert len(delays) > 1


def test_a_batch_delivered_directly_defers_with_the_engines_backoff(
    smtp_server, make_route, relay_settings
):
    relay_settings(RETRY_BASE_SECONDS=60, RETRY_JITTER=0)
    make_route(smtp_server(dot_reply="451 4.3.0 Try again later"))
    message = queue_one()
    now = timezone.now()
    claim = Message.objects.claim(10, timedelta(minutes=5), now=now)
    assert DeliveryEngine(clock=lambda: now).deliver_batch(claim).deferred == 1
    message.refresh_from_db()
    assert message.status == Message.Status.DEFERRED
    assert message.next_attempt_at == now + timedelta(seconds=60)


class _HighestDraw(random.Random):
    """Always draws the top of the range asked for."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_a_positive_jitter_draw_lengthens_the_delay(relay_settings):
    relay_settings(RETRY_BASE_SECONDS=100, RETRY_JITTER=0.2)
    assert DeliveryEngine(rng=_HighestDraw()).backoff(1) == timedelta(seconds=120)


def test_a_retry_base_under_a_second_is_kept(relay_settings):
    relay_settings(RETRY_BASE_SECONDS=0.5, RETRY_MAX_SECONDS=600, RETRY_JITTER=0)
    assert DeliveryEngine().backoff(1) == timedelta(seconds=0.5)


def test_a_deferred_message_fails_when_its_lifetime_ends(smtp_server, make_route):
    server = smtp_server(dot_reply="451 4.3.0 Try again later")
    make_route(server)
    message = queue_one()
    deliver()
    message.refresh_from_db()
    assert message.status == Message.Status.DEFERRED
    after_lifetime = message.expires_at + timedelta(seconds=1)
    deliver(clock=lambda: after_lifetime)
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    rcpt = message.recipients.get()
    assert rcpt.status == Recipient.Status.FAILED
    assert "451" in rcpt.reply and "gave up" in rcpt.reply


def test_failover_moves_every_message_to_the_next_route(smtp_server, make_route, refused_port):
    down = make_route(port=refused_port, name="down", priority=1)
    up_server = smtp_server()
    make_route(up_server, name="up", priority=2)
    for i in range(3):
        queue_one(subject=f"m{i}", to=[f"r{i}@example.com"])
    report = deliver()
    assert report.sent == 3
    assert len(up_server.messages) == 3
    assert not Recipient.objects.exclude(status=Recipient.Status.DELIVERED).exists()
    faults = DeliveryAttempt.objects.filter(route=down)
    assert faults.count() == 3
    assert set(faults.values_list("outcome", flat=True)) == {"route_fault"}
    assert set(
        DeliveryAttempt.objects.filter(route__name="up").values_list("outcome", flat=True)
    ) == {"delivered"}


@pytest.mark.parametrize(
    "options",
    [
        {"greeting": "421 4.3.2 Service not available"},
        {"auth": {"user": "right"}, "tls": "starttls"},
        {"mail_reply": "530 5.7.0 Authentication required"},
        {"drop_after_data_cmd": True},
    ],
    ids=["421-greeting", "535-auth", "530-mail", "dropped-before-dot"],
)
def test_route_faults_never_fail_a_recipient(smtp_server, make_route, trust_test_ca, options):
    broken = smtp_server(**options)
    route_fields = (
        {"username": "user", "password": "wrong", "security": "starttls"}
        if "auth" in options
        else {}
    )
    make_route(broken, name="broken", priority=1, **route_fields)
    good = smtp_server()
    make_route(good, name="good", priority=2)
    message = queue_one(to=["a@example.com", "b@example.com"])
    deliver()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert len(good.messages) == 1
    broken_attempt = message.attempts.get(route_name="broken")
    assert broken_attempt.outcome == DeliveryAttempt.Outcome.ROUTE_FAULT
    assert not Recipient.objects.filter(status=Recipient.Status.FAILED).exists()


def test_no_route_left_defers_and_keeps_recipients_pending(make_route, refused_port):
    make_route(port=refused_port, name="a", priority=1)
    make_route(port=refused_port, name="b", priority=2)
    message = queue_one()
    deliver()
    message.refresh_from_db()
    assert message.status == Message.Status.DEFERRED
    assert message.recipients.get().status == Recipient.Status.DEFERRED
    assert "refused" in message.last_error.lower()
    assert message.attempts.count() == 2


def test_without_routes_the_django_email_settings_are_the_route(smtp_server, settings):
    server = smtp_server()
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
    queue_one()
    assert deliver().sent == 1
    assert len(server.messages) == 1
    assert DeliveryAttempt.objects.get().route_name == "django-settings"


def test_disabled_routes_are_not_used(smtp_server, make_route):
    off = smtp_server()
    make_route(off, enabled=False, priority=1)
    on = smtp_server()
    make_route(on, priority=2)
    queue_one()
    deliver()
    assert (len(off.messages), len(on.messages)) == (0, 1)


def test_connection_lost_after_the_final_dot_is_uncertain_not_failed(smtp_server, make_route):
    server = smtp_server(drop_after_dot=True, drop_after_dot_times=1)
    make_route(server)
    message = queue_one()
    deliver()
    message.refresh_from_db()
    assert message.status == Message.Status.DEFERRED
    attempt = message.attempts.get()
    assert attempt.outcome == DeliveryAttempt.Outcome.UNCERTAIN
    assert attempt.possible_duplicate is True
    assert message.recipients.get().status == Recipient.Status.DEFERRED


# -- TLS and AUTH -------------------------------------------------------------


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_tls_with_a_verified_certificate_delivers(smtp_server, make_route, trust_test_ca, security):
    server = smtp_server(tls="starttls" if security == "starttls" else "implicit")
    make_route(server, security=security)
    queue_one()
    assert deliver().sent == 1
    assert server.messages[0].tls is True


@pytest.mark.parametrize("cert", ["wrong", "wrong_host"])
def test_a_certificate_that_fails_verification_is_a_route_fault(
    smtp_server, make_route, trust_test_ca, cert, tls_certs
):
    server = smtp_server(tls="starttls", cert=cert)
    make_route(server, security="starttls")
    message = queue_one()
    deliver()
    message.refresh_from_db()
    assert message.status == Message.Status.DEFERRED
    assert server.messages == []
    attempt = message.attempts.get()
    assert attempt.outcome == DeliveryAttempt.Outcome.ROUTE_FAULT
    assert "certificate" in attempt.reply.lower()


def test_verification_can_be_turned_off_explicitly_per_route(
    smtp_server, make_route, trust_test_ca
):
    server = smtp_server(tls="starttls", cert="wrong")
    make_route(server, security="starttls", verify_certificate=False)
    queue_one()
    assert deliver().sent == 1


def test_without_the_test_ca_the_system_store_rejects_the_test_certificate(smtp_server, make_route):
    server = smtp_server(tls="implicit")
    make_route(server, security="tls")
    queue_one()
    assert deliver().sent == 0
    assert server.messages == []


def test_auth_over_starttls_delivers(smtp_server, make_route, trust_test_ca):
    server = smtp_server(tls="starttls", auth={"relayuser": "s3cret-Pa55"})
    make_route(server, security="starttls", username="relayuser", password="s3cret-Pa55")
    queue_one()
    assert deliver().sent == 1
    assert server.messages[0].auth_user == "relayuser"


def test_auth_is_never_sent_in_plaintext_unless_the_route_allows_it(smtp_server, make_route):
    server = smtp_server(auth={"relayuser": "pw"}, auth_allow_plaintext=True)
    route = make_route(server, security="none", username="relayuser", password="pw")
    message = queue_one()
    deliver()
    message.refresh_from_db()
    assert message.status == Message.Status.DEFERRED
    assert "plaintext" in message.attempts.get().reply
    assert server.messages == []
    # Allowing plaintext AUTH changes how the password travels: it must be
    # typed again for that (see test_sealed_secrets).
    route.allow_plaintext_auth = True
    route.password = "pw"
    route.save()
    Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    assert deliver().sent == 1
    assert server.messages[0].auth_user == "relayuser"


def test_cancelled_messages_are_not_sent(smtp_server, make_route):
    server = smtp_server()
    make_route(server)
    message = queue_one()
    Message.objects.filter(pk=message.pk).update(status=Message.Status.CANCELLED)
    assert deliver().claimed == 0
    assert server.messages == []


def test_send_mail_with_a_non_ascii_body_uses_8bitmime(smtp_server, make_route):
    server = smtp_server()
    make_route(server)
    send_mail("Grüße", "Ünïcode body ✉", "sender@example.com", ["to@example.com"])
    assert deliver().sent == 1
    assert "BODY=8BITMIME" in server.messages[0].mail_options


def test_a_421_ends_the_session_and_slows_the_route_down(smtp_server, make_route):
    server = smtp_server(
        dot_reply="421 4.7.0 Too many messages, closing connection", dot_reply_times=1
    )
    make_route(server)
    first = queue_one(subject="first")
    second = queue_one(subject="second")
    now = timezone.now()
    deliver(clock=lambda: now)
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == Message.Status.DEFERRED
    # The route asked us to slow down: the next message waits for room, untried.
    assert second.status == Message.Status.DEFERRED
    assert second.attempt_count == 0 and second.attempts.count() == 0
    assert "rate limit" in second.last_error
    assert second.next_attempt_at <= now + timedelta(minutes=1, seconds=1)
    later = second.next_attempt_at + timedelta(seconds=1)
    deliver(clock=lambda: later)
    second.refresh_from_db()
    assert second.status == Message.Status.SENT
    assert server.sessions == 2


def test_too_large_for_the_only_route_fails_the_recipient(smtp_server, make_route):
    server = smtp_server(dot_reply="552 5.3.4 Message size exceeds fixed limit")
    make_route(server)
    message = queue_one()
    deliver()
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert "5.3.4" in message.recipients.get().reply


def test_too_large_for_one_route_goes_to_the_next(smtp_server, make_route):
    small = smtp_server(dot_reply="552 5.3.4 Message size exceeds fixed limit")
    make_route(small, priority=1)
    big = smtp_server()
    make_route(big, priority=2)
    message = queue_one()
    deliver()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert len(big.messages) == 1


@pytest.mark.skipif(
    not hasattr(__import__("django.core.mail", fromlist=["mailers"]), "mailers"),
    reason="MAILERS exists from Django 6.1 on; run the suite with Django>=6.1 to cover it",
)
def test_with_mailers_the_named_smtp_mailer_is_the_default_route(
    smtp_server, settings, relay_settings
):
    server = smtp_server()
    settings.MAILERS = {
        "default": {"BACKEND": "django_smtprelay.backends.QueuedEmailBackend"},
        "relay": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": server.port, "timeout": 5},
        },
    }
    relay_settings(DEFAULT_ROUTE_MAILER="relay")
    send_mail("Via MAILERS", "Body", "sender@example.com", ["to@example.com"])
    assert deliver().sent == 1
    assert len(server.messages) == 1
    assert DeliveryAttempt.objects.get().route_name == "mailer-relay"


def test_too_many_recipients_sends_the_rest_in_another_transaction_at_once(smtp_server, make_route):
    # The relay takes two recipients per transaction: the third and later get 452.
    server = smtp_server(
        rcpt_replies={f"r{i}@example.com": "452 4.5.3 Too many recipients" for i in (2, 3, 4)},
        rcpt_reply_times=1,
    )
    make_route(server)
    to = [f"r{i}@example.com" for i in range(5)]
    message = queue_one(to=to)
    deliver()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert sorted(a for m in server.messages for a in m.rcpt_tos) == to
    assert [len(m.rcpt_tos) for m in server.messages] == [2, 3]
    assert server.sessions == 1


def test_the_relays_size_limit_moves_the_message_to_a_route_that_takes_it(smtp_server, make_route):
    small = smtp_server(size_limit=200)
    make_route(small, priority=1)
    big = smtp_server()
    make_route(big, priority=2)
    message = queue_one()
    deliver()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert (len(small.messages), len(big.messages)) == (0, 1)
    fault = message.attempts.get(outcome="route_fault")
    assert "SIZE 200" in fault.reply


def test_a_full_mailbox_is_retried_then_fails_after_the_give_up_time(
    smtp_server, make_route, relay_settings
):
    relay_settings(MAILBOX_FULL_GIVE_UP_SECONDS=3600)
    server = smtp_server(dot_reply="552 5.2.2 Mailbox full")
    make_route(server)
    message = queue_one()
    deliver()
    message.refresh_from_db()
    assert message.status == Message.Status.DEFERRED
    later = message.created_at + timedelta(hours=1, seconds=1)
    deliver(clock=lambda: later)
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED


@pytest.mark.parametrize(("setting", "status"), [("permanent", "failed"), ("route_fault", "sent")])
def test_content_rejection_is_configurable(
    smtp_server, make_route, relay_settings, setting, status
):
    relay_settings(CONTENT_REJECTION=setting)
    strict = smtp_server(dot_reply="554 5.7.1 Message rejected: spam content")
    make_route(strict, priority=1)
    other = smtp_server()
    make_route(other, priority=2)
    message = queue_one()
    deliver()
    message.refresh_from_db()
    assert message.status == status


def test_greylisting_is_retried_on_the_same_route(smtp_server, make_route):
    grey = smtp_server(
        rcpt_replies={
            "rcpt@example.com": "450 4.7.1 Greylisted, see https://postgrey.schweikert.ch/"
        },
        rcpt_reply_times=1,
    )
    make_route(grey, name="a", priority=1, weight=1)
    other = smtp_server()
    make_route(other, name="b", priority=1, weight=1000)  # would win almost every shuffle
    message = queue_one()
    # The first try must reach the greylisting relay: pin the order for it.
    from django_smtprelay.routing import Router, RouteSpec

    first = Router([RouteSpec.from_route(r) for r in Route.objects.filter(name="a")])
    deliver(router=first)
    message.refresh_from_db()
    assert message.status == Message.Status.DEFERRED
    assert message.retry_route == "a"
    later = timezone.now() + timedelta(hours=1)
    deliver(clock=lambda: later)
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert (len(grey.messages), len(other.messages)) == (1, 0)


def test_a_mailbox_gone_or_disabled_is_suppressed_with_the_relays_reply(smtp_server, make_route):
    long_reply = "550 5.1.1 " + "no such user " * 50
    server = smtp_server(
        rcpt_replies={
            "Gone@Example.com": long_reply,
            "off@example.com": "550 5.2.1 Mailbox disabled",
            "spam@example.com": "550 5.7.1 Message rejected as spam",
        }
    )
    make_route(server)
    queue_one(to=["Gone@Example.com", "off@example.com", "spam@example.com"])
    DeliveryEngine().run()
    suppressed = {s.address: (s.reason, s.source) for s in Suppression.objects.all()}
    assert set(suppressed) == {"gone@example.com", "off@example.com"}  # not 5.7.1
    reason, source = suppressed["gone@example.com"]
    assert source == Suppression.Source.BOUNCE
    # The recipient's reply (the route's name, then the relay's words), cut at 500.
    assert reason == f"route-1: {long_reply}"[:500]
    assert suppressed["off@example.com"][0] == "route-1: 550 5.2.1 Mailbox disabled"


def test_a_run_given_message_ids_delivers_only_those(smtp_server, make_route):
    server = smtp_server()
    make_route(server)
    chosen, other = queue_one(subject="chosen"), queue_one(subject="other")
    assert DeliveryEngine().run(message_ids=[chosen.pk]).sent == 1
    assert [m.rcpt_tos for m in server.messages] == [("rcpt@example.com",)]
    assert Message.objects.get(pk=chosen.pk).status == Message.Status.SENT
    assert Message.objects.get(pk=other.pk).status == Message.Status.QUEUED


def test_a_run_stops_after_max_batches(smtp_server, make_route):
    server = smtp_server()
    make_route(server)
    queue_one(subject="one")
    queue_one(subject="two")
    assert DeliveryEngine(batch_size=1).run(max_batches=1).sent == 1
    assert len(server.messages) == 1
    assert DeliveryEngine(batch_size=1).run(max_batches=1).sent == 1


def test_a_batch_given_as_token_and_ids_is_delivered_and_its_takeovers_flagged(
    smtp_server, make_route
):
    server = smtp_server()
    make_route(server)
    taken, fresh = queue_one(subject="taken"), queue_one(subject="fresh")
    claim = Message.objects.claim(10, timedelta(minutes=5))
    report = DeliveryEngine().deliver_batch(claim.token, list(claim.ids), taken_over=[taken.pk])
    assert report.sent == 2
    assert len(server.messages) == 2
    flagged = dict(DeliveryAttempt.objects.values_list("message_id", "possible_duplicate"))
    assert flagged == {taken.pk: True, fresh.pk: False}
