"""DKIM keys: generated, sealed, published as the TXT record says; never shown back."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from django_smtprelay.exceptions import SecretDestinationError
from django_smtprelay.models import DkimKey, Route
from django_smtprelay.signing import keys
from django_smtprelay.signing.signer import SigningKey

pytestmark = pytest.mark.django_db

RSA, ED25519 = DkimKey.Algorithm.RSA_SHA256, DkimKey.Algorithm.ED25519_SHA256


def test_rsa_key_record_is_split_into_255_character_strings(sender_domain):
    key = DkimKey.generate(sender_domain, "S1", RSA)
    assert key.selector == "s1" and key.name == "s1._domainkey.sign.test"
    assert key.txt_record.startswith("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A")
    strings = key.txt_strings
    assert len(strings) == 2 and len(strings[0]) == 255 and "".join(strings) == key.txt_record
    assert keys.load_private_key(key.private_key).key_size == 2048
    assert not key.active


def test_ed25519_key_record(sender_domain):
    key = DkimKey.generate(sender_domain, "e1", ED25519)
    assert key.txt_record.startswith("v=DKIM1; k=ed25519; p=")
    assert len(key.txt_strings) == 1
    assert keys.public_key_b64(key.private_key) == key.public_key


def test_the_private_key_is_never_in_repr_or_str(sender_domain):
    key = DkimKey.generate(sender_domain, "s1", RSA)
    pem = key.private_key
    body = pem.splitlines()[1]
    for text in (repr(key), str(key)):
        assert body not in text and key.private_key_ciphertext not in text
    signing = SigningKey("sign.test", "s1", RSA, keys.load_private_key(pem))
    assert "private" not in repr(signing) and body not in repr(signing)


def test_a_key_is_sealed_to_its_own_name(sender_domain):
    key = DkimKey.generate(sender_domain, "s1", RSA)
    key.selector = "s2"
    with pytest.raises(SecretDestinationError, match=r"s1\._domainkey\.sign\.test"):
        key.private_key  # noqa: B018


def test_one_active_key_per_algorithm_and_activation_retires_the_old(sender_domain):
    old = DkimKey.generate(sender_domain, "a", RSA)
    old.activate()
    ed = DkimKey.generate(sender_domain, "e", ED25519)
    ed.activate()
    new = DkimKey.generate(sender_domain, "b", RSA)
    new.activate()
    assert set(DkimKey.objects.filter(active=True).values_list("selector", flat=True)) == {
        "b",
        "e",
    }
    with pytest.raises(IntegrityError), transaction.atomic():
        DkimKey.objects.filter(selector="a").update(active=True)


def test_an_esp_route_cannot_sign():
    route = Route(name="esp", kind=Route.Kind.ANYMAIL, esp="postmark", dkim_sign=True)
    with pytest.raises(ValidationError) as raised:
        route.clean()
    assert "ESP route cannot sign" in str(raised.value.message_dict["dkim_sign"])
    smtp = Route(name="smtp", host="relay.test", dkim_sign=True)
    smtp.clean()


def test_rotating_the_encryption_key_moves_dkim_keys_too(sender_domain, relay_settings, settings):
    from io import StringIO

    from cryptography.fernet import Fernet
    from django.core.management import call_command

    key = DkimKey.generate(sender_domain, "s1", RSA)
    pem = key.private_key
    new = Fernet.generate_key()
    relay_settings(ENCRYPTION_KEYS=[new.decode()])
    out = StringIO()
    call_command("smtprelay_rotate_secrets", stdout=out, stderr=out)
    assert "django_smtprelay.dkimkey.private_key_ciphertext: 1 re-encrypted" in out.getvalue()
    settings.SECRET_KEY = "an-unrelated-secret-key"
    settings.SECRET_KEY_FALLBACKS = []
    assert DkimKey.objects.get(pk=key.pk).private_key == pem
    assert pem.splitlines()[1] not in out.getvalue()
