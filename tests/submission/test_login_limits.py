"""Failed logins: counted per IPv4 address or IPv6 /64, counted before the
check so parallel connections cannot all pass it, and hashed on threads of
their own so a flood of bad logins does not hold up stored messages."""

from __future__ import annotations

import base64
import threading

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from django_smtprelay.models import Message
from django_smtprelay.submission import limits
from tests.submission.harness import PASSWORD, client, make_account, message

# Django's own hasher, slower than its default, so that parallel checks overlap.
SLOW_HASHER = "tests.submission.test_login_limits.SlowPBKDF2"


class SlowPBKDF2(PBKDF2PasswordHasher):
    algorithm = "pbkdf2_sha256_slow"
    iterations = 2_000_000


# A hasher whose checks wait, while ``holding`` is set, until ``release``:
# password checks held for as long as a test needs, on any machine.
HELD_HASHER = "tests.submission.test_login_limits.HeldHasher"


class HeldHasher(PBKDF2PasswordHasher):
    algorithm = "pbkdf2_sha256_held"
    iterations = 1000
    holding = threading.Event()
    held = threading.Event()
    release = threading.Event()

    def verify(self, password: str, encoded: str) -> bool:
        if HeldHasher.holding.is_set():
            HeldHasher.held.set()
            HeldHasher.release.wait(60)
        return super().verify(password, encoded)


def plain(password: str, username: str = "cron") -> str:
    return "PLAIN " + base64.b64encode(f"\0{username}\0{password}".encode()).decode()


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        ("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:9", True),
        ("2001:db8:1:2::1", "2001:db8:1:3::1", False),
        ("fe80::1%eth0", "fe80::2", True),
        ("192.0.2.1", "192.0.2.1", True),
        ("192.0.2.1", "192.0.2.2", False),
        ("::ffff:192.0.2.1", "192.0.2.1", True),
        ("::1", "::1", True),
    ],
)
def test_failed_logins_are_counted_per_ipv4_address_and_per_ipv6_64(one, other, same):
    assert (limits.client_key(one) == limits.client_key(other)) is same


def test_two_addresses_of_one_ipv6_64_share_the_counter(relay_settings):
    relay_settings(SUBMISSION_LOGIN_FAILURE_LIMIT=2)
    limits.get_cache().clear()
    for address in ("2001:db8:5:6::1", "2001:db8:5:6::2"):
        assert limits.login_reserve(address) == "go"
        limits.login_failed(address)
    assert limits.login_reserve("2001:db8:5:6:dead::beef") == "blocked"
    assert limits.login_reserve("2001:db8:5:7::1") == "go"


def test_a_login_that_succeeds_gives_its_place_back(relay_settings):
    relay_settings(SUBMISSION_LOGIN_FAILURE_LIMIT=1)
    limits.get_cache().clear()
    for _ in range(3):
        assert limits.login_reserve("192.0.2.9") == "go"
        limits.login_released("192.0.2.9")


def test_parallel_attempts_are_capped_at_the_limit(relay_settings):
    relay_settings(SUBMISSION_LOGIN_FAILURE_LIMIT=5)
    limits.get_cache().clear()
    start = threading.Barrier(16)
    places: list[str] = []

    def attempt() -> None:
        start.wait(5)
        places.append(limits.login_reserve("198.51.100.7"))

    workers = [threading.Thread(target=attempt) for _ in range(16)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10)
    # Five checks may run; the others wait for them (and are refused once
    # those five have failed).
    assert sorted(places) == ["busy"] * 11 + ["go"] * 5
    for _ in range(5):
        limits.login_failed("198.51.100.7")
    assert limits.login_reserve("198.51.100.7") == "blocked"


def test_parallel_bad_logins_over_the_listener_are_capped(listener, tls_certs, settings):
    server = listener(SUBMISSION_LOGIN_FAILURE_LIMIT=3)
    settings.PASSWORD_HASHERS = [SLOW_HASHER]
    make_account()
    codes: list[int] = []
    start = threading.Barrier(8)

    def bad_login() -> None:
        with client(server.port(), tls_certs.ca_file, timeout=60) as smtp:
            start.wait(10)
            codes.append(smtp.docmd("AUTH", plain("wrong password"))[0])

    workers = [threading.Thread(target=bad_login) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert sorted(codes) == [421] * 5 + [535] * 3


def test_bad_logins_do_not_hold_up_the_messages_of_a_logged_in_client(
    listener, tls_certs, settings
):
    """Every password check of a flood of bad logins is held (a hasher that
    waits until the end), and a logged-in client's messages are stored
    meanwhile: checks and stores do not share threads. Sharing them, the held
    checks take every thread and the sends wait until the client's timeout."""
    server = listener(SUBMISSION_LOGIN_FAILURE_LIMIT=1000)
    settings.PASSWORD_HASHERS = [HELD_HASHER]
    make_account()
    HeldHasher.release.clear()
    with client(server.port(), tls_certs.ca_file, timeout=30) as smtp:
        smtp.login("cron", PASSWORD)
        HeldHasher.holding.set()  # from now on, every check waits
        replies: list[int] = []

        def bad_login() -> None:
            with client(server.port(), tls_certs.ca_file, timeout=120) as bad:
                replies.append(bad.docmd("AUTH", plain("wrong password"))[0])

        flood = [threading.Thread(target=bad_login) for _ in range(12)]
        try:
            for worker in flood:
                worker.start()
            assert HeldHasher.held.wait(10), "no password check started"
            for n in range(3):
                smtp.sendmail("cron@example.com", ["ops@example.net"], message(f"m{n}"))
            assert Message.objects.count() == 3
            assert replies == []  # every bad login still being checked
        finally:
            HeldHasher.holding.clear()
            HeldHasher.release.set()
            for worker in flood:
                worker.join(120)
    assert replies == [535] * 12


def test_an_ipv6_clients_failures_are_counted_for_its_64(
    transactional_db, relay_settings, tls_certs, fast_hashers
):
    import smtplib
    import socket

    from django_smtprelay.submission.settings import parse_listen
    from tests.submission.harness import ListenerThread

    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback (::1) on this machine; enable IPv6 to run it")
    relay_settings(
        SUBMISSION_TLS_CERT_FILE=str(tls_certs.cert_file),
        SUBMISSION_TLS_KEY_FILE=str(tls_certs.key_file),
        SUBMISSION_AUTH_WITHOUT_TLS_ON_LOOPBACK=True,
        SUBMISSION_LOGIN_FAILURE_LIMIT=1,
    )
    limits.get_cache().clear()
    make_account()
    server = ListenerThread([parse_listen("starttls://[::1]:0")])
    try:
        with smtplib.SMTP("::1", server.port(), timeout=10) as smtp:
            smtp.ehlo("client.example")
            assert smtp.docmd("AUTH", plain("wrong password"))[0] == 535
        cache = limits.get_cache()
        assert cache.get("smtprelay:submission:authfail:::/64") == 1
        # Another address of the same /64 is held back by ::1's failure.
        assert limits.login_reserve("::2") == "blocked"
    finally:
        server.stop()
