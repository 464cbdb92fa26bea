"""A direct-to-MX route signs with DKIM like an SMTP route: the signature verifies."""

from __future__ import annotations

import pytest
from django.core.mail import EmailMessage

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.models import DeliveryAttempt, DkimKey
from tests.dkim.conftest import make_key, sender_domain, signatures, verify_all, zone  # noqa: F401

pytestmark = pytest.mark.django_db


def test_an_mx_route_signs(smtp_server, mx_settings, mx_route, make_key, zone):  # noqa: F811
    keys = [make_key("r1"), make_key("e1", DkimKey.Algorithm.ED25519_SHA256)]
    server = smtp_server()
    mx_settings({"mx-ok.multi.test": server})
    mx_route(dkim_sign=True)
    EmailMessage("Direct", "Straight to the MX.\n", "news@sign.test", ["a@multi.test"]).send()
    assert DeliveryEngine().run().sent == 1
    (received,) = server.messages
    # RSA on top: every receiver checks it.
    assert [s[b"s"] for s in signatures(received.data)] == [b"r1", b"e1"]
    assert verify_all(received.data, zone) == [True, True]
    assert sorted(DeliveryAttempt.objects.get().dkim_keys.split()) == sorted(k.name for k in keys)
