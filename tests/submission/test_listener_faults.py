"""The listener when something fails around the store: a message that is
committed gets its 250 whatever fails after the commit (told otherwise, the
client sends it again), and no internal error text reaches a client."""

from __future__ import annotations

import smtplib
from typing import Any

import pytest
from django.core.cache.backends.locmem import LocMemCache

from django_smtprelay import signals
from django_smtprelay.models import Message
from django_smtprelay.submission import writer
from tests.submission.harness import PASSWORD, client, make_account, message


class CountersDown(LocMemCache):
    """A cache that cannot write the rate counters, as when Redis goes away
    between a client's MAIL and its final dot (the login's counters, written
    before, still work)."""

    def incr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        if ":rate:" in key:
            raise ConnectionError("counter store at 10.9.8.7:6379 is unreachable")
        return super().incr(key, delta, version)

    def add(self, key: str, *args: Any, **kwargs: Any) -> bool:
        if ":rate:" in key:
            raise ConnectionError("counter store at 10.9.8.7:6379 is unreachable")
        return super().add(key, *args, **kwargs)


@pytest.fixture
def counters_down(settings: Any, relay_settings: Any) -> None:
    settings.CACHES = {
        **settings.CACHES,
        "counters_down": {"BACKEND": f"{__name__}.CountersDown", "LOCATION": "counters-down"},
    }
    relay_settings(CACHE_ALIAS="counters_down")


def test_a_stored_message_gets_250_when_the_rate_counter_cannot_be_bumped(
    counters_down, listener, tls_certs, caplog
):
    server = listener()
    make_account(max_messages_per_minute=100)
    with client(server.port(), tls_certs.ca_file) as smtp:
        smtp.login("cron", PASSWORD)
        smtp.mail("cron@example.com")
        smtp.rcpt("ops@example.net")
        code, reply = smtp.data(message())
    assert code == 250 and reply.startswith(b"2.0.0 Queued as"), reply
    assert Message.objects.count() == 1
    assert "10.9.8.7" not in reply.decode()
    assert "Bookkeeping after storing 1 message(s) failed" in caplog.text


def test_a_stored_message_gets_250_when_a_message_queued_receiver_raises(
    listener, tls_certs, caplog
):
    server = listener()
    make_account()
    seen: list[list[int]] = []

    def broken(sender: Any, message_ids: list[int], **kwargs: Any) -> None:
        raise RuntimeError("the site's alerting is down")

    def working(sender: Any, message_ids: list[int], **kwargs: Any) -> None:
        seen.append(list(message_ids))

    signals.message_queued.connect(broken, weak=False)
    signals.message_queued.connect(working, weak=False)
    try:
        with client(server.port(), tls_certs.ca_file) as smtp:
            smtp.login("cron", PASSWORD)
            smtp.mail("cron@example.com")
            smtp.rcpt("ops@example.net")
            code, reply = smtp.data(message())
    finally:
        signals.message_queued.disconnect(broken)
        signals.message_queued.disconnect(working)
    assert code == 250, reply
    stored = Message.objects.get()
    assert seen == [[stored.pk]]  # the other receivers still hear of it
    assert "message_queued receiver" in caplog.text and "alerting is down" in caplog.text


def test_an_unexpected_error_in_the_store_is_a_451_without_its_text(
    listener, tls_certs, monkeypatch, caplog
):
    server = listener()
    make_account()

    def failing(prepared: Any) -> list[int]:
        raise RuntimeError("internal detail at 0xdeadbeef")

    monkeypatch.setattr(writer, "queue", failing)
    with client(server.port(), tls_certs.ca_file) as smtp:
        smtp.login("cron", PASSWORD)
        smtp.mail("cron@example.com")
        smtp.rcpt("ops@example.net")
        code, reply = smtp.data(message())
        # The connection goes on: the client may try again on it.
        assert smtp.noop()[0] == 250
    assert (code, reply) == (451, b"4.3.0 Temporary failure, try again later")
    assert not Message.objects.exists()
    assert "internal detail at 0xdeadbeef" in caplog.text


class RatesUnreadable(LocMemCache):
    """A cache whose rate counters cannot be read (the failed-login counter,
    read with ``incr``, still works)."""

    def get_many(self, keys: Any, version: int | None = None) -> dict:
        raise ConnectionError("counter store at 10.9.8.7:6379 is unreachable")


def test_a_cache_error_at_mail_is_a_451_without_its_text(
    settings, relay_settings, listener, tls_certs
):
    settings.CACHES = {
        **settings.CACHES,
        "unreadable": {"BACKEND": f"{__name__}.RatesUnreadable", "LOCATION": "unreadable"},
    }
    server = listener(CACHE_ALIAS="unreadable")
    make_account(max_messages_per_minute=100)
    with client(server.port(), tls_certs.ca_file) as smtp:
        smtp.login("cron", PASSWORD)
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp.sendmail("cron@example.com", ["ops@example.net"], message())
    assert refused.value.smtp_code == 451
    assert refused.value.smtp_error == b"4.3.0 Temporary failure, try again later"
    assert not Message.objects.exists()


def test_the_accounts_use_is_still_recorded_after_a_failed_write(
    listener, tls_certs, monkeypatch, caplog
):
    import time

    server = listener()
    account = make_account()
    activity = server.listener.handler.activity
    activity.interval = 0.1
    flush = activity.flush
    calls: list[int] = []

    def fails_once() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("account use: transient fault")
        flush()

    with client(server.port(), tls_certs.ca_file) as smtp:
        smtp.login("cron", PASSWORD)
        smtp.sendmail("cron@example.com", ["ops@example.net"], message())
    # From here no message carries the write: only the background loop does.
    monkeypatch.setattr(activity, "flush", fails_once)
    activity.record(account.pk, "127.0.0.2", accepted=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = type(account).objects.get(pk=account.pk)
        if row.messages_accepted == 2:
            break
        time.sleep(0.05)
    assert len(calls) >= 2, "the background write stopped after its first failure"
    assert (row.messages_accepted, row.last_client) == (2, "127.0.0.2")
    assert "account use: transient fault" in caplog.text
