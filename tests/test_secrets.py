"""Relay passwords: encrypted at rest, never in reprs, logs, attempts or admin pages."""

from __future__ import annotations

import logging

import pytest
from cryptography.fernet import Fernet
from django.core.mail import send_mail
from django.db import connection

from django_smtprelay import crypto
from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.exceptions import SecretDecryptionError
from django_smtprelay.models import DeliveryAttempt, Message, Route
from django_smtprelay.routing import RouteSpec

SECRET = "Sup3r-Secret-Relay-Pa55"
pytestmark = pytest.mark.django_db


def stored_ciphertext(route: Route) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT password_ciphertext FROM {Route._meta.db_table} WHERE id = %s",  # noqa: S608
            [route.pk],
        )
        return cursor.fetchone()[0]


def test_the_password_is_encrypted_at_rest_and_decrypts_on_use(make_route, refused_port):
    route = make_route(port=refused_port, password=SECRET)
    raw = stored_ciphertext(route)
    assert SECRET not in raw
    assert Route.objects.get(pk=route.pk).password == SECRET


def test_keys_rotate_with_multifernet(make_route, refused_port, relay_settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    relay_settings(ENCRYPTION_KEYS=[old])
    route = make_route(port=refused_port, password=SECRET)
    relay_settings(ENCRYPTION_KEYS=[new, old])
    assert Route.objects.get(pk=route.pk).password == SECRET
    relay_settings(ENCRYPTION_KEYS=[new])
    with pytest.raises(SecretDecryptionError, match="ENCRYPTION_KEYS"):
        Route.objects.get(pk=route.pk).password  # noqa: B018


def test_secret_key_fallbacks_decrypt_after_a_secret_key_change(make_route, refused_port, settings):
    route = make_route(port=refused_port, password=SECRET)
    previous = settings.SECRET_KEY
    settings.SECRET_KEY = "a-new-secret-key"
    settings.SECRET_KEY_FALLBACKS = [previous]
    assert Route.objects.get(pk=route.pk).password == SECRET
    assert crypto.decrypt(crypto.encrypt("x")) == "x"


def test_reprs_never_show_the_password(make_route, refused_port):
    route = make_route(port=refused_port, password=SECRET)
    spec = RouteSpec.from_route(route)
    for text in (repr(route), str(route), repr(spec), str(spec)):
        assert SECRET not in text
        assert route.password_ciphertext not in text


def test_failed_auth_leaves_no_secret_in_logs_or_attempts(
    smtp_server, make_route, trust_test_ca, caplog
):
    server = smtp_server(tls="starttls", auth={"relayuser": "another-password"})
    make_route(server, security="starttls", username="relayuser", password=SECRET)
    send_mail("S", "B", "from@example.com", ["to@example.com"])
    with caplog.at_level(logging.DEBUG):
        DeliveryEngine().run()
    attempt = DeliveryAttempt.objects.get()
    assert attempt.outcome == DeliveryAttempt.Outcome.ROUTE_FAULT
    assert attempt.smtp_code == 535
    record = " ".join(
        str(v)
        for v in DeliveryAttempt.objects.values_list(
            "reply", "exception", "recipients", "stage", "enhanced_code"
        ).get()
    )
    assert SECRET not in record
    assert SECRET not in Message.objects.get().last_error
    assert SECRET not in caplog.text


def test_the_admin_never_renders_the_password(admin_client, make_route, refused_port):
    route = make_route(port=refused_port, password=SECRET)
    for url in (
        f"/admin/django_smtprelay/route/{route.pk}/change/",
        "/admin/django_smtprelay/route/",
    ):
        page = admin_client.get(url).content.decode()
        assert SECRET not in page
        assert route.password_ciphertext not in page


def test_the_admin_keeps_the_password_when_left_blank_and_replaces_it_when_given(
    admin_client, make_route, refused_port
):
    route = make_route(port=refused_port, password=SECRET, username="u")
    url = f"/admin/django_smtprelay/route/{route.pk}/change/"
    form = {
        "name": route.name,
        "kind": "smtp",
        "host": route.host,
        "port": route.port,
        "security": "none",
        "verify_certificate": "on",
        "timeout": "5",
        "priority": "10",
        "weight": "1",
        "enabled": "on",
        "username": "u",
        "password": "",
    }
    response = admin_client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Route.objects.get(pk=route.pk).password == SECRET
    admin_client.post(url, {**form, "password": "new-one"})
    assert Route.objects.get(pk=route.pk).password == "new-one"
    admin_client.post(url, {**form, "clear_password": "on"})
    assert Route.objects.get(pk=route.pk).password == ""


def test_the_admin_refuses_a_dkim_key_that_is_not_pem_and_never_shows_a_good_one(
    admin_client, make_route, refused_port
):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    route = make_route(port=refused_port)
    url = f"/admin/django_smtprelay/route/{route.pk}/change/"
    form = {
        "name": route.name,
        "kind": "smtp",
        "host": route.host,
        "port": route.port,
        "security": "none",
        "timeout": "5",
        "priority": "10",
        "weight": "1",
        "enabled": "on",
    }
    response = admin_client.post(url, {**form, "dkim_private_key": "not a key"})
    assert response.status_code == 200
    assert "Not an unencrypted PEM private key" in response.content.decode()
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    assert admin_client.post(url, {**form, "dkim_private_key": pem}).status_code == 302
    assert Route.objects.get(pk=route.pk).dkim_private_key == pem.strip()
    page = admin_client.get(url).content.decode()
    assert pem.splitlines()[1] not in page
