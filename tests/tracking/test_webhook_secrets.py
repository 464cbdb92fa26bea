"""A route's webhook secrets: encrypted at rest, sealed to the webhook, rotated with the rest."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from django_smtprelay.exceptions import SecretDestinationError
from django_smtprelay.models import Route
from tests.test_rotate_secrets import rotate

pytestmark = pytest.mark.django_db

BASIC = "hooks:Never-In-Plain-Sight-77"
KEY = "signing-Never-In-Plain-Sight-88"


def test_webhook_secrets_are_encrypted_at_rest_and_kept_out_of_reprs(esp_route):
    route = esp_route("mailgun", secret=BASIC, signing_key=KEY)
    row = Route.objects.values("webhook_secret_ciphertext", "webhook_signing_key_ciphertext").get()
    for token in row.values():
        assert token and "Never-In-Plain-Sight" not in token
    saved = Route.objects.get(pk=route.pk)
    assert (saved.webhook_secret, saved.webhook_signing_key) == (BASIC, KEY)
    assert "Never-In-Plain-Sight" not in repr(saved)


def test_a_changed_esp_refuses_the_stored_secret(esp_route):
    route = esp_route("postmark", secret=BASIC)
    route.esp = "sendgrid"
    route.save()
    with pytest.raises(SecretDestinationError, match="type it again") as caught:
        _ = Route.objects.get(pk=route.pk).webhook_secret
    assert "Never-In-Plain-Sight" not in str(caught.value)


def test_key_rotation_moves_the_webhook_secrets_too(esp_route, relay_settings):
    route = esp_route("mailgun", secret=BASIC, signing_key=KEY)
    new = Fernet.generate_key()
    relay_settings(ENCRYPTION_KEYS=[new.decode()])
    output = rotate()
    assert "django_smtprelay.route.webhook_secret_ciphertext: 1 re-encrypted" in output
    assert "django_smtprelay.route.webhook_signing_key_ciphertext: 1 re-encrypted" in output
    row = Route.objects.values("webhook_secret_ciphertext", "webhook_signing_key_ciphertext").get()
    for token in row.values():
        Fernet(new).decrypt(token.encode())
    saved = Route.objects.get(pk=route.pk)
    assert (saved.webhook_secret, saved.webhook_signing_key) == (BASIC, KEY)
    assert "Never-In-Plain-Sight" not in output


# The webhook view remembers what it decrypted (per token and key ring) ------------


def test_a_secret_typed_again_takes_over_at_once(client, esp_route, accepted):
    from tests.tracking import payloads
    from tests.tracking.conftest import post

    route = esp_route("postmark", secret=BASIC)
    event = payloads.postmark_delivery("pm-1", "ann@example.net")
    assert post(client, route, event, credentials=BASIC).status_code == 200
    route.webhook_secret = "hooks:the-new-one-99"
    route.save()
    assert post(client, route, event, credentials=BASIC).status_code == 401
    assert post(client, route, event, credentials="hooks:the-new-one-99").status_code == 200


def test_keys_that_no_longer_open_the_secret_refuse_the_post(client, esp_route, settings):
    from tests.tracking import payloads
    from tests.tracking.conftest import post

    route = esp_route("postmark", secret=BASIC)
    event = payloads.postmark_delivery("pm-1", "ann@example.net")
    assert post(client, route, event, credentials=BASIC).status_code == 200
    settings.SECRET_KEY = "another-secret-key-entirely-0123456789"
    settings.SECRET_KEY_FALLBACKS = []
    assert post(client, route, event, credentials=BASIC).status_code == 401
