"""Seal stored relay passwords to the destination each route has now.

Passwords stored before sealing are bound to nothing; from now on a password
is refused by a route whose host, port or security differ from the ones it
was typed for. This binds each existing one to its route's current
destination (the one it has been sent to so far). A token that no
configured key opens is left as it is: it was unusable before, too.
"""

from django.db import migrations


def _destination(route):
    from django_smtprelay import sealing

    return sealing.destination(
        kind=route.kind,
        host=route.host,
        port=route.port,
        security=route.security,
        verify_certificate=route.verify_certificate,
        allow_plaintext_auth=route.allow_plaintext_auth,
    )


def seal(apps, schema_editor):
    from django_smtprelay import sealing
    from django_smtprelay.exceptions import SecretDecryptionError

    Route = apps.get_model("django_smtprelay", "Route")
    for route in Route.objects.exclude(password_ciphertext=""):
        try:
            token = sealing.reseal_legacy(route.password_ciphertext, _destination(route))
        except SecretDecryptionError:
            continue
        if token != route.password_ciphertext:
            Route.objects.filter(pk=route.pk).update(password_ciphertext=token)


def unseal(apps, schema_editor):
    from django_smtprelay import crypto, sealing
    from django_smtprelay.exceptions import SecretDecryptionError

    Route = apps.get_model("django_smtprelay", "Route")
    for route in Route.objects.exclude(password_ciphertext=""):
        try:
            if sealing.sealed_to(route.password_ciphertext) is None:
                continue
            secret = sealing.unseal(route.password_ciphertext, _destination(route))
        except (SecretDecryptionError, sealing.SecretDestinationError):
            continue
        Route.objects.filter(pk=route.pk).update(password_ciphertext=crypto.encrypt(secret))


class Migration(migrations.Migration):
    dependencies = [("django_smtprelay", "0004_recipient_status_cancelled")]

    operations = [migrations.RunPython(seal, unseal, elidable=True)]
