"""Messages signed by the worker arrive at a real relay and verify with dkimpy
against the keys the loopback DNS server publishes."""

from __future__ import annotations

import pytest
from django.core.mail import EmailMessage, EmailMultiAlternatives

from django_smtprelay.delivery import DeliveryEngine, content, loading
from django_smtprelay.models import DeliveryAttempt, DkimKey, Message, Recipient
from tests.dkim.conftest import signatures, verify_all

pytestmark = pytest.mark.django_db

RSA, ED25519 = DkimKey.Algorithm.RSA_SHA256, DkimKey.Algorithm.ED25519_SHA256
FROM = "Sender <news@sign.test>"


def plain() -> EmailMessage:
    return EmailMessage(
        "Plain  subject", "Hello,\n\nline with trailing space \n.dot line\n\n\n", FROM, ["a@x.test"]
    )


def multipart() -> EmailMessage:
    email = EmailMultiAlternatives(
        "Alternatives", "Text part", FROM, ["a@x.test"], cc=["c@x.test"], reply_to=["r@x.test"]
    )
    email.attach_alternative("<p>HTML part</p>", "text/html")
    email.extra_headers["List-Unsubscribe"] = "<mailto:unsub@sign.test>"
    email.extra_headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return email


def attachment() -> EmailMessage:
    email = EmailMessage("Attachment", "See attached.", FROM, ["a@x.test"])
    email.attach("report.bin", bytes(range(256)) * 40, "application/octet-stream")
    email.attach("notes.txt", "notes\n" * 50, "text/plain")
    return email


def non_ascii() -> EmailMessage:
    return EmailMessage(
        "Grüße, ça va? 日本語",
        "Größe: ½ — naïve café\n" * 40,
        "Sénder Ünïcode <news@sign.test>",
        ["Jürgen <j@x.test>", "a@x.test"],
    )


MESSAGES = {"plain": plain, "multipart": multipart, "attachment": attachment, "8bit": non_ascii}


@pytest.mark.parametrize("kind", list(MESSAGES))
@pytest.mark.parametrize(
    "algorithms", [(RSA,), (ED25519,), (RSA, ED25519)], ids=["rsa", "ed25519", "dual"]
)
def test_delivered_messages_verify(kind, algorithms, smtp_server, make_route, make_key, zone):
    server = smtp_server()
    make_route(server, dkim_sign=True)
    keys = [make_key(f"k{i}", algorithm) for i, algorithm in enumerate(algorithms)]
    MESSAGES[kind]().send()
    assert DeliveryEngine().run().sent == 1
    (received,) = server.messages
    found = signatures(received.data)
    # RSA on top: the signature every receiver verifies (some check only the first).
    assert [s[b"a"].decode() for s in found] == list(algorithms)
    assert all(s[b"d"] == b"sign.test" and s[b"c"] == b"relaxed/relaxed" for s in found)
    assert verify_all(received.data, zone) == [True] * len(algorithms)
    attempt = DeliveryAttempt.objects.get()
    assert sorted(attempt.dkim_keys.split()) == sorted(k.name for k in keys)


def test_the_headers_receivers_expect_are_signed_and_from_over_signed(
    smtp_server, make_route, make_key, zone
):
    server = smtp_server()
    make_route(server, dkim_sign=True)
    make_key()
    multipart().send()
    DeliveryEngine().run()
    (signature,) = signatures(server.messages[0].data)
    signed = [h.strip() for h in signature[b"h"].decode().split(":")]
    assert signed.count("from") == 2
    for name in (
        "to",
        "cc",
        "subject",
        "date",
        "message-id",
        "reply-to",
        "mime-version",
        "content-type",
        "list-unsubscribe",
        "list-unsubscribe-post",
    ):
        assert name in signed
    assert "bcc" not in signed and "received" not in signed


def test_a_changed_message_no_longer_verifies(smtp_server, make_route, make_key, zone):
    server = smtp_server()
    make_route(server, dkim_sign=True)
    make_key()
    plain().send()
    DeliveryEngine().run()
    data = server.messages[0].data
    assert verify_all(data, zone) == [True]
    assert verify_all(data.replace(b"Hello", b"Hallo"), zone) == [False]
    assert verify_all(data.replace(b"Plain  subject", b"Other subject"), zone) == [False]


def test_a_large_streamed_message_is_signed(monkeypatch, smtp_server, make_route, make_key, zone):
    # Stream every message above 1,000 bytes, in chunks of 7: the body is hashed
    # across every kind of chunk boundary, never loaded whole.
    monkeypatch.setattr(content, "STREAM_ABOVE", 1000)
    monkeypatch.setattr(loading, "STREAM_ABOVE", 1000)
    monkeypatch.setattr(content, "CHUNK", 7)
    server = smtp_server()
    make_route(server, dkim_sign=True)
    make_key("r1", RSA)
    make_key("e1", ED25519)
    body = "".join(f".{i} \t trailing \n..line {i}\n\n.\r\n" for i in range(80)) + "\n\n\n"
    EmailMessage("Large", body, FROM, ["a@x.test"]).send()
    assert Message.objects.get().size > 1000
    assert DeliveryEngine().run().sent == 1
    assert verify_all(server.messages[0].data, zone) == [True, True]


def test_a_large_8bit_message_is_made_7bit_then_signed(
    monkeypatch, smtp_server, make_route, make_key, zone
):
    monkeypatch.setattr(content, "STREAM_ABOVE", 1000)
    monkeypatch.setattr(loading, "STREAM_ABOVE", 1000)
    server = smtp_server()
    make_route(server, dkim_sign=True)
    make_key()
    non_ascii().send()
    message = Message.objects.get()
    assert not bytes(message.raw).isascii() and message.size > 1000
    assert DeliveryEngine().run().sent == 1
    data = server.messages[0].data
    assert data.isascii()  # RFC 6376 5.3: no relay can break it by converting it later
    assert verify_all(data, zone) == [True]


def test_no_key_for_the_from_domain_sends_unsigned(smtp_server, make_route, zone, sender_domain):
    server = smtp_server()
    make_route(server, dkim_sign=True)
    EmailMessage("Hi", "Body", "someone@other.test", ["a@x.test"]).send()
    plain().send()  # sign.test has no key either
    assert DeliveryEngine().run().sent == 2
    assert [signatures(m.data) for m in server.messages] == [[], []]
    assert set(DeliveryAttempt.objects.values_list("dkim_keys", flat=True)) == {""}


def test_a_route_that_does_not_sign_sends_unsigned(smtp_server, make_route, make_key):
    server = smtp_server()
    make_route(server)
    make_key()
    plain().send()
    DeliveryEngine().run()
    assert signatures(server.messages[0].data) == []


def test_a_subdomain_is_signed_with_its_parent_domains_key(smtp_server, make_route, make_key, zone):
    server = smtp_server()
    make_route(server, dkim_sign=True)
    make_key()
    EmailMessage("Hi", "Body", "news@mail.sign.test", ["a@x.test"]).send()
    DeliveryEngine().run()
    data = server.messages[0].data
    assert [s[b"d"] for s in signatures(data)] == [b"sign.test"]
    assert verify_all(data, zone) == [True]


def test_an_inactive_key_does_not_sign(smtp_server, make_route, make_key):
    server = smtp_server()
    make_route(server, dkim_sign=True)
    make_key(activate=False)
    plain().send()
    DeliveryEngine().run()
    assert signatures(server.messages[0].data) == []


def test_rotation_signs_with_the_new_key_while_the_old_still_verifies(
    smtp_server, make_route, make_key, zone
):
    server = smtp_server()
    make_route(server, dkim_sign=True)
    old = make_key("2025a")
    plain().send()
    DeliveryEngine().run()
    new = make_key("2026a")
    old.refresh_from_db()
    assert new.active and not old.active
    plain().send()
    DeliveryEngine().run()
    first, second = (m.data for m in server.messages)
    assert [s[b"s"] for s in signatures(first)] == [b"2025a"]
    assert [s[b"s"] for s in signatures(second)] == [b"2026a"]
    # The old record stays published: mail it signed still verifies.
    assert verify_all(first, zone) == [True] and verify_all(second, zone) == [True]
    by_key = dict(
        DeliveryAttempt.objects.values_list("message_id", "dkim_keys").order_by("message_id")
    )
    assert list(by_key.values()) == [old.name, new.name]


def test_an_unreadable_key_is_a_route_fault_for_its_messages_only(
    smtp_server, make_route, make_key, caplog
):
    server = smtp_server()
    make_route(server, dkim_sign=True)
    key = make_key()
    DkimKey.objects.filter(pk=key.pk).update(private_key_ciphertext="gAAAAA-not-a-token")
    plain().send()
    EmailMessage("Hi", "Body", "someone@other.test", ["a@x.test"]).send()
    report = DeliveryEngine().run()
    # The other domain's message went out; this one waits, never sent unsigned.
    assert report.sent == 1 and report.deferred == 1
    assert [m.mail_from for m in server.messages] == ["someone@other.test"]
    fault = DeliveryAttempt.objects.get(outcome=DeliveryAttempt.Outcome.ROUTE_FAULT)
    assert fault.reply.startswith(f"DKIM signing failed: the DKIM key {key.name} cannot be opened")
    assert fault.exception == "SigningError"
    recipient = Recipient.objects.get(message__from_email="news@sign.test")
    assert recipient.status == Recipient.Status.DEFERRED
    assert "DKIM signing failed" in recipient.reply


def test_a_key_sealed_to_another_name_is_refused(smtp_server, make_route, make_key, zone):
    server = smtp_server()
    make_route(server, dkim_sign=True)
    key = make_key()
    other = DkimKey.generate(key.domain, "s2", RSA)
    # The sealed key of s2 copied onto s1: sealed to s2's name, it is not used for s1.
    DkimKey.objects.filter(pk=key.pk).update(private_key_ciphertext=other.private_key_ciphertext)
    plain().send()
    DeliveryEngine().run()
    assert server.messages == []
    fault = DeliveryAttempt.objects.get()
    assert "s2._domainkey.sign.test" in fault.reply and "s1._domainkey.sign.test" in fault.reply


def test_any_error_while_signing_is_a_route_fault_for_that_message_and_the_batch_goes_on(
    monkeypatch, smtp_server, make_route, make_key, caplog
):
    """Not only a key that cannot be opened: a database error reading keys, a
    failing read of a streamed body, a bug in the signer. The batch's other
    results are still written, and the message is never sent unsigned."""
    from django.db import OperationalError

    from django_smtprelay.delivery import signing

    server = smtp_server()
    make_route(server, dkim_sign=True)
    make_key()

    def broken(from_domain: str):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(signing.Signatures, "_load", staticmethod(broken))
    plain().send()
    EmailMessage("Hi", "Body", "someone@other.test", ["a@x.test"]).send()
    plain().send()
    report = DeliveryEngine().run()
    assert report.sent == 0 and report.deferred == 3
    assert server.messages == []
    faults = DeliveryAttempt.objects.filter(outcome=DeliveryAttempt.Outcome.ROUTE_FAULT)
    assert faults.count() == 3
    assert {f.reply for f in faults} == {
        "DKIM signing failed: unexpected OperationalError while signing"
    }
    assert "server closed" not in " ".join(f.reply for f in faults)
    assert "signing message" in caplog.text
