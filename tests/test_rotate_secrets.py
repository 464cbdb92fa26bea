"""Key rotation: secrets saved under an older key stay readable and move to the newest one."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.management import CommandError, call_command

from django_smtprelay import crypto
from django_smtprelay.models import Route

SECRET = "Rotate-Me-Not-In-Output-42"
pytestmark = pytest.mark.django_db


@pytest.fixture
def dkim_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def rotate(*args: str) -> str:
    out, err = StringIO(), StringIO()
    try:
        call_command("smtprelay_rotate_secrets", *args, stdout=out, stderr=err)
    finally:
        rotate.output = out.getvalue() + err.getvalue()  # type: ignore[attr-defined]
    return rotate.output  # type: ignore[attr-defined]


def tokens() -> list[dict[str, Any]]:
    return list(
        Route.objects.order_by("pk").values(
            "pk", "password_ciphertext", "dkim_private_key_ciphertext"
        )
    )


def test_a_secret_saved_before_encryption_keys_was_set_still_decrypts(
    make_route, refused_port, relay_settings
):
    route = make_route(port=refused_port, password=SECRET)  # key derived from SECRET_KEY
    new = Fernet.generate_key()
    relay_settings(ENCRYPTION_KEYS=[new.decode()])
    assert Route.objects.get(pk=route.pk).password == SECRET
    # New secrets are encrypted with the configured key, not the derived one.
    assert Fernet(new).decrypt(crypto.encrypt("fresh").encode()) == b"fresh"


def test_the_command_moves_every_secret_to_the_newest_key(
    make_route, refused_port, relay_settings, settings, dkim_pem
):
    route = make_route(port=refused_port, password=SECRET)
    route.dkim_private_key = dkim_pem
    route.save()
    make_route(port=refused_port)  # no secrets: nothing to rotate
    new = Fernet.generate_key()
    relay_settings(ENCRYPTION_KEYS=[new.decode()])

    output = rotate()

    assert "django_smtprelay.route.password_ciphertext: 1 re-encrypted" in output
    assert "django_smtprelay.route.dkim_private_key_ciphertext: 1 re-encrypted" in output
    row = Route.objects.values("password_ciphertext", "dkim_private_key_ciphertext").get(
        pk=route.pk
    )
    for token in row.values():
        Fernet(new).decrypt(token.encode())  # readable with the new key alone
    # The old SECRET_KEY is gone for good: only the new key is left to read them.
    settings.SECRET_KEY = "an-unrelated-secret-key"
    settings.SECRET_KEY_FALLBACKS = []
    saved = Route.objects.get(pk=route.pk)
    assert (saved.password, saved.dkim_private_key) == (SECRET, dkim_pem)
    assert SECRET not in output and dkim_pem.splitlines()[1] not in output


def test_a_dry_run_writes_nothing(make_route, refused_port, relay_settings):
    make_route(port=refused_port, password=SECRET)
    relay_settings(ENCRYPTION_KEYS=[Fernet.generate_key().decode()])
    before = tokens()
    output = rotate("--dry-run")
    assert "password_ciphertext: 1 to re-encrypt (dry run" in output
    assert tokens() == before
    assert SECRET not in output


def test_a_token_no_key_decrypts_stops_the_command_before_it_writes_anything(
    make_route, refused_port, relay_settings
):
    readable = make_route(port=refused_port, password=SECRET, name="readable")
    stranded = make_route(port=refused_port, name="stranded")
    foreign = Fernet(Fernet.generate_key()).encrypt(SECRET.encode()).decode()
    Route.objects.filter(pk=stranded.pk).update(password_ciphertext=foreign)
    relay_settings(ENCRYPTION_KEYS=[Fernet.generate_key().decode()])
    before = tokens()

    with pytest.raises(CommandError) as caught:
        rotate()

    message = str(caught.value)
    assert "'stranded'" in message and "password_ciphertext" in message
    assert "nothing was changed" in message
    assert "readable" not in message
    assert SECRET not in message and foreign not in message
    assert SECRET not in rotate.output  # type: ignore[attr-defined]
    assert tokens() == before
    assert Route.objects.get(pk=readable.pk).password == SECRET
