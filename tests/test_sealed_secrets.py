"""A relay password is sealed to the destination it was typed for.

A changed host, port, transport security, certificate check or plaintext-AUTH
flag never receives the stored password until somebody types it again; one
route's unusable password faults that route alone; credentials may be UTF-8.
"""

from __future__ import annotations

import importlib
import logging

import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.core.mail import send_mail

from django_smtprelay import crypto
from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.exceptions import SecretDestinationError
from django_smtprelay.models import DeliveryAttempt, Message, Route

SECRET = "Sup3r-Secret-Relay-Pa55"
pytestmark = pytest.mark.django_db


def _send() -> None:
    send_mail("S", "B", "from@example.com", ["to@example.com"])


@pytest.mark.parametrize(
    "change",
    [
        {"host": "localhost"},
        {"port": 2525},
        {"security": Route.Security.TLS},
        {"verify_certificate": False},
        {"allow_plaintext_auth": True},
    ],
    ids=lambda c: next(iter(c)),
)
def test_a_changed_destination_refuses_the_stored_password(make_route, refused_port, change):
    route = make_route(port=refused_port, username="u", password=SECRET)
    for field, value in change.items():
        setattr(route, field, value)
    route.save()
    route = Route.objects.get(pk=route.pk)
    with pytest.raises(SecretDestinationError, match="type it again") as caught:
        route.password  # noqa: B018
    assert SECRET not in str(caught.value)
    # Changing it back makes it usable again: the binding is to the destination.
    for field in change:
        setattr(route, field, Route._meta.get_field(field).default)
    route.port = refused_port
    route.host = "127.0.0.1"
    route.security = Route.Security.NONE
    assert route.password == SECRET


def test_the_password_never_reaches_a_new_host(smtp_server, make_route, caplog):
    old = smtp_server(auth={"relayuser": SECRET}, auth_allow_plaintext=True)
    new = smtp_server(auth={"relayuser": SECRET}, auth_allow_plaintext=True)
    route = make_route(old, username="relayuser", password=SECRET, allow_plaintext_auth=True)
    # A user with only the change permission points the route elsewhere,
    # leaving the password alone.
    Route.objects.filter(pk=route.pk).update(port=new.port)
    _send()
    with caplog.at_level(logging.DEBUG):
        DeliveryEngine().run()
    assert new.sessions == 0, "nothing is even connected without a usable password"
    attempt = DeliveryAttempt.objects.get()
    assert attempt.outcome == DeliveryAttempt.Outcome.ROUTE_FAULT
    assert "typed for" in attempt.reply and f":{new.port}" in attempt.reply
    message = Message.objects.get()
    assert message.status == Message.Status.DEFERRED
    assert "type it again" in message.last_error
    assert SECRET not in attempt.reply + message.last_error + caplog.text


def test_a_password_typed_again_goes_to_the_new_host(smtp_server, make_route):
    old = smtp_server(auth={"relayuser": "old-secret"}, auth_allow_plaintext=True)
    new = smtp_server(auth={"relayuser": SECRET}, auth_allow_plaintext=True)
    route = make_route(old, username="relayuser", password="old-secret", allow_plaintext_auth=True)
    route.port = new.port
    route.password = SECRET
    route.save()
    _send()
    assert DeliveryEngine().run().sent == 1
    assert len(new.messages) == 1


def test_an_unreadable_password_faults_its_route_and_the_next_takes_the_mail(
    smtp_server, make_route, relay_settings
):
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    relay_settings(ENCRYPTION_KEYS=[old_key])
    first = smtp_server(auth={"u": SECRET}, auth_allow_plaintext=True)
    second = smtp_server()
    make_route(first, username="u", password=SECRET, allow_plaintext_auth=True, priority=10)
    make_route(second, priority=20)
    relay_settings(ENCRYPTION_KEYS=[new_key])  # the old key is lost
    _send()
    report = DeliveryEngine().run()
    assert report.sent == 1
    assert len(second.messages) == 1
    assert first.sessions == 0
    fault = DeliveryAttempt.objects.get(outcome=DeliveryAttempt.Outcome.ROUTE_FAULT)
    assert "cannot be decrypted" in fault.reply
    # The next drain is not stopped by it either.
    _send()
    assert DeliveryEngine().run().sent == 1


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_utf8_credentials_log_in(smtp_server, make_route, mechanism):
    user, password = "relais-ünïcode", "pässwörd-€-密码"
    server = smtp_server(
        auth={user: password}, auth_allow_plaintext=True, auth_mechanisms=(mechanism,)
    )
    make_route(server, username=user, password=password, allow_plaintext_auth=True)
    _send()
    assert DeliveryEngine().run().sent == 1
    assert len(server.messages) == 1


def test_passwords_stored_before_sealing_are_refused_until_the_migration_binds_them(
    make_route, refused_port
):
    route = make_route(port=refused_port, username="u")
    Route.objects.filter(pk=route.pk).update(password_ciphertext=crypto.encrypt(SECRET))
    with pytest.raises(SecretDestinationError, match="before secrets were bound"):
        Route.objects.get(pk=route.pk).password  # noqa: B018
    migration = importlib.import_module("django_smtprelay.migrations.0005_seal_route_passwords")
    migration.seal(apps, None)
    route = Route.objects.get(pk=route.pk)
    assert route.password == SECRET
    assert route.password_destination == route.destination
    migration.unseal(apps, None)
    assert crypto.decrypt(Route.objects.get(pk=route.pk).password_ciphertext) == SECRET
