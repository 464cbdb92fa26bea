"""Routing rules: sender and recipient domains, tags, weights, size; splits per route."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from django.core.mail import EmailMessage
from django.utils import timezone

from django_smtprelay import signals
from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.health import RouteHealthService
from django_smtprelay.models import Message, Recipient, Route, Suppression
from django_smtprelay.routing import Router, RouteSpec

pytestmark = pytest.mark.django_db


def send(to=("rcpt@example.com",), sender="sender@example.com", **attrs) -> Message:
    email = EmailMessage("Hello", "Body", sender, list(to))
    for key, value in attrs.items():
        setattr(email, f"smtprelay_{key}", value)
    email.send()
    return Message.objects.latest("pk")


def spec(name, priority=1, weight=1, **kw) -> RouteSpec:
    return RouteSpec(name=name, host="127.0.0.1", port=1, priority=priority, weight=weight, **kw)


def test_recipient_domain_rules_split_one_message_per_route(smtp_server, make_route):
    gmail_relay = smtp_server()
    make_route(gmail_relay, recipient_domains="gmail.com, *.googlemail.com", priority=1)
    general = smtp_server()
    make_route(general, priority=2)
    message = send(to=["a@gmail.com", "b@mail.googlemail.com", "c@example.org"])
    DeliveryEngine().run()
    assert [sorted(m.rcpt_tos) for m in gmail_relay.messages] == [
        ["a@gmail.com", "b@mail.googlemail.com"]
    ]
    # Recipients at other domains go to the routes without a matching rule... and the
    # general route also takes gmail.com if the first route fails.
    assert [m.rcpt_tos for m in general.messages] == [("c@example.org",)]
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert message.attempts.count() == 2


def test_sender_domain_rules_match_the_envelope_or_the_from_header(smtp_server, make_route):
    marketing = smtp_server()
    make_route(marketing, sender_domains="news.example.com", priority=1)
    default = smtp_server()
    make_route(default, priority=2)
    send(sender="hello@news.example.com")
    send(sender="bounce@example.com")
    email = EmailMessage(
        "Hi",
        "B",
        "bounce@example.com",
        ["x@example.org"],
        headers={"From": "hello@news.example.com"},
    )
    email.send()
    DeliveryEngine().run()
    assert len(marketing.messages) == 2
    assert len(default.messages) == 1


def test_tagged_routes_take_only_messages_that_ask_for_them(smtp_server, make_route):
    transactional = smtp_server()
    make_route(transactional, name="postmark", tags="transactional", priority=1)
    bulk = smtp_server()
    make_route(bulk, name="bulk", priority=2)
    send(route="transactional")
    send(route="postmark")
    send()
    DeliveryEngine().run()
    assert len(transactional.messages) == 2
    assert len(bulk.messages) == 1


def test_a_route_hint_that_matches_nothing_defers_with_a_clear_reason(smtp_server, make_route):
    make_route(smtp_server())
    message = send(route="no-such-route")
    DeliveryEngine().run()
    message.refresh_from_db()
    assert message.status == Message.Status.DEFERRED
    assert "'no-such-route'" in message.last_error


def test_weights_share_traffic_within_a_priority():
    # The engine's order: priority, then a weighted shuffle (weight x health score;
    # routes with no history all score the same).
    health = RouteHealthService(rng=random.Random(7))
    routes = Router([spec("a", weight=3), spec("b", weight=1), spec("c", priority=2)]).routes
    firsts = Counter(health.order(routes)[0].name for _ in range(4000))
    assert 0.70 < firsts["a"] / 4000 < 0.80
    assert firsts["c"] == 0
    assert all(health.order(routes)[-1].name == "c" for _ in range(50))


def test_max_message_size_skips_small_routes_and_fails_when_none_fits(smtp_server, make_route):
    small = smtp_server()
    make_route(small, max_message_size=100, priority=1)
    big = smtp_server()
    big_route = make_route(big, priority=2)
    send()
    DeliveryEngine().run()
    assert (len(small.messages), len(big.messages)) == (0, 1)
    Route.objects.filter(pk=big_route.pk).update(max_message_size=100)
    message = send()
    DeliveryEngine().run()
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert "larger than every route" in message.last_error


def test_suppressed_recipients_are_not_sent_to(smtp_server, make_route):
    server = smtp_server()
    make_route(server)
    Suppression.objects.create(address="Gone@Example.com", reason="hard bounce")
    message = send(to=["gone@example.com", "ok@example.com"])
    DeliveryEngine().run()
    assert server.messages[0].rcpt_tos == ("ok@example.com",)
    statuses = dict(message.recipients.values_list("address", "status"))
    assert statuses == {"gone@example.com": "suppressed", "ok@example.com": "delivered"}


def test_a_message_whose_recipients_are_all_suppressed_fails(smtp_server, make_route):
    server = smtp_server()
    make_route(server)
    Suppression.objects.create(address="gone@example.com", reason="unsubscribed")
    message = send(to=["gone@example.com"])
    DeliveryEngine().run()
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert "unsubscribed" in message.last_error
    assert server.sessions == 0


def test_a_mailbox_that_does_not_exist_is_suppressed(smtp_server, make_route, relay_settings):
    server = smtp_server(
        rcpt_replies={
            "gone@example.com": "550 5.1.1 User unknown",
            "spam@example.com": "550 5.7.1 Message rejected as spam",
        }
    )
    make_route(server)
    send(to=["gone@example.com", "spam@example.com"])
    DeliveryEngine().run()
    assert list(Suppression.objects.values_list("address", "source")) == [
        ("gone@example.com", "bounce")
    ]
    relay_settings(SUPPRESS_ON_PERMANENT_FAILURE=False)
    server.options.rcpt_replies["gone2@example.com"] = "550 5.1.1 User unknown"
    send(to=["gone2@example.com"])
    DeliveryEngine().run()
    assert Recipient.objects.get(address="gone2@example.com").status == "failed"
    assert Suppression.objects.count() == 1


def test_send_at_holds_a_message_until_its_time(smtp_server, make_route):
    server = smtp_server()
    make_route(server)
    later = timezone.now() + timezone.timedelta(hours=2)
    message = send(send_at=later)
    assert message.next_attempt_at == later
    assert DeliveryEngine().run().claimed == 0
    assert DeliveryEngine(clock=lambda: later).run().sent == 1
    assert len(server.messages) == 1


def test_send_at_must_be_timezone_aware():
    from django_smtprelay.exceptions import InvalidMessageError

    with pytest.raises(InvalidMessageError, match="2030-01-01 09:00"):
        send(send_at="2030-01-01 09:00")


def test_cancel_only_touches_messages_not_yet_final():
    a, b = send(), send()
    Message.objects.filter(pk=b.pk).update(status=Message.Status.SENT)
    assert Message.objects.all().cancel() == 1
    assert Message.objects.get(pk=a.pk).status == Message.Status.CANCELLED
    assert Message.objects.get(pk=b.pk).status == Message.Status.SENT


def test_signals_report_each_state_once_per_batch(
    smtp_server, make_route, django_capture_on_commit_callbacks
):
    server = smtp_server(
        rcpt_replies={"gone@example.com": "550 5.1.1 no such user"},
        dot_reply=lambda m: "451 4.3.0 later" if "later@" in str(m.rcpt_tos) else None,
    )
    make_route(server)
    seen: dict[str, list[int]] = {}

    def on(name):
        def receiver(sender, message_ids, **kwargs):
            seen.setdefault(name, []).extend(message_ids)

        return receiver

    receivers = {name: on(name) for name in ("queued", "sent", "deferred", "failed")}
    for name, receiver in receivers.items():
        getattr(signals, f"message_{name}").connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            ok = send(to=["ok@example.com"])
            failed = send(to=["gone@example.com"])
            deferred = send(to=["later@example.com"])
        DeliveryEngine().run()
    finally:
        for name, receiver in receivers.items():
            getattr(signals, f"message_{name}").disconnect(receiver)
    assert seen["queued"] == [ok.pk, failed.pk, deferred.pk]
    assert seen["sent"] == [ok.pk]
    assert seen["failed"] == [failed.pk]
    assert seen["deferred"] == [deferred.pk]


def test_new_mail_is_not_starved_by_a_backlog_of_retries():
    for _ in range(20):
        send()
    Message.objects.update(status=Message.Status.DEFERRED, next_attempt_at=timezone.now())
    fresh = [send().pk for _ in range(5)]
    _token, ids = Message.objects.claim(10, timezone.timedelta(minutes=5))
    assert set(fresh) <= set(ids)
    assert len(ids) == 10, "retries still get the rest of the batch"


def test_higher_priority_goes_first():
    send(priority="low")
    now = send(priority="now")
    _token, ids = Message.objects.claim(1, timezone.timedelta(minutes=5))
    assert ids == [now.pk]


@pytest.mark.parametrize(
    ("use_ssl", "use_tls", "security"),
    [
        (True, False, Route.Security.TLS),
        (False, True, Route.Security.STARTTLS),
        (True, True, Route.Security.TLS),  # Django refuses both; implicit TLS is the safer
        (False, False, Route.Security.NONE),
    ],
)
def test_without_routes_the_django_email_settings_are_the_route(
    settings, use_ssl, use_tls, security
):
    settings.EMAIL_HOST, settings.EMAIL_PORT = "mail.example.com", "465"
    settings.EMAIL_USE_SSL, settings.EMAIL_USE_TLS = use_ssl, use_tls
    settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = "user", "pw"
    settings.EMAIL_TIMEOUT = None
    spec = RouteSpec.from_django_settings()
    assert (spec.host, spec.port, spec.security) == ("mail.example.com", 465, security)
    assert (spec.username, spec.password, spec.timeout) == ("user", "pw", 30.0)
    settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD, settings.EMAIL_TIMEOUT = None, None, 7
    spec = RouteSpec.from_django_settings()
    assert (spec.username, spec.password, spec.timeout) == ("", "", 7.0)


@pytest.mark.parametrize(
    ("options", "security"),
    [
        ({"use_ssl": True}, Route.Security.TLS),
        ({"use_tls": True}, Route.Security.STARTTLS),
        ({"use_ssl": True, "use_tls": True}, Route.Security.TLS),
        ({}, Route.Security.NONE),
    ],
)
def test_default_route_mailer_reads_the_named_mailer_options(
    settings, relay_settings, options, security
):
    # The settings alone: MAILERS is read the same on every Django version (the
    # delivery through it is tested on Django 6.1+ in test_delivery.py).
    settings.MAILERS = {
        "relay": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "relay.example.com", "port": "2525", **options},
        },
        "plain": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend"},
        "login": {"OPTIONS": {"username": "u", "password": "p", "timeout": "9"}},
    }
    relay_settings(DEFAULT_ROUTE_MAILER="relay")
    spec = RouteSpec.from_django_settings()
    assert (spec.name, spec.host, spec.port, spec.security) == (
        "mailer-relay",
        "relay.example.com",
        2525,
        security,
    )
    assert (spec.username, spec.password, spec.timeout) == ("", "", 30.0)
    relay_settings(DEFAULT_ROUTE_MAILER="plain")
    spec = RouteSpec.from_django_settings()
    assert (spec.host, spec.port, spec.security) == ("localhost", 25, Route.Security.NONE)
    relay_settings(DEFAULT_ROUTE_MAILER="login")
    spec = RouteSpec.from_django_settings()
    assert (spec.username, spec.password, spec.timeout) == ("u", "p", 9.0)


def test_default_route_mailer_naming_no_mailer_says_which_there_are(settings, relay_settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.MAILERS = {"b": {}, "a": {}}
    relay_settings(DEFAULT_ROUTE_MAILER="relay")
    with pytest.raises(ImproperlyConfigured, match=r"is 'relay', but MAILERS .* \(it has: a, b\)"):
        RouteSpec.from_django_settings()
    settings.MAILERS = None
    with pytest.raises(ImproperlyConfigured, match=r"\(it has: none\)"):
        RouteSpec.from_django_settings()


def test_a_route_row_becomes_a_spec_field_for_field():
    # Every field differs from RouteSpec's default, so a field left out shows.
    route = Route(
        name="esp-eu",
        kind=Route.Kind.ANYMAIL,
        esp="postmark",
        host="relay.example.net",
        port=2525,
        security=Route.Security.STARTTLS,
        verify_certificate=False,
        allow_plaintext_auth=True,
        username="relayuser",
        timeout=12.5,
        priority=7,
        sender_domains="News.Example.com, *.example.org",
        recipient_domains="gmail.com",
        tags="bulk, eu",
        weight=3,
        max_message_size=1000,
        max_per_second=2,
        max_per_minute=30,
        max_per_hour=400,
        max_connections=4,
        dkim_sign=True,
        mx_tls=Route.MXTLS.VERIFIED,
        ehlo_hostname="relay.example.net",
    )
    route.password = "pw"
    route.esp_options = {"zeta": "z", "server_token": "pm-secret-1", "alpha": "a"}
    route.save()
    spec = RouteSpec.from_route(Route.objects.get(pk=route.pk))
    assert spec == RouteSpec(
        name="esp-eu",
        host="relay.example.net",
        port=2525,
        security=Route.Security.STARTTLS,
        verify_certificate=False,
        allow_plaintext_auth=True,
        username="relayuser",
        sealed_password=route.password_ciphertext,
        timeout=12.5,
        priority=7,
        pk=route.pk,
        kind=Route.Kind.ANYMAIL,
        sender_domains=("news.example.com", "*.example.org"),
        recipient_domains=("gmail.com",),
        tags=("bulk", "eu"),
        weight=3,
        max_message_size=1000,
        max_per_second=2,
        max_per_minute=30,
        max_per_hour=400,
        max_connections=4,
        esp="postmark",
        esp_settings=(("alpha", "a"), ("zeta", "z")),
        sealed_esp_secrets=route.esp_secrets_ciphertext,
        dkim_sign=True,
        mx_tls=Route.MXTLS.VERIFIED,
        ehlo_hostname="relay.example.net",
    )
    assert route.esp_secrets_ciphertext and "pm-secret-1" not in route.esp_secrets_ciphertext
    # The secrets open only now, merged with the plain options.
    assert spec.esp_options() == {"alpha": "a", "zeta": "z", "server_token": "pm-secret-1"}
    assert spec.login_password() == "pw"


def test_an_esp_route_without_secrets_has_its_plain_options():
    route = Route.objects.create(
        name="esp", kind=Route.Kind.ANYMAIL, esp="postmark", esp_options={"alpha": "a"}
    )
    spec = RouteSpec.from_route(route)
    assert spec.sealed_esp_secrets == ""
    assert spec.esp_options() == {"alpha": "a"}
    # A route with no ESP options at all.
    Route.objects.filter(pk=route.pk).update(esp_settings={})
    spec = RouteSpec.from_route(Route.objects.get(pk=route.pk))
    assert (spec.esp_settings, spec.esp_options()) == ((), {})


def test_esp_secrets_are_refused_once_the_route_goes_elsewhere():
    from django_smtprelay.exceptions import SecretDestinationError

    route = Route.objects.create(
        name="esp", kind=Route.Kind.ANYMAIL, esp="postmark", esp_options={"server_token": "t"}
    )
    Route.objects.filter(pk=route.pk).update(esp="resend")
    spec = RouteSpec.from_route(Route.objects.get(pk=route.pk))
    with pytest.raises(SecretDestinationError, match="type it again"):
        spec.esp_options()


def test_without_email_use_settings_the_django_route_is_plaintext(settings):
    # A settings module may not define EMAIL_USE_SSL / EMAIL_USE_TLS at all.
    settings.EMAIL_HOST, settings.EMAIL_PORT = "mail.example.com", 25
    del settings.EMAIL_USE_SSL
    del settings.EMAIL_USE_TLS
    assert RouteSpec.from_django_settings().security == Route.Security.NONE
    settings.EMAIL_USE_TLS = True
    assert RouteSpec.from_django_settings().security == Route.Security.STARTTLS


def test_default_route_mailer_without_a_mailers_setting_says_there_are_none(
    settings, relay_settings
):
    from django.core.exceptions import ImproperlyConfigured

    if hasattr(settings, "MAILERS"):
        del settings.MAILERS
    relay_settings(DEFAULT_ROUTE_MAILER="relay")
    with pytest.raises(ImproperlyConfigured, match=r"\(it has: none\)"):
        RouteSpec.from_django_settings()


def test_any_recipient_rules_says_whether_a_route_has_recipient_domains():
    assert Router([spec("a"), spec("b", recipient_domains=("gmail.com",))]).any_recipient_rules
    assert Router([spec("a")]).any_recipient_rules is False


def test_a_message_of_exactly_the_limit_fits():
    router = Router([spec("small", max_message_size=100)])
    assert [r.name for r in router.matching(size=100)] == ["small"]
    assert router.why_not(size=100) == []
    assert router.too_large_everywhere(100) is False
    assert router.matching(size=101) == []
    assert router.why_not(size=101) == [("small", "larger than its limit of 100 bytes")]
    assert router.too_large_everywhere(101) is True


def test_with_no_arguments_a_message_asks_for_nothing():
    # "?*" takes any sender domain but none at all; no hint, no domains, no size.
    router = Router(
        [
            spec("plain"),
            spec("any-sender", sender_domains=("?*",)),
            spec("gmail-only", recipient_domains=("gmail.com",)),
            spec("small", max_message_size=1),
        ]
    )
    assert [r.name for r in router.matching()] == ["gmail-only", "plain", "small"]
    assert router.why_not() == [("any-sender", "sender domains do not match")]


@pytest.mark.parametrize(
    ("message", "reasons"),
    [
        (
            {},
            [
                ("bulk", "takes only messages that ask for its name or tags"),
                ("news", "sender domains do not match"),
            ],
        ),
        (
            {"route_hint": "Bulk"},
            [
                ("gmail", "the message asks for route or tag 'bulk'"),
                ("news", "the message asks for route or tag 'bulk'"),
                ("small", "the message asks for route or tag 'bulk'"),
            ],
        ),
        (
            {"route_hint": "EU"},
            [
                ("gmail", "the message asks for route or tag 'eu'"),
                ("news", "the message asks for route or tag 'eu'"),
                ("small", "the message asks for route or tag 'eu'"),
            ],
        ),
        (
            {"sender_domain": "news.example.com"},
            [("bulk", "takes only messages that ask for its name or tags")],
        ),
        (
            {"sender_domain": "example.com", "from_domain": "News.Example.com"},
            [("bulk", "takes only messages that ask for its name or tags")],
        ),
        (
            {"sender_domain": "news.example.com", "recipient_domain": "example.org"},
            [
                ("bulk", "takes only messages that ask for its name or tags"),
                ("gmail", "recipient domains do not match"),
            ],
        ),
        (
            {"sender_domain": "news.example.com", "size": 101},
            [
                ("bulk", "takes only messages that ask for its name or tags"),
                ("small", "larger than its limit of 100 bytes"),
            ],
        ),
    ],
)
def test_why_not_gives_each_routes_reason_in_words(message, reasons):
    routes = [
        spec("bulk", tags=("bulk", "eu")),
        spec("gmail", recipient_domains=("gmail.com",)),
        spec("news", sender_domains=("news.example.com",)),
        spec("small", max_message_size=100),
    ]
    assert Router(routes).why_not(**message) == reasons
    taken = {r.name for r in Router(routes).matching(**message)}
    assert taken == {r.name for r in routes} - {name for name, _ in reasons}


def test_why_not_names_the_disabled_routes_by_priority_then_name():
    for name, priority in [("off-b", 1), ("off-a", 1), ("off-first", 0), ("off-last", 9)]:
        Route.objects.create(name=name, host="127.0.0.1", port=1, priority=priority, enabled=False)
    Route.objects.create(name="on", host="127.0.0.1", port=1, priority=5)
    assert Router().why_not() == [
        ("off-first", "disabled"),
        ("off-a", "disabled"),
        ("off-b", "disabled"),
        ("off-last", "disabled"),
    ]
    # A disabled route that a router was handed anyway gives its own reason, not "disabled".
    router = Router([spec("off-a", tags=("t",))])
    assert router.why_not()[0] == ("off-a", "takes only messages that ask for its name or tags")
    assert ("off-a", "disabled") not in router.why_not()
