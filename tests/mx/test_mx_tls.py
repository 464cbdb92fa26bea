"""STARTTLS and MTA-STS on direct-to-MX routes, against loopback servers."""

from __future__ import annotations

import ssl

import pytest
from django.core.mail import EmailMessage

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.domains.resolver import Resolver
from django_smtprelay.models import DeliveryAttempt, Message, Recipient, Route
from django_smtprelay.transports import sts_policies
from tests.httpsserver import Page

pytestmark = pytest.mark.django_db


def queue(*to: str) -> Message:
    EmailMessage("Hello", "Body", "sender@example.com", list(to)).send()
    return Message.objects.latest("pk")


def outcome(message: Message) -> tuple[str, str]:
    """The recipient's status and the reply on its attempt (or its deferral's reason)."""
    rcpt = message.recipients.get()
    return rcpt.status, message.attempts.latest("pk").reply or rcpt.reply


def test_opportunistic_tls_with_a_valid_certificate_says_verified(
    smtp_server, mx_settings, mx_route, mx_tls_context
):
    server = smtp_server(tls="starttls", tls_context=mx_tls_context)
    mx_settings({"mx.tls.test": server})
    mx_route()
    status, reply = outcome_after(queue("a@tls.test"))
    assert status == Recipient.Status.DELIVERED
    assert "mx.tls.test [127.0.0.1], TLS verified" in reply
    assert server.messages[0].tls


def outcome_after(message: Message) -> tuple[str, str]:
    DeliveryEngine().run()
    return outcome(message)


def test_an_untrusted_certificate_does_not_stop_opportunistic_delivery(
    smtp_server, mx_settings, mx_route
):
    server = smtp_server(tls="starttls", cert="wrong")  # self-signed
    mx_settings({"mx.tls.test": server})
    mx_route()
    status, reply = outcome_after(queue("a@tls.test"))
    assert status == Recipient.Status.DELIVERED
    assert "TLS not verified (certificate: " in reply
    assert server.messages[0].tls  # encrypted all the same


def test_without_starttls_opportunistic_delivery_is_plaintext_and_says_so(
    smtp_server, mx_settings, mx_route
):
    server = smtp_server()
    mx_settings({"mx.tls.test": server})
    mx_route()
    status, reply = outcome_after(queue("a@tls.test"))
    assert status == Recipient.Status.DELIVERED
    assert "no TLS (STARTTLS not offered)" in reply


@pytest.mark.parametrize(("tls", "cert"), [(None, "good"), ("starttls", "wrong")])
def test_a_route_that_requires_verified_tls_defers_without_it(
    smtp_server, mx_settings, mx_route, tls, cert
):
    server = smtp_server(tls=tls, cert=cert)
    mx_settings({"mx.tls.test": server})
    mx_route(mx_tls=Route.MXTLS.VERIFIED)
    status, reply = outcome_after(queue("a@tls.test"))
    assert status == Recipient.Status.DEFERRED
    assert "no MX host of tls.test took the message" in reply
    why = "STARTTLS not offered, and verified TLS is required" if tls is None else "certificate"
    assert why in reply
    assert not server.messages


def test_a_route_that_requires_verified_tls_delivers_with_it(
    smtp_server, mx_settings, mx_route, mx_tls_context
):
    server = smtp_server(tls="starttls", tls_context=mx_tls_context)
    mx_settings({"mx.tls.test": server})
    mx_route(mx_tls=Route.MXTLS.VERIFIED)
    status, reply = outcome_after(queue("a@tls.test"))
    assert status == Recipient.Status.DELIVERED
    assert "TLS verified" in reply


def test_mta_sts_enforce_delivers_only_to_the_hosts_its_policy_names(
    smtp_server, mx_settings, mx_route, mx_tls_context
):
    unnamed = smtp_server()  # preferred, but not in the policy
    named = smtp_server(tls="starttls", tls_context=mx_tls_context)
    mx_settings({"other.sts-enforce.test": unnamed, "mx.sts-enforce.test": named})
    mx_route()
    status, reply = outcome_after(queue("a@sts-enforce.test"))
    assert status == Recipient.Status.DELIVERED
    assert "mx.sts-enforce.test [127.0.0.1], TLS verified" in reply
    assert unnamed.sessions == 0


def test_mta_sts_enforce_defers_when_the_named_host_has_no_valid_certificate(
    smtp_server, mx_settings, mx_route
):
    unnamed = smtp_server()
    named = smtp_server(tls="starttls", cert="wrong")
    mx_settings({"other.sts-enforce.test": unnamed, "mx.sts-enforce.test": named})
    mx_route()
    message = queue("a@sts-enforce.test")
    status, reply = outcome_after(message)
    assert status == Recipient.Status.DEFERRED
    assert "MTA-STS enforce" in reply
    assert "other.sts-enforce.test: not named by the MTA-STS policy" in reply
    assert "no verified TLS with mx.sts-enforce.test" in reply
    assert not named.messages and unnamed.sessions == 0
    assert message.attempts.get().outcome == DeliveryAttempt.Outcome.TRANSIENT


def test_mta_sts_testing_delivers_and_records_the_failure(smtp_server, mx_settings, mx_route):
    server = smtp_server()
    mx_settings({"mx.sts-testing.test": server})
    mx_route()
    status, reply = outcome_after(queue("a@sts-testing.test"))
    assert status == Recipient.Status.DELIVERED
    assert "MTA-STS testing: host not in the policy" in reply
    assert "MTA-STS testing: no verified TLS" in reply


def test_policies_are_cached_by_record_id_until_max_age(mx_settings, sts_server, monkeypatch):
    before = len(sts_server.requests)
    first = sts_policies.policy_for("sts-enforce.test", Resolver())
    again = sts_policies.policy_for("sts-enforce.test", Resolver())
    assert first.mode == again.mode == "enforce"
    assert len(sts_server.requests) == before + 1  # the same id: not fetched again
    # A new id in the record fetches the policy again.
    monkeypatch.setattr(Resolver, "txt", lambda self, name: ["v=STSv1; id=2"])
    assert sts_policies.policy_for("sts-enforce.test", Resolver()).mode == "enforce"
    assert len(sts_server.requests) == before + 2


def test_an_unreachable_policy_leaves_a_cached_one_in_force(mx_settings, sts_server, monkeypatch):
    sts_policies.policy_for("sts-enforce.test", Resolver())
    monkeypatch.setattr(Resolver, "txt", lambda self, name: ["v=STSv1; id=3"])
    monkeypatch.setitem(sts_server.pages, "mta-sts.sts-enforce.test", Page(b"gone", status=404))
    assert sts_policies.policy_for("sts-enforce.test", Resolver()).mode == "enforce"
    # With nothing cached, the same failure means no policy, and says why.
    sts_policies.clear_cache()
    lookup = sts_policies.policy_for("sts-enforce.test", Resolver())
    assert lookup.policy is None and "HTTP 404" in lookup.problem


def test_the_policy_cache_is_bounded(mx_settings, monkeypatch):
    monkeypatch.setattr(sts_policies, "MAX_POLICIES", 3)
    from django_smtprelay.domains.mta_sts import Policy

    for number in range(5):
        sts_policies._store(f"d{number}.test", sts_policies._Cached("1", Policy("none"), 1e12))
    assert list(sts_policies._cache) == ["d2.test", "d3.test", "d4.test"]


@pytest.fixture
def no_shared_cipher(tls_certs) -> ssl.SSLContext:
    """A server context no client default shares a cipher with: the handshake fails."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_certs.cert_file, tls_certs.key_file)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE-ECDSA-NULL-SHA:@SECLEVEL=0")
    return context


def test_a_failed_tls_handshake_falls_back_to_plaintext_when_opportunistic(
    smtp_server, mx_settings, mx_route, no_shared_cipher
):
    server = smtp_server(tls="starttls", tls_context=no_shared_cipher)
    mx_settings({"mx.tls.test": server})
    mx_route()
    status, reply = outcome_after(queue("a@tls.test"))
    assert status == Recipient.Status.DELIVERED
    assert "no TLS (an earlier TLS handshake failed)" in reply
    assert server.sessions == 2 and not server.messages[0].tls


def test_a_failed_tls_handshake_defers_when_tls_is_required(
    smtp_server, mx_settings, mx_route, no_shared_cipher
):
    server = smtp_server(tls="starttls", tls_context=no_shared_cipher)
    mx_settings({"mx.tls.test": server})
    mx_route(mx_tls=Route.MXTLS.VERIFIED)
    status, reply = outcome_after(queue("a@tls.test"))
    assert status == Recipient.Status.DEFERRED
    assert "TLS" in reply and not server.messages
