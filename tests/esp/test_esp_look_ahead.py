"""What an ESP route prepares while the ESP works on the message before.

The next message is parsed and its request built during the previous request
(the drain's speed depends on it); anymail's ``pre_send`` receivers, which
may change or cancel a message, still see every message just before it goes.
The queued bytes are read back with shortcuts (a bare address, a single-part
body), each checked here against the parser's full path.
"""

from __future__ import annotations

import pytest
from anymail.exceptions import AnymailCancelSend
from anymail.signals import pre_send
from django.core.mail import EmailMessage, EmailMultiAlternatives

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.models import Recipient
from django_smtprelay.transports import mime

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True, params=["overlapped", "in turn"])
def overlap(request, monkeypatch):
    """Every test both ways: requests overlapped with the engine's work (as for an
    ESP that takes a while to answer), and sent in turn (one that answers at once)."""
    from django_smtprelay.transports.esp import ESPTransport

    if request.param == "overlapped":
        monkeypatch.setattr(ESPTransport, "overlap_from", 0.0)
    else:
        monkeypatch.setattr(ESPTransport, "overlap_from", 3600.0)
    return request.param


def _queue(count: int) -> None:
    for i in range(count):
        EmailMessage(f"Number {i}", "Body\n", "shop@example.com", [f"u{i}@example.net"]).send()


def test_a_pre_send_receiver_sees_and_changes_every_message(esp_server, make_esp_route):
    server = esp_server("postmark")
    make_esp_route(server)
    _queue(4)
    seen = []

    def receiver(sender, message, **kwargs):
        seen.append(message.subject)
        message.subject += " (checked)"
        if message.subject.startswith("Number 2"):
            raise AnymailCancelSend("not this one")

    pre_send.connect(receiver)
    try:
        DeliveryEngine().run()
    finally:
        pre_send.disconnect(receiver)
    assert seen == [f"Number {i}" for i in range(4)]
    sent = [r.json()["Subject"] for r in server.requests]
    assert sent == ["Number 0 (checked)", "Number 1 (checked)", "Number 3 (checked)"]
    cancelled = Recipient.objects.get(address="u2@example.net")
    assert cancelled.status != Recipient.Status.DELIVERED


def test_without_receivers_every_message_goes_once_with_its_own_request(esp_server, make_esp_route):
    server = esp_server("postmark")
    make_esp_route(server)
    _queue(5)
    assert DeliveryEngine().run().sent == 5
    bodies = [r.json() for r in server.requests]
    assert [b["To"] for b in bodies] == [f"u{i}@example.net" for i in range(5)]
    assert [b["Subject"] for b in bodies] == [f"Number {i}" for i in range(5)]
    ids = {b["Metadata"]["smtprelay_id"] for b in bodies}
    assert len(ids) == 5


def test_a_message_anymail_refuses_does_not_hold_up_the_next(esp_server, make_esp_route):
    """Built ahead, a refused request is built again (and refused) at its own turn."""
    server = esp_server("postmark")
    make_esp_route(server)
    EmailMessage("ok", "Body\n", "shop@example.com", ["a@example.net"]).send()
    # Two HTML parts: anymail's Postmark backend refuses it before any request.
    many = EmailMultiAlternatives("many", "Body\n", "shop@example.com", ["r@example.net"])
    many.attach_alternative("<p>one</p>", "text/html")
    many.attach_alternative("<p>two</p>", "text/html")
    many.send()
    EmailMessage("ok too", "Body\n", "shop@example.com", ["b@example.net"]).send()
    DeliveryEngine().run()
    assert [r.json()["Subject"] for r in server.requests] == ["ok", "ok too"]
    refused = Recipient.objects.get(address="r@example.net")
    assert refused.status != Recipient.Status.DELIVERED
    assert "multiple html parts" in refused.reply
    assert Recipient.objects.filter(status=Recipient.Status.DELIVERED).count() == 2


HEADERS = [
    "plain@example.com",
    "  padded@example.com ",
    "Ann <ann@example.com>",
    '"Doe, Jane" <jane@example.com>',
    "bob@example.com (Bob)",
    "a=b@example.com",
    "zoë@exämple.com",
    "=?utf-8?q?Zo=C3=AB?= <zoe@example.com>",
    "one@example.com, two@example.com",
    "",
]


@pytest.mark.parametrize("value", HEADERS)
def test_the_bare_address_shortcut_reads_what_the_parser_reads(value, monkeypatch):
    raw = f"From: {value}\r\nTo: {value}\r\nSubject: s\r\n\r\nBody\r\n".encode()
    fast = mime.parse_message(raw, "bounce@example.com", ["plain@example.com"])
    monkeypatch.setattr(mime, "_BARE", _Never())
    slow = mime.parse_message(raw, "bounce@example.com", ["plain@example.com"])
    assert (fast.from_email, fast.to, fast.bcc) == (slow.from_email, slow.to, slow.bcc)
    assert getattr(fast, "envelope_sender", None) == getattr(slow, "envelope_sender", None)


class _Never:
    def fullmatch(self, _value: str) -> None:
        return None


@pytest.mark.parametrize(
    "message",
    [
        EmailMessage("Plain", "Line one.\nLine two.\n", "a@example.com", ["b@example.com"]),
        EmailMessage("Ünïcode", "Grüße, " * 200 + "\n", "a@example.com", ["b@example.com"]),
        EmailMessage("Long", "word " * 400 + "\n", "a@example.com", ["b@example.com"]),
    ],
    ids=["7bit", "8bit-or-base64", "quoted-printable"],
)
def test_a_single_part_body_read_as_it_is_matches_the_full_parse(message, monkeypatch):
    import email

    raw = message.message().as_bytes().replace(b"\n", b"\r\n")
    fast = mime.parse_message(raw, "a@example.com", ["b@example.com"])
    monkeypatch.setattr(mime, "_parsed", email.message_from_bytes)
    slow = mime.parse_message(raw, "a@example.com", ["b@example.com"])
    assert (fast.subject, fast.body, fast.extra_headers) == (
        slow.subject,
        slow.body,
        slow.extra_headers,
    )
    assert fast.body.rstrip("\n") == message.body.rstrip("\n")


def _corpus_bytes() -> list[bytes]:
    from tests.esp.test_esp_differential import CORPUS

    return [CORPUS[case]().message().as_bytes().replace(b"\n", b"\r\n") for case in sorted(CORPUS)]


ODD_HEADERS = [
    b"X-Tag: one\r\nSubject: s\r\nx-tag: two\r\nX-TAG:  three\r\n\r\nBody\r\n",
    b"Subject: folded\r\n\tover two lines\r\nX-Tab:\tvalue \r\n\r\nBody\r\n",
    b"Subject: caf\xc3\xa9 raw 8-bit\r\nTo: a@example.com\r\n\r\nBody\r\n",
    b"X-Empty:\r\nSubject:   spaced  \r\n\r\n\r\nBody after a blank line\r\n",
    b"Subject: bare LF\nTo: a@example.com\n\nBody\n",
    b"Subject: a bare\rCR\r\n\r\nBody\r\n",
    b" leading continuation\r\nSubject: s\r\n\r\nBody\r\n",
    b"From someone Mon Nov 30\r\nSubject: s\r\n\r\nBody\r\n",
    b"Subject: s\r\nnot a header line\r\n\r\nBody\r\n",
    b"Subject : space before the colon\r\n\r\nBody\r\n",
    b":no name\r\nSubject: s\r\n\r\nBody\r\n",
    b"Subject: no body at all\r\n",
    b"Subject: empty body\r\n\r\n",
]


@pytest.mark.parametrize("raw", _corpus_bytes() + ODD_HEADERS)
def test_the_header_shortcut_reads_what_the_parser_reads(raw):
    """Where the shortcut reads the headers itself, it reads them as the parser
    does; where it cannot be sure, it leaves them to the parser."""
    fast = mime._plain_headers(raw)
    slow = mime._HEADERS_ONLY.parsebytes(raw, headersonly=True)
    if fast is None:
        assert raw in ODD_HEADERS[4:], "a well-formed message went the slow way"
        return
    assert fast.items() == slow.items()
    # Lookups, by any case of a header's name (an index of all-ASCII headers).
    for name in {k for k, _v in slow.items()} | {"X-Missing"}:
        for asked in (name, name.lower(), name.upper()):
            assert fast.get(asked) == slow.get(asked)
            assert fast.get(asked, "none") == slow.get(asked, "none")
            assert fast.get_all(asked) == slow.get_all(asked)
    assert fast.get_content_type() == slow.get_content_type()
    assert fast.get_content_charset() == slow.get_content_charset()
    assert fast.get_payload() == slow.get_payload()
    assert fast.get_payload(decode=True) == slow.get_payload(decode=True)
    assert fast.get_unixfrom() == slow.get_unixfrom()
    assert not slow.defects


@pytest.mark.parametrize("delay", [0.0, 0.02])
def test_the_engine_works_while_a_request_waits_on_the_same_thread(
    delay, esp_server, make_esp_route, monkeypatch
):
    """A ``requests`` backend's request is sent from the engine's own thread, and
    the previous result is recorded once it is sent, before its answer is read:
    no other thread, whether the ESP answers at once or takes a while."""
    import threading

    from anymail.backends.base_requests import AnymailRequestsBackend

    from django_smtprelay.delivery import session

    server = esp_server("postmark")
    server.delay = delay
    make_esp_route(server)
    _queue(6)
    senders, settled_during_request = [], []
    out = [False]

    to_esp = AnymailRequestsBackend.post_to_esp

    def post_to_esp(self, payload, message):
        senders.append(threading.current_thread().name)
        out[0] = True
        try:
            return to_esp(self, payload, message)
        finally:
            out[0] = False

    settle = session._Applied.settle

    def recording_settle(self):
        if not self.settled:
            settled_during_request.append(out[0])
        return settle(self)

    monkeypatch.setattr(AnymailRequestsBackend, "post_to_esp", post_to_esp)
    monkeypatch.setattr(session._Applied, "settle", recording_settle)
    assert DeliveryEngine().run().sent == 6
    assert senders == [threading.current_thread().name] * 6
    # Each result but the last is recorded while the next message's request is out.
    assert settled_during_request == [True] * 5 + [False]


@pytest.mark.parametrize("delay", [0.0, 0.02])
def test_other_backends_overlap_the_engine_only_when_the_esp_is_slow_to_answer(
    delay, overlap, esp_server, make_esp_route, monkeypatch
):
    """Amazon SES (boto3, not ``requests``): its requests go to the sending
    thread once the ESP's answers average 5 ms or more."""
    import threading

    from anymail.backends.amazon_ses import EmailBackend

    from django_smtprelay.transports.esp import ESPTransport

    if overlap == "overlapped":
        pytest.skip("the default threshold is what this test is about")
    monkeypatch.setattr(ESPTransport, "overlap_from", 0.005)
    server = esp_server("amazon_ses")
    server.delay = delay
    make_esp_route(server)
    _queue(12)

    senders = []

    to_esp = EmailBackend.post_to_esp

    def post_to_esp(self, payload, message):
        senders.append(threading.current_thread().name)
        return to_esp(self, payload, message)

    monkeypatch.setattr(EmailBackend, "post_to_esp", post_to_esp)
    assert DeliveryEngine().run().sent == 12
    on_sender = [name.startswith("smtprelay-") for name in senders]
    if delay:
        assert any(on_sender[1:]), "a slow ESP's requests were never overlapped"
    else:
        assert not any(on_sender), "an ESP that answers at once was handed requests"


def test_the_environments_proxy_settings_are_read_once_per_session(
    esp_server, make_esp_route, monkeypatch
):
    """requests reads the proxy variables for every request (scanning the whole
    environment); a route's session reads them once, and still honours them."""
    import requests.sessions

    server = esp_server("postmark")
    make_esp_route(server)
    _queue(5)
    reads = []
    environ_proxies = requests.sessions.get_environ_proxies

    def counted(url, no_proxy=None):
        reads.append(url)
        return environ_proxies(url, no_proxy=no_proxy)

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counted)
    assert DeliveryEngine().run().sent == 5
    assert len(reads) == 1
    assert len(server.requests) == 5


def test_the_settings_read_once_are_the_ones_requests_reads(monkeypatch):
    import requests

    from django_smtprelay.transports.esp import _environment_once

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.net:3128")
    monkeypatch.setenv("NO_PROXY", "api.example.org")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/bundle.pem")
    plain, once = requests.Session(), requests.Session()
    _environment_once(once)
    for url in ("https://api.example.com/email", "https://api.example.org/email"):
        for _ in range(2):
            expected = plain.merge_environment_settings(url, {}, None, None, None)
            assert once.merge_environment_settings(url, {}, None, None, None) == expected
    proxies = once.merge_environment_settings("https://api.example.com/", {}, None, None, None)
    assert proxies["proxies"]["https"] == "http://proxy.example.net:3128"
    # What a caller changes in an answer never reaches the next one.
    got = once.merge_environment_settings("https://api.example.com/email", {}, None, None, None)
    got["proxies"]["http"] = "changed"
    again = once.merge_environment_settings("https://api.example.com/email", {}, None, None, None)
    assert "http" not in again["proxies"]


@pytest.mark.parametrize("proxy", ["", "http://127.0.0.1:9"], ids=["direct", "proxied"])
def test_through_a_proxy_the_route_overlaps_on_its_sending_thread(
    proxy, esp_server, make_esp_route, monkeypatch
):
    """requests reaches a proxy through a connection manager the hook cannot
    change: a proxied route keeps the sending thread rather than losing the overlap."""
    from django_smtprelay.routing import RouteSpec
    from django_smtprelay.transports.esp import ESPTransport

    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    if proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.setenv("HTTPS_PROXY", proxy)
    transport = ESPTransport(RouteSpec.from_route(make_esp_route(esp_server("postmark"))))
    transport.open()
    try:
        assert transport._inline is not bool(proxy)
        assert (transport._sender is not None) is bool(proxy)
    finally:
        transport.close()
