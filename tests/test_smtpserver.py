"""The test relays behave like real ones, seen through plain smtplib."""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
import time

import pytest

from tests.smtpserver import SMTPTestServer
from tests.tlscerts import TLSCerts

SENDER = "sender@example.com"
RAW = (
    b"From: sender@example.com\r\n"
    b"To: a@example.net\r\n"
    b"Subject: exact bytes\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b".a line that needs dot-stuffing\r\n"
    b"..two dots\r\n"
    b"caf\xc3\xa9 and trailing spaces   \r\n"
    b"\r\n"
)


def client(server: SMTPTestServer) -> smtplib.SMTP:
    return smtplib.SMTP(*server.address, timeout=5)


def test_accepts_and_records_the_envelope_and_exact_bytes(smtp_server):
    server = smtp_server()
    with client(server) as smtp:
        refused = smtp.sendmail(SENDER, ["a@example.net", "b@example.org"], RAW)
    assert refused == {}
    [message] = server.wait_for(1)
    assert message.mail_from == SENDER
    assert message.rcpt_tos == ("a@example.net", "b@example.org")
    assert message.data == RAW
    assert message.tls is False
    assert message.auth_user is None
    assert message.session == 1
    assert message.mail_options == (f"SIZE={len(RAW)}",)
    assert re.fullmatch(r"250 2\.0\.0 Ok: queued as [0-9A-F]{10}", message.reply)
    assert server.errors == []


def test_advertises_the_extensions_of_a_modern_relay(smtp_server):
    with client(smtp_server()) as smtp:
        smtp.ehlo()
        features = smtp.esmtp_features
    assert {"size", "pipelining", "8bitmime", "smtputf8"} <= features.keys()
    assert features["size"] == "33554432"
    assert "auth" not in features  # no AUTH configured, none offered
    assert "starttls" not in features


def test_disabled_smtputf8_is_neither_offered_nor_accepted(smtp_server):
    server = smtp_server(disable_extensions={"SMTPUTF8", "PIPELINING"})
    with client(server) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("smtputf8")
        assert not smtp.has_extn("pipelining")
        code, _ = smtp.docmd("MAIL", f"FROM:<{SENDER}> SMTPUTF8")
    assert code == 501


def test_size_limit_is_enforced_at_mail_from(smtp_server):
    server = smtp_server(size_limit=100)
    with client(server) as smtp, pytest.raises(smtplib.SMTPSenderRefused) as caught:
        smtp.sendmail(SENDER, ["a@example.net"], b"x" * 200 + b"\r\n")
    assert caught.value.smtp_code == 552
    assert server.attempts == []


def test_per_recipient_rejection_while_others_are_accepted(smtp_server):
    server = smtp_server(
        rcpt_replies={
            "gone@example.net": "550 5.1.1 No such user",
            re.compile(r".*@full\.example"): "452 4.2.2 Mailbox full",
        }
    )
    rcpts = ["ok@example.net", "gone@example.net", "x@full.example"]
    with client(server) as smtp:
        refused = smtp.sendmail(SENDER, rcpts, RAW)
    assert refused == {
        "gone@example.net": (550, b"5.1.1 No such user"),
        "x@full.example": (452, b"4.2.2 Mailbox full"),
    }
    [message] = server.wait_for(1)
    assert message.rcpt_tos == ("ok@example.net",)


def test_recipient_reply_for_the_first_try_only(smtp_server):
    server = smtp_server(rcpt_replies=lambda a: "451 4.7.1 Greylisted", rcpt_reply_times=1)
    with client(server) as smtp:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail(SENDER, ["a@example.net"], RAW)
        assert smtp.sendmail(SENDER, ["a@example.net"], RAW) == {}
    assert len(server.messages) == 1


def test_421_greeting_closes_the_connection(smtp_server):
    server = smtp_server(greeting="421 4.3.2 Service not available", greeting_times=1)
    with pytest.raises(smtplib.SMTPConnectError) as caught:
        client(server)
    assert caught.value.smtp_code == 421
    assert caught.value.smtp_error == b"4.3.2 Service not available"
    # The second connection gets the ordinary greeting.
    with client(server) as smtp:
        assert smtp.noop()[0] == 250
    assert server.sessions == 2


def test_421_reply_closes_the_connection_after_it_is_sent(smtp_server):
    server = smtp_server(mail_reply="421 4.7.0 Too many errors")
    with client(server) as smtp:
        smtp.ehlo()
        assert smtp.mail(SENDER) == (421, b"4.7.0 Too many errors")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            smtp.noop()


@pytest.mark.parametrize(
    ("option", "reply", "error"),
    [
        ("ehlo_reply", "554 5.7.1 Go away", smtplib.SMTPHeloError),
        ("mail_reply", "553 5.7.1 Sender not allowed", smtplib.SMTPSenderRefused),
        ("data_reply", "554 5.5.1 No valid recipients", smtplib.SMTPDataError),
        ("dot_reply", "552 5.3.4 Message too big", smtplib.SMTPDataError),
    ],
)
def test_scripted_replies_reach_the_client(smtp_server, option, reply, error):
    server = smtp_server(**{option: reply, "helo_reply": "554 5.7.1 Go away"})
    with client(server) as smtp, pytest.raises(error) as caught:
        smtp.sendmail(SENDER, ["a@example.net"], RAW)
    code, text = reply.split(" ", 1)
    assert caught.value.smtp_code == int(code)
    assert caught.value.smtp_error == text.encode()
    assert server.messages == []


def test_dot_reply_451_then_success_on_retry(smtp_server):
    server = smtp_server(dot_reply="451 4.3.0 Try again later", dot_reply_times=1)
    with client(server) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as caught:
            smtp.sendmail(SENDER, ["a@example.net"], RAW)
        assert caught.value.smtp_code == 451
        assert smtp.sendmail(SENDER, ["a@example.net"], RAW) == {}
    assert [m.reply[:3] for m in server.attempts] == ["451", "250"]
    assert len(server.wait_for(1)) == 1
    assert server.transactions == 2


def test_dot_reply_can_depend_on_the_message(smtp_server):
    def reply(message):
        return "554 5.7.1 Spam" if b"viagra" in message.data else None

    server = smtp_server(dot_reply=reply)
    with client(server) as smtp:
        with pytest.raises(smtplib.SMTPDataError):
            smtp.sendmail(SENDER, ["a@example.net"], b"Subject: viagra\r\n\r\nx\r\n")
        smtp.sendmail(SENDER, ["a@example.net"], RAW)
    assert [m.data for m in server.messages] == [RAW]


def test_drop_after_dot_disconnects_after_the_data_was_sent(smtp_server):
    server = smtp_server(drop_after_dot=True, drop_after_dot_times=1)
    with client(server) as smtp, pytest.raises(smtplib.SMTPServerDisconnected):
        smtp.sendmail(SENDER, ["a@example.net"], RAW)
    [attempt] = server.attempts
    assert attempt.data == RAW  # the final dot arrived: the server had it all
    assert attempt.reply is None
    assert server.messages == []
    with client(server) as smtp:
        smtp.sendmail(SENDER, ["a@example.net"], RAW)
    assert len(server.wait_for(1)) == 1
    assert server.sessions == 2


def test_slow_end_of_data_reply_times_the_client_out(smtp_server):
    server = smtp_server(dot_delay=1.0)
    with (
        smtplib.SMTP(*server.address, timeout=0.2) as smtp,
        pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"),
    ):
        smtp.sendmail(SENDER, ["a@example.net"], RAW)
    assert server.messages == []


def test_drop_after_data_command(smtp_server):
    server = smtp_server(drop_after_data_cmd=True)
    with client(server) as smtp:
        smtp.ehlo()
        smtp.mail(SENDER)
        smtp.rcpt("a@example.net")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            smtp.data(RAW)
    assert server.attempts == []
    assert server.transactions == 1


def test_starttls_verifies_against_the_test_ca(smtp_server, tls_certs: TLSCerts):
    server = smtp_server(tls="starttls")
    with client(server) as smtp:
        smtp.starttls(context=tls_certs.client_context())
        smtp.sendmail(SENDER, ["a@example.net"], RAW)
    [message] = server.wait_for(1)
    assert message.tls is True


@pytest.mark.parametrize("cert", ["wrong", "wrong_host"])
def test_starttls_verification_fails_with_a_wrong_certificate(smtp_server, tls_certs, cert):
    server = smtp_server(tls="starttls", cert=cert)
    with client(server) as smtp, pytest.raises(ssl.SSLCertVerificationError):
        smtp.starttls(context=tls_certs.client_context())
    assert server.attempts == []


def test_require_tls_refuses_mail_before_starttls(smtp_server, tls_certs):
    server = smtp_server(tls="starttls", require_tls=True)
    with client(server) as smtp:
        smtp.ehlo()
        assert smtp.mail(SENDER)[0] == 530
        smtp.starttls(context=tls_certs.client_context())
        smtp.ehlo()
        assert smtp.mail(SENDER)[0] == 250


def test_starttls_refusal(smtp_server, tls_certs):
    server = smtp_server(tls="starttls", starttls_reply="454 4.7.0 TLS not available")
    with client(server) as smtp, pytest.raises(smtplib.SMTPResponseException) as caught:
        smtp.starttls(context=tls_certs.client_context())
    assert caught.value.smtp_code == 454


@pytest.mark.parametrize(("cert", "ok"), [("good", True), ("wrong", False)])
def test_implicit_tls(smtp_server, tls_certs, cert, ok):
    server = smtp_server(tls="implicit", cert=cert, auth={"relay": "s3cret"})
    context = tls_certs.client_context()
    if not ok:
        with pytest.raises(ssl.SSLCertVerificationError):
            smtplib.SMTP_SSL(*server.address, context=context, timeout=5)
        return
    with smtplib.SMTP_SSL(*server.address, context=context, timeout=5) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("starttls")
        smtp.login("relay", "s3cret")
        smtp.sendmail(SENDER, ["a@example.net"], RAW)
    [message] = server.wait_for(1)
    assert (message.tls, message.auth_user) == (True, "relay")


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_success(smtp_server, tls_certs, mechanism):
    server = smtp_server(tls="starttls", auth={"relay": "s3cret"})
    with client(server) as smtp:
        smtp.starttls(context=tls_certs.client_context())
        smtp.ehlo()
        assert smtp.esmtp_features["auth"].split() == ["LOGIN", "PLAIN"]
        smtp.user, smtp.password = "relay", "s3cret"
        code, _ = smtp.auth(mechanism, getattr(smtp, f"auth_{mechanism.lower()}"))
        assert code == 235
        smtp.sendmail(SENDER, ["a@example.net"], RAW)
    assert server.wait_for(1)[0].auth_user == "relay"


def test_auth_wrong_password_is_535_and_mail_needs_auth(smtp_server, tls_certs):
    server = smtp_server(tls="starttls", auth={"relay": "s3cret"})
    with client(server) as smtp:
        smtp.starttls(context=tls_certs.client_context())
        with pytest.raises(smtplib.SMTPAuthenticationError) as caught:
            smtp.login("relay", "wrong")
        assert caught.value.smtp_code == 535
        assert caught.value.smtp_error.startswith(b"5.7.8")
        assert smtp.mail(SENDER)[0] == 530


def test_auth_is_not_offered_and_refused_over_plaintext(smtp_server):
    server = smtp_server(auth={"relay": "s3cret"})
    with client(server) as smtp:
        with pytest.raises(smtplib.SMTPNotSupportedError):
            smtp.login("relay", "s3cret")
        assert smtp.docmd("AUTH", "PLAIN AHJlbGF5AHMzY3JldA==")[0] == 538
        assert smtp.mail(SENDER)[0] == 530


def test_auth_over_plaintext_when_allowed(smtp_server):
    server = smtp_server(auth={"relay": "s3cret"}, auth_allow_plaintext=True)
    with client(server) as smtp:
        smtp.login("relay", "s3cret")
        smtp.sendmail(SENDER, ["a@example.net"], RAW)
    assert server.wait_for(1)[0].auth_user == "relay"


def test_sessions_and_transactions_are_counted(smtp_server):
    server = smtp_server()
    with client(server) as smtp:
        smtp.sendmail(SENDER, ["a@example.net"], RAW)
        smtp.sendmail(SENDER, ["b@example.net"], RAW)
    with client(server) as smtp:
        smtp.sendmail(SENDER, ["c@example.net"], RAW)
    assert (server.sessions, server.transactions) == (2, 3)
    assert [m.session for m in server.wait_for(3)] == [1, 1, 2]


def test_wait_for_times_out_with_what_it_saw(smtp_server):
    server = smtp_server()
    with pytest.raises(TimeoutError, match="expected 1 accepted message"):
        server.wait_for(1, timeout=0.05)


def test_servers_listen_only_on_loopback():
    with pytest.raises(ValueError, match="listen only on"):
        SMTPTestServer(host="0.0.0.0")
    with pytest.raises(TypeError):
        SMTPTestServer(dot_replies="typo")


def test_refused_port_refuses(refused_port):
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", refused_port), timeout=2).close()


def test_stop_closes_open_sessions_quickly(tls_certs):
    server = SMTPTestServer(tls_certs=tls_certs, tls="starttls").start()
    idle = client(server)
    secure = client(server)
    secure.starttls(context=tls_certs.client_context())
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1
    for smtp in (idle, secure):
        with pytest.raises(smtplib.SMTPServerDisconnected):
            smtp.noop()
    assert server.errors == []


def test_ipv6_loopback(smtp_server):
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    server = smtp_server(host="::1")
    with smtplib.SMTP("::1", server.port, timeout=5) as smtp:
        smtp.sendmail(SENDER, ["a@example.net"], RAW)
    assert server.wait_for(1)[0].data == RAW
