"""ESP routes are routes: failover both ways, match rules, their own credentials only."""

from __future__ import annotations

import logging

import pytest
from django.core.mail import send_mail

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.models import DeliveryAttempt, Message, Recipient, Route
from django_smtprelay.routing import RouteSpec
from tests.espserver import ERRORS, Answer, route_options

pytestmark = pytest.mark.django_db


def _send(*recipients: str, subject: str = "S") -> None:
    send_mail(subject, "Body\n", "from@example.com", list(recipients) or ["to@example.com"])


def test_an_esp_answering_500_fails_over_to_an_smtp_route(
    esp_server, make_esp_route, smtp_server, make_route
):
    esp = esp_server("postmark")
    esp.always = ERRORS["postmark"]["server"]
    esp_route = make_esp_route(esp, priority=10)
    relay = smtp_server()
    smtp_route = make_route(relay, priority=20)
    _send()
    report = DeliveryEngine().run()
    assert report.sent == 1
    assert len(relay.messages) == 1
    outcomes = dict(DeliveryAttempt.objects.values_list("route_name", "outcome"))
    assert outcomes == {esp_route.name: "route_fault", smtp_route.name: "delivered"}
    assert Recipient.objects.get().route_id == smtp_route.pk


def test_an_smtp_route_that_is_down_fails_over_to_an_esp_route(
    esp_server, make_esp_route, refused_port, make_route
):
    smtp_route = make_route(port=refused_port, priority=10)
    esp = esp_server("mailgun")
    esp_route = make_esp_route(esp, priority=20)
    _send()
    report = DeliveryEngine().run()
    assert report.sent == 1
    assert len(esp.requests) == 1
    outcomes = dict(DeliveryAttempt.objects.values_list("route_name", "outcome"))
    assert outcomes == {smtp_route.name: "route_fault", esp_route.name: "delivered"}
    assert Recipient.objects.get().provider_message_id.startswith("<")


def test_failover_between_two_esps(esp_server, make_esp_route):
    first = esp_server("sendgrid")
    first.always = ERRORS["sendgrid"]["auth"]
    make_esp_route(first, priority=10)
    second = esp_server("amazon_ses")
    make_esp_route(second, priority=20)
    _send()
    assert DeliveryEngine().run().sent == 1
    assert len(second.requests) == 1


def test_match_rules_choose_between_an_esp_route_and_an_smtp_route(
    esp_server, make_esp_route, smtp_server, make_route
):
    esp = esp_server("resend")
    make_esp_route(esp, priority=10, recipient_domains="example.org")
    relay = smtp_server()
    make_route(relay, priority=20)
    _send("one@example.org", "two@example.com")
    assert DeliveryEngine().run().sent == 1
    assert [r.json()["to"] for r in esp.requests] == [["one@example.org"]]
    assert [list(m.rcpt_tos) for m in relay.messages] == [["two@example.com"]]


def test_a_message_that_asks_for_an_esp_route_by_tag_goes_there(
    esp_server, make_esp_route, smtp_server, make_route
):
    esp = esp_server("postmark")
    make_esp_route(esp, priority=50, tags="transactional")
    relay = smtp_server()
    make_route(relay, priority=10)
    send_mail("S", "B", "from@example.com", ["to@example.com"])
    from django.core.mail import EmailMessage

    tagged = EmailMessage("T", "B", "from@example.com", ["x@example.com"])
    tagged.smtprelay_route = "transactional"
    tagged.send()
    assert DeliveryEngine().run().sent == 2
    assert len(esp.requests) == 1 and len(relay.messages) == 1


def test_the_sites_global_anymail_settings_are_never_used(esp_server, make_esp_route, settings):
    server = esp_server("postmark")
    settings.ANYMAIL = {
        "POSTMARK_SERVER_TOKEN": "GLOBAL-site-token",
        "POSTMARK_MESSAGE_STREAM": "global-stream",
        "SEND_DEFAULTS": {"tags": ["global-tag"]},
    }
    make_esp_route(server)
    _send()
    assert DeliveryEngine().run().sent == 1
    (request,) = server.requests
    assert request.headers["X-Postmark-Server-Token"] == "pm-route-token"
    assert b"GLOBAL" not in request.body and b"global" not in request.body


def test_a_route_missing_its_credential_is_a_route_fault_and_borrows_nothing(
    esp_server, make_esp_route, settings
):
    server = esp_server("postmark")
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "GLOBAL-site-token"}
    make_esp_route(server, options={"api_url": server.url})
    _send()
    report = DeliveryEngine().run()
    assert report.deferred == 1
    assert server.requests == [], "no request, so no borrowed token either"
    attempt = DeliveryAttempt.objects.get()
    assert attempt.outcome == "route_fault"
    assert "'server_token'" in attempt.reply
    assert "never used" in attempt.reply


def test_a_misspelt_option_is_a_route_fault_that_names_it(esp_server, make_esp_route):
    server = esp_server("postmark")
    make_esp_route(server, options={**route_options("postmark", server), "message_steam": "x"})
    _send()
    DeliveryEngine().run()
    reply = DeliveryAttempt.objects.get().reply
    assert "'message_steam'" in reply and "message_stream" in reply
    assert server.requests == []


def test_a_secret_never_follows_a_changed_api_url(esp_server, make_esp_route):
    trusted = esp_server("postmark")
    other = esp_server("postmark")
    route = make_esp_route(trusted)
    # The API URL changes without the token being typed again.
    Route.objects.filter(pk=route.pk).update(esp_settings={"api_url": other.url})
    _send()
    DeliveryEngine().run()
    assert other.requests == [] and trusted.requests == []
    attempt = DeliveryAttempt.objects.get()
    assert attempt.outcome == "route_fault"
    assert "type it again" in attempt.reply


def test_a_secret_never_follows_a_changed_esp(esp_server, make_esp_route):
    server = esp_server("postmark")
    route = make_esp_route(server)
    Route.objects.filter(pk=route.pk).update(esp="resend")
    _send()
    DeliveryEngine().run()
    assert server.requests == []
    assert "type it again" in DeliveryAttempt.objects.get().reply


def test_secrets_appear_in_no_repr_log_or_attempt_record(esp_server, make_esp_route, caplog):
    server = esp_server("sendgrid")
    # The ESP quotes the key it refused; the record must not.
    key = "SG.route-key"
    server.always = Answer(401, {"errors": [{"message": f"bad key {key}"}]})
    route = make_esp_route(server)
    assert route.esp_options["api_key"] == key
    assert key not in route.esp_secrets_ciphertext
    assert key not in repr(route) and key not in str(route.esp_settings)
    spec = RouteSpec.from_route(route)
    assert key not in repr(spec)
    _send()
    with caplog.at_level(logging.DEBUG):
        DeliveryEngine().run()
    assert key not in caplog.text
    for row in DeliveryAttempt.objects.values():
        assert key not in str(row)
    assert key not in str(list(Message.objects.values()))
    assert "[secret]" in DeliveryAttempt.objects.get().reply


@pytest.mark.parametrize(
    "esp, options",
    [
        ("postmrk", {"server_token": "pm-secret-123"}),  # an ESP name misspelt
        ("postmark", {"server-token": "pm-secret-123"}),  # an option name misspelt
    ],
)
def test_a_secret_is_sealed_even_under_a_misspelt_name(esp, options):
    route = Route.objects.create(name="r", kind="anymail", esp=esp, esp_options=options)
    assert "pm-secret-123" not in str(Route.objects.values().get(pk=route.pk))
    assert route.esp_options == options


def test_an_esp_routes_rate_limit_holds_the_rest_of_the_batch(esp_server, make_esp_route):
    from datetime import timedelta

    from django.utils import timezone

    server = esp_server("postmark")
    make_esp_route(server, max_per_minute=3)
    for n in range(5):
        _send(subject=f"m{n}")
    # Early in a minute, as for SMTP routes: the window has most of a minute left.
    early = timezone.now().replace(second=5, microsecond=0) + timedelta(minutes=1)
    report = DeliveryEngine(clock=lambda: early).run()
    assert report.sent == 3
    assert len(server.requests) == 3
    held = Message.objects.filter(status=Message.Status.DEFERRED)
    assert held.count() == 2
    assert all(m.attempt_count == 0 and "rate limit" in m.last_error for m in held)


def test_equal_priorities_share_traffic_between_an_esp_and_an_smtp_route(
    esp_server, make_esp_route, smtp_server, make_route
):
    esp = esp_server("resend")
    make_esp_route(esp, priority=10, weight=1)
    relay = smtp_server()
    make_route(relay, priority=10, weight=1)
    for n in range(40):
        _send(f"user{n}@example.com", subject=f"m{n}")
    assert DeliveryEngine().run().sent == 40
    assert len(esp.requests) + len(relay.messages) == 40
    assert esp.requests and relay.messages, "both routes of the same priority take a share"
