"""The submission listener with real clients (smtplib): logins, senders, TLS,
trusted networks, sizes and what is stored."""

from __future__ import annotations

import base64
import smtplib
import socket
import ssl
import threading

import pytest

from django_smtprelay import signals
from django_smtprelay.models import Message, SubmissionAccount
from tests.submission.harness import (
    PASSWORD,
    client,
    make_account,
    message,
    strip_received,
)


def test_an_account_submits_over_starttls_and_the_bytes_are_stored_as_sent(listener, tls_certs):
    server = listener()
    account = make_account(route_tag="bulk")
    raw = message()
    with client(server.port(), tls_certs.ca_file) as smtp:
        smtp.login("cron", PASSWORD)
        smtp.sendmail("cron@example.com", ["ops@example.net", "dev@example.net"], raw)
    stored = Message.objects.get()
    received, rest = strip_received(stored.raw)
    assert rest == raw
    assert received.startswith(b"Received: from client.example ([127.0.0.1])")
    assert b"by mx.test.example" in received and b"with ESMTPSA;" in received
    assert stored.from_email == "cron@example.com"
    assert sorted(stored.recipients.values_list("address", flat=True)) == [
        "dev@example.net",
        "ops@example.net",
    ]
    assert (stored.subject, stored.message_id) == ("Nightly backup", "<backup-1@example.com>")
    assert stored.route_hint == "bulk" and stored.submission_account_id == account.pk
    assert stored.size == len(stored.raw) and stored.status == Message.Status.QUEUED


def test_implicit_tls_and_auth_login(listener, tls_certs):
    server = listener()
    make_account()
    context = ssl.create_default_context(cafile=str(tls_certs.ca_file))
    with smtplib.SMTP_SSL("127.0.0.1", server.port("tls"), context=context, timeout=10) as smtp:
        smtp.ehlo("client.example")
        assert "LOGIN" in smtp.esmtp_features["auth"]
        for feature in ("size", "8bitmime", "smtputf8", "pipelining"):
            assert feature in smtp.esmtp_features, feature
        smtp.user, smtp.password = "cron", PASSWORD
        code, _ = smtp.auth("LOGIN", smtp.auth_login, initial_response_ok=False)
        assert code == 235
        smtp.sendmail("anyone@example.org", ["ops@example.net"], message(sender="x@example.org"))
    assert Message.objects.get().from_email == "anyone@example.org"


def test_a_wrong_password_is_refused_and_counted_per_client_and_never_logged(
    listener, tls_certs, relay_settings, caplog
):
    server = listener(SUBMISSION_LOGIN_FAILURE_LIMIT=2)
    make_account()

    def plain(password: str) -> str:
        return "PLAIN " + base64.b64encode(f"\0cron\0{password}".encode()).decode()

    with client(server.port(), tls_certs.ca_file) as smtp:
        for _ in range(2):
            code, reply = smtp.docmd("AUTH", plain("wrong password 1234"))
            assert code == 535, reply
    with client(server.port(), tls_certs.ca_file) as smtp:
        # The right password too, now: this address has failed too often.
        code, reply = smtp.docmd("AUTH", plain(PASSWORD))
    assert code == 421 and b"Too many failed logins" in reply
    assert "wrong password 1234" not in caplog.text
    assert "Failed login for 'cron' from 127.0.0.1" in caplog.text
    assert not Message.objects.exists()


def test_a_disabled_account_cannot_log_in(listener, tls_certs):
    server = listener()
    make_account(enabled=False)
    with (
        client(server.port(), tls_certs.ca_file) as smtp,
        pytest.raises(smtplib.SMTPAuthenticationError),
    ):
        smtp.login("cron", PASSWORD)


def test_no_login_no_mail_and_no_login_without_tls(listener, tls_certs):
    server = listener()
    make_account()
    with client(server.port(), tls_certs.ca_file, starttls=False) as smtp:
        assert "auth" not in smtp.esmtp_features
        assert "starttls" in smtp.esmtp_features
        code, reply = smtp.docmd("AUTH", "PLAIN AGNyb24AY29ycmVjdA==")
        assert code == 538, reply
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp.sendmail("cron@example.com", ["ops@example.net"], message())
        assert refused.value.smtp_code == 530
    # TLS, but no login.
    with client(server.port(), tls_certs.ca_file) as smtp, pytest.raises(smtplib.SMTPSenderRefused):
        smtp.sendmail("cron@example.com", ["ops@example.net"], message())
    assert not Message.objects.exists()


def test_login_without_tls_on_loopback_when_allowed(listener, tls_certs):
    server = listener(SUBMISSION_AUTH_WITHOUT_TLS_ON_LOOPBACK=True)
    make_account()
    with client(server.port(), tls_certs.ca_file, starttls=False) as smtp:
        smtp.login("cron", PASSWORD)
        smtp.sendmail("cron@example.com", ["ops@example.net"], message())
    received, _ = strip_received(Message.objects.get().raw)
    assert b"with ESMTPA;" in received


def test_a_foreign_sender_is_refused_no_open_relay(listener, tls_certs):
    server = listener()
    account = make_account()
    with client(server.port(), tls_certs.ca_file) as smtp:
        smtp.login("cron", PASSWORD)
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp.sendmail("ceo@bank.example", ["victim@example.net"], message())
        assert refused.value.smtp_code == 553
        assert b"not allowed for this account" in refused.value.smtp_error
        smtp.rset()
        # An allowed envelope sender, but a From header it may not use.
        with pytest.raises(smtplib.SMTPDataError) as refused_data:
            smtp.sendmail(
                "cron@example.com", ["ops@example.net"], message(sender="ceo@bank.example")
            )
        assert refused_data.value.smtp_code == 550
        assert b"<ceo@bank.example> is not allowed" in refused_data.value.smtp_error
    assert not Message.objects.exists()
    server.listener.handler.activity.flush()
    assert SubmissionAccount.objects.get(pk=account.pk).messages_rejected == 2


def test_an_accounts_use_is_recorded_without_a_further_message_to_carry_it(listener, tls_certs):
    import time

    server = listener()
    account = make_account()
    server.listener.handler.activity.interval = 0.1
    with client(server.port(), tls_certs.ca_file) as smtp:
        smtp.login("cron", PASSWORD)
        smtp.sendmail("cron@example.com", ["ops@example.net"], message())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = SubmissionAccount.objects.get(pk=account.pk)
        if row.messages_accepted:
            break
        time.sleep(0.05)
    assert (row.messages_accepted, row.last_client) == (1, "127.0.0.1")
    assert row.last_used_at is not None


def test_a_trusted_network_submits_without_login(listener, tls_certs):
    server = listener(SUBMISSION_TRUSTED_NETWORKS=["127.0.0.0/8"])
    with client(server.port(), tls_certs.ca_file, starttls=False) as smtp:
        smtp.sendmail("printer@lan.example", ["ops@example.net"], message())
    stored = Message.objects.get()
    assert stored.submission_account is None and stored.from_email == "printer@lan.example"
    assert b"with ESMTP;" in strip_received(stored.raw)[0]


def test_an_untrusted_network_does_not_get_in(listener, tls_certs):
    server = listener(SUBMISSION_TRUSTED_NETWORKS=["10.0.0.0/8"])
    with client(server.port(), tls_certs.ca_file) as smtp, pytest.raises(smtplib.SMTPSenderRefused):
        smtp.sendmail("printer@lan.example", ["ops@example.net"], message())


def test_size_is_advertised_and_enforced(listener, tls_certs):
    server = listener(SUBMISSION_MAX_MESSAGE_SIZE=4096)
    make_account(max_message_size=2048)
    big = message() + b"x" * 76 + b"\r\n"
    big = big * (3000 // len(big) + 1)
    with client(server.port(), tls_certs.ca_file) as smtp:
        assert smtp.esmtp_features["size"] == "4096"
        smtp.login("cron", PASSWORD)
        # SIZE announced: refused at MAIL.
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp.sendmail("cron@example.com", ["ops@example.net"], big)
        assert refused.value.smtp_code == 552 and b"limit is 2048" in refused.value.smtp_error
        smtp.rset()
        # Not announced: refused after the data.
        smtp.mail("cron@example.com")
        smtp.rcpt("ops@example.net")
        code, reply = smtp.data(big)
        assert code == 552, reply
        smtp.rset()
        # Over the listener's own limit.
        code, _ = smtp.mail("cron@example.com", ["SIZE=100000"])
        assert code == 552
    assert not Message.objects.exists()


def test_a_client_that_drops_mid_data_leaves_nothing(listener, tls_certs):
    server = listener(SUBMISSION_TRUSTED_NETWORKS=["127.0.0.1/32"])
    with socket.create_connection(("127.0.0.1", server.port()), timeout=10) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220")
        for command in (
            b"HELO c.example",
            b"MAIL FROM:<a@lan.example>",
            b"RCPT TO:<b@example.net>",
        ):
            sock.sendall(command + b"\r\n")
            assert reader.readline().startswith(b"250")
        sock.sendall(b"DATA\r\n")
        assert reader.readline().startswith(b"354")
        sock.sendall(b"Subject: half\r\n\r\nthe first half of the body\r\n")
    # The next client's message is stored: the listener carried on.
    with client(server.port(), tls_certs.ca_file, starttls=False) as smtp:
        smtp.sendmail("a@lan.example", ["b@example.net"], message("whole"))
    assert list(Message.objects.values_list("subject", flat=True)) == ["whole"]


def test_many_clients_at_once_share_commits(listener, tls_certs):
    server = listener()
    make_account()
    errors: list[BaseException] = []
    commits: list[list[int]] = []

    def committed(sender, message_ids, **kwargs):
        commits.append(list(message_ids))

    signals.message_queued.connect(committed, weak=False)

    def submit(n: int) -> None:
        try:
            with client(server.port(), tls_certs.ca_file) as smtp:
                smtp.login("cron", PASSWORD)
                for i in range(5):
                    smtp.sendmail("cron@example.com", ["ops@example.net"], message(f"c{n}-{i}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    signals.message_queued.disconnect(committed)
    assert not errors, errors[:3]
    subjects = set(Message.objects.values_list("subject", flat=True))
    assert subjects == {f"c{n}-{i}" for n in range(20) for i in range(5)}
    # Group commit: the messages of clients waiting together shared transactions.
    assert sum(len(ids) for ids in commits) == 100
    assert len(commits) < 100 and max(len(ids) for ids in commits) > 1


def test_queue_over_its_depth_gets_452(listener, tls_certs):
    from django.core.mail import send_mail

    server = listener(SUBMISSION_MAX_QUEUE_DEPTH=2)
    make_account()
    for n in range(2):
        send_mail(f"site {n}", "body", "site@example.com", ["a@example.net"])
    with client(server.port(), tls_certs.ca_file) as smtp:
        smtp.login("cron", PASSWORD)
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp.sendmail("cron@example.com", ["ops@example.net"], message())
    assert refused.value.smtp_code == 452
    assert Message.objects.count() == 2


def test_an_account_over_its_rate_waits(listener, tls_certs):
    server = listener()
    make_account(max_messages_per_minute=2)
    with client(server.port(), tls_certs.ca_file) as smtp:
        smtp.login("cron", PASSWORD)
        for n in range(2):
            smtp.sendmail("cron@example.com", ["ops@example.net"], message(f"m{n}"))
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp.sendmail("cron@example.com", ["ops@example.net"], message("m2"))
    assert refused.value.smtp_code == 450 and b"2 messages per minute" in refused.value.smtp_error
    assert Message.objects.count() == 2


def test_account_use_is_recorded(listener, tls_certs):
    server = listener()
    account = make_account()
    with client(server.port(), tls_certs.ca_file) as smtp:
        smtp.login("cron", PASSWORD)
        smtp.sendmail("cron@example.com", ["ops@example.net"], message())
    server.stop()
    account.refresh_from_db()
    assert account.messages_accepted == 1 and account.last_client == "127.0.0.1"
    assert account.last_used_at is not None


def test_smtputf8_and_8bit_bytes_are_stored_as_sent(listener, tls_certs):
    server = listener()
    make_account(allowed_senders="example.org")
    raw = (
        "From: J\u00fcrgen <j\u00fcrgen@example.org>\r\nTo: ren\u00e9@example.net\r\n"
        "Subject: Gr\u00fc\u00dfe\r\n\r\nNa\u00efve \u65e5\u672c\u8a9e\r\n"
    ).encode()
    with client(server.port(), tls_certs.ca_file) as smtp:
        smtp.login("cron", PASSWORD)
        smtp.sendmail(
            "j\u00fcrgen@example.org",
            ["ren\u00e9@example.net"],
            raw,
            mail_options=["SMTPUTF8", "BODY=8BITMIME"],
        )
    stored = Message.objects.get()
    received, rest = strip_received(stored.raw)
    assert rest == raw and b"with UTF8SMTPSA;" in received
    assert (stored.subject, stored.from_domain) == ("Gr\u00fc\u00dfe", "example.org")
    assert stored.from_email == "j\u00fcrgen@example.org"
    assert list(stored.recipients.values_list("address", flat=True)) == ["ren\u00e9@example.net"]


def test_what_the_queue_cannot_hold_is_refused_with_the_reason(listener, tls_certs):
    server = listener(SUBMISSION_TRUSTED_NETWORKS=["127.0.0.1/32"])
    sender = "a" * 250 + "@lan.example"  # longer than the envelope sender's column
    with client(server.port(), tls_certs.ca_file, starttls=False) as smtp:
        smtp.mail(sender)
        smtp.rcpt("ops@example.net")
        code, reply = smtp.data(message())
        assert code == 554 and b"at most 254 can be stored" in reply, reply
        smtp.sendmail("printer@lan.example", ["ops@example.net"], message("fits"))
    assert list(Message.objects.values_list("subject", flat=True)) == ["fits"]


def test_bare_line_feeds_are_refused(listener, tls_certs):
    server = listener(SUBMISSION_TRUSTED_NETWORKS=["127.0.0.1/32"])
    with socket.create_connection(("127.0.0.1", server.port()), timeout=10) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220")
        commands = (b"HELO c.example", b"MAIL FROM:<a@lan.example>", b"RCPT TO:<b@example.net>")
        for command in commands:
            sock.sendall(command + b"\r\n")
            assert reader.readline().startswith(b"250")
        sock.sendall(b"DATA\r\n")
        assert reader.readline().startswith(b"354")
        # A smuggled second message behind a bare-LF dot.
        sock.sendall(b"Subject: one\r\n\r\nbody\n.\nMAIL FROM:<x@evil.example>\r\n.\r\n")
        assert reader.readline().startswith(b"550 5.6.11")
    assert not Message.objects.exists()


def test_listed_header_fields_are_read_unfolded_and_decoded():
    from django_smtprelay.submission.intake import header_fields

    raw = (
        b"Subject: =?utf-8?q?Caf=C3=A9?=\r\n and more\r\nX-Other: 1\r\n"
        b"From: A <a@example.org>,\r\n\tB <b@example.org>\r\n\r\nSubject: not a header\r\n"
    )
    fields = header_fields(raw, frozenset({"subject", "from"}))
    assert fields == {
        "subject": ["=?utf-8?q?Caf=C3=A9?= and more"],
        "from": ["A <a@example.org>,\tB <b@example.org>"],
    }
