"""Route health through the engine: a sick route is skipped, a busy one is paced."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.mail import send_mail
from django.utils import timezone

from django_smtprelay import signals
from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.models import DeliveryAttempt, Message, RouteHealth

pytestmark = pytest.mark.django_db


def queue(n: int) -> None:
    for i in range(n):
        send_mail(f"m{i}", "Body", "from@example.com", [f"to{i}@example.com"])


def test_route_faults_in_a_row_open_the_circuit_and_the_route_is_skipped(
    smtp_server, make_route, refused_port, relay_settings
):
    relay_settings(BREAKER_FAILURE_THRESHOLD=3, BREAKER_COOLDOWN_SECONDS=120)
    make_route(port=refused_port, name="down", priority=1)
    up = smtp_server()
    make_route(up, name="up", priority=2)
    changes = []

    def on_change(sender, route_name, state, reason, **kwargs):
        changes.append((route_name, state))

    signals.route_state_changed.connect(on_change)
    try:
        for _ in range(3):  # each run: one session to "down", refused
            queue(1)
            now = timezone.now()
            DeliveryEngine(clock=lambda now=now: now).run()
        health = RouteHealth.objects.get(route_name="down")
        assert health.state == RouteHealth.State.OPEN
        assert "3 route faults in a row" in health.reason
        assert ("down", "open") in changes
        faults_before = DeliveryAttempt.objects.filter(route_name="down").count()
        queue(2)
        DeliveryEngine(clock=lambda: now + timedelta(seconds=30)).run()
        # While open, the route is not even tried; the other one takes the mail.
        assert DeliveryAttempt.objects.filter(route_name="down").count() == faults_before
        assert len(up.messages) == 5
        assert set(Message.objects.values_list("status", flat=True)) == {"sent"}
    finally:
        signals.route_state_changed.disconnect(on_change)


def test_after_the_cool_down_one_probe_closes_the_circuit(smtp_server, make_route, relay_settings):
    relay_settings(BREAKER_FAILURE_THRESHOLD=1, BREAKER_COOLDOWN_SECONDS=60)
    flaky = smtp_server(mail_reply="530 5.7.0 Authentication required", mail_reply_times=1)
    make_route(flaky, name="flaky", priority=1)
    queue(1)
    now = timezone.now()
    DeliveryEngine(clock=lambda: now).run()
    assert RouteHealth.objects.get(route_name="flaky").state == RouteHealth.State.OPEN
    later = now + timedelta(minutes=10)
    Message.objects.update(next_attempt_at=later)
    DeliveryEngine(clock=lambda: later).run()
    assert RouteHealth.objects.get(route_name="flaky").state == RouteHealth.State.CLOSED
    assert Message.objects.get().status == Message.Status.SENT


def test_a_rate_limited_route_holds_the_rest_of_the_batch_untried(smtp_server, make_route):
    server = smtp_server()
    make_route(server, max_per_minute=3)
    queue(5)
    # Early in a minute: the limit's fixed window has most of a minute left, far
    # more than the engine waits (at a minute's end the rest would go at once).
    now = timezone.now()
    early = now.replace(second=5, microsecond=0) + timedelta(minutes=1)
    report = DeliveryEngine(clock=lambda: early).run()
    assert report.sent == 3
    held = Message.objects.filter(status=Message.Status.DEFERRED)
    assert held.count() == 2
    assert all(m.attempt_count == 0 and "rate limit" in m.last_error for m in held)
    assert len(server.messages) == 3


def test_a_short_wait_for_the_rate_limit_is_slept_and_the_next_message_goes(
    smtp_server, make_route
):
    server = smtp_server()
    make_route(server, max_per_second=1)
    queue(2)
    report = DeliveryEngine().run()
    assert report.sent == 2, "the second waited for the next second, under 2 s"
    assert len(server.messages) == 2


def test_a_send_still_refused_after_the_wait_holds_the_rest_for_the_longest_wait(
    smtp_server, make_route
):
    # The engine's clock stands still: after the wait the second is still full,
    # as when another worker took the unit that came free.
    server = smtp_server()
    make_route(server, name="relay", max_per_second=1)
    queue(3)
    # Half a second into a second that is surely after the messages were queued.
    still = (timezone.now() + timedelta(seconds=2)).replace(microsecond=500_000)
    report = DeliveryEngine(clock=lambda: still).run()
    assert report.sent == 1
    held = Message.objects.filter(status=Message.Status.DEFERRED)
    assert held.count() == 2
    assert {m.last_error for m in held} == {"relay: rate limit, next send in 2s"}
    assert all(m.attempt_count == 0 for m in held)
    assert len(server.messages) == 1
