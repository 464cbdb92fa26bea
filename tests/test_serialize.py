"""serialize(): byte for byte what Django's message() and the email generator give."""

from __future__ import annotations

import email.generator
import os
import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from email.utils import formatdate
from functools import partial
from unittest import mock

import django
import pytest
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.mail import message as django_message
from django.utils.translation import gettext_lazy

from bench.workload import BODY, SENDER, datatuples
from django_smtprelay import serialize as serialize_module
from django_smtprelay.envelope import prepare
from django_smtprelay.serialize import as_bytes, serialize

MODERN = django.VERSION >= (6, 0)
# Before 5.2, Django writes To/Cc/Reply-To from extra_headers twice: Django's path.
ADDRESS_OVERRIDES_FAST = django.VERSION >= (5, 2)
# make mutate runs fewer (mutation/run.py), each of thousands of mutants that the
# fast tests miss running this one; the counts each shape must reach scale with it.
N_MESSAGES = int(os.environ.get("SMTPRELAY_TEST_RANDOM_MESSAGES", "3000"))
MIN_SHAPE = max(4, 20 * N_MESSAGES // 3000)


# --- deterministic Date and Message-ID ---------------------------------------


class _Clock:
    """Date and Message-ID as Django's own functions make them, at a chosen instant."""

    def __init__(self) -> None:
        self.timestamp = 1_700_000_000.0
        self.serial = 0

    def formatdate(self, timeval=None, localtime=False, usegmt=False):  # Django <= 5.2
        return formatdate(self.timestamp, localtime=localtime, usegmt=usegmt)

    def make_msgid(self, idstring=None, domain=None):
        # The shape of email.utils.make_msgid() with fixed numbers.
        return f"<{int(self.timestamp * 100)}.4242.{self.serial}@{domain}>"


@contextmanager
def fixed_clock() -> Iterator[_Clock]:
    clock = _Clock()

    class FixedDatetime(datetime):  # Django 6: datetime.now(tz)
        @classmethod
        def now(cls, tz=None):
            return datetime.fromtimestamp(clock.timestamp, tz)

    with (
        mock.patch.object(django_message, "make_msgid", clock.make_msgid),
        mock.patch.object(django_message, "formatdate", clock.formatdate, create=True),
        mock.patch.object(django_message, "datetime", FixedDatetime, create=True),
        # Multipart boundaries are random too.
        mock.patch.object(
            email.generator.Generator, "_make_boundary", classmethod(lambda cls, text=None: "=b=")
        ),
    ):
        yield clock


@contextmanager
def django_builds() -> Iterator[list[EmailMessage]]:
    """Record every call of Django's message(): none means the fast path wrote the bytes."""
    calls: list[EmailMessage] = []
    real = EmailMessage.message

    def spy(self, *args, **kwargs):
        calls.append(self)
        return real(self, *args, **kwargs)

    with mock.patch.object(EmailMessage, "message", spy):
        yield calls


def outcome(call) -> tuple:
    try:
        data, message_id = call()
    except Exception as exc:
        return ("error", type(exc), str(exc))
    return ("ok", data, message_id)


def djangos(m: EmailMessage) -> tuple:
    def build():
        msg = m.message()
        return as_bytes(msg), str(msg["Message-ID"] or "")

    return outcome(build)


# --- random messages ------------------------------------------------------------

ASCII_WORDS = [
    "alpha", "Beta", "gamma:", "Re:", "(note)", "a,b", "<tag>", "100%", "semi;colon",
    '"quoted"', "back\\slash", "=?utf-8?q?x?=", "x@y", "dots...", "tab\there",
]  # fmt: skip
UNICODE_WORDS = ["Grüße", "Köln", "✉", "日本語", "naïve", "Ωmega", "😀", "Zoë", "façade"]
LOCALS = ["user", "first.last", "a+tag", "x_y", "o'neil", "Zoë"]
DOMAINS = ["example.com", "mail.example.org", "bücher.example", "exämple.com"]
NAMES = [
    "Site", "Site Name", "John Q. Public", '"Doe, John"', '"Quoted Name"', "Jörg Müller",
    '"Ünïcode Quote"', "A" * 70, "Two  Spaces", "=?utf-8?q?J=C3=B6rg?=", "Support Team",
]  # fmt: skip
ODD_BREAKS = ["\u2028", "\x0b", "\x0c", "\x1c", "\x85"]
LONG_DNS_NAME = "ip-172-31-22-11.eu-west-1.compute.internal.example.com"


def words(rng: random.Random, n: int, unicode_share: float = 0.0) -> str:
    out = []
    for _ in range(n):
        roll = rng.random()
        if roll < unicode_share:
            out.append(rng.choice(UNICODE_WORDS))
        elif roll < unicode_share + 0.15:
            out.append(rng.choice(ASCII_WORDS))
        else:
            out.append(rng.choice(["word", "the", "news"]) + str(rng.randrange(100)))
    return " ".join(out)


def address(rng: random.Random, tags: set[str]) -> str:
    local = rng.choice(LOCALS[:-1] if rng.random() < 0.9 else LOCALS)
    domain = rng.choice(DOMAINS[:2] if rng.random() < 0.8 else DOMAINS)
    addr = f"{local}{rng.randrange(1000)}@{domain}"
    if not domain.isascii():
        tags.add("idn")
    if rng.random() < 0.5:
        return addr
    tags.add("display-name")
    return f"{rng.choice(NAMES)} <{addr}>"


def subject(rng: random.Random, tags: set[str]):
    kind = rng.choice(
        ["bench", "bench", "ascii", "ascii", "long", "unicode", "long-unicode", "empty",
         "lazy", "spaces", "odd-break", "near-limit"]
    )  # fmt: skip
    tags.add(f"subject-{kind}")
    if kind == "bench":
        return f"Newsletter #{rng.randrange(100000)}"
    if kind == "ascii":
        return words(rng, rng.randint(1, 6))
    if kind == "long":
        return words(rng, rng.randint(12, 40))
    if kind == "unicode":
        return words(rng, rng.randint(1, 5), unicode_share=0.5)
    if kind == "long-unicode":
        return words(rng, rng.randint(12, 30), unicode_share=0.4)
    if kind == "empty":
        return ""
    if kind == "lazy":
        return gettext_lazy("Password reset on %(site)s") % {"site": "example.com"}
    if kind == "spaces":
        return rng.choice([" lead", "trail ", "two  spaces", "\ttab", "end\t"])
    if kind == "odd-break":
        return f"before{rng.choice(ODD_BREAKS)}after"
    # Around the 78-character fold width ("Subject: " leaves 69), with and
    # without a space to fold at.
    size = rng.randint(66, 72)
    if rng.random() < 0.5:
        return "x" * size
    return ("word " * 20)[:size].rstrip() + "z"


def body_line(rng: random.Random, tags: set[str]) -> str:
    kind = rng.random()
    if kind < 0.55:
        return words(rng, rng.randint(0, 12))
    if kind < 0.7:
        tags.add("body-unicode")
        return words(rng, rng.randint(1, 8), unicode_share=0.5)
    if kind < 0.75:
        tags.add("body-from-or-dot")
        return rng.choice(["From here on", ".", ".hidden", ">From quoted", "From"])
    if kind < 0.85:
        tags.add("body-fold-width")
        return "y" * rng.randint(76, 81)  # policy.default's 78 decides 7bit or not
    if kind < 0.95:
        tags.add("body-near-998")
        size = rng.choice([996, 997, 998, 999, 1000])
        if rng.random() < 0.5:
            tags.add("body-unicode")
            return "é" * (size // 2) + "z" * (size % 2)  # two bytes each
        return "z" * size
    tags.add("body-odd-break")
    # A long line that str.splitlines() cuts and bytes.splitlines() does not.
    half = "w" * rng.choice([10, 600])
    return half + rng.choice(ODD_BREAKS) + half


def body(rng: random.Random, tags: set[str]) -> str:
    kind = rng.random()
    if kind < 0.25:
        tags.add("body-bench")
        return BODY
    if kind < 0.3:
        tags.add("body-empty")
        return ""
    seps = ["\n"] * 6 + ["\r\n"] * 3 + ["\r"]
    lines = [body_line(rng, tags) for _ in range(rng.randint(1, 25))]
    text = "".join(line + rng.choice(seps) for line in lines)
    if rng.random() < 0.3:
        text = text.rstrip("\r\n")
        tags.add("body-no-final-newline")
    return text


def extra_headers(rng: random.Random, tags: set[str]) -> dict:
    choices = [
        ("X-Tag", lambda: words(rng, rng.randint(1, 3))),
        ("X-Long", lambda: words(rng, rng.randint(15, 30))),
        ("X-Unicode", lambda: words(rng, 3, unicode_share=0.6)),
        ("From", lambda: address(rng, tags)),
        ("To", lambda: ", ".join(address(rng, tags) for _ in range(rng.randint(1, 3)))),
        ("Cc", lambda: address(rng, tags)),
        ("Reply-To", lambda: address(rng, tags)),
        ("to", lambda: address(rng, tags)),
        ("Date", lambda: rng.choice(["Mon, 01 Jan 2024 00:00:00 +0000", "1 Jan 2024 0:00 GMT"])),
        ("Message-ID", lambda: rng.choice(["<custom.1@example.com>", "plain-id", "<x>"])),
        ("message-id", lambda: "<lower.case@example.com>"),
        ("List-Unsubscribe", lambda: "<https://example.com/u?x=1>, <mailto:u@example.com>"),
        ("X-Count", lambda: rng.randrange(100)),
        ("X-Lazy", lambda: gettext_lazy("Password reset")),
        ("Content-Language", lambda: "en"),
        ("Subject", lambda: "Another subject"),
        ("Bcc", lambda: "hidden@example.com"),
        ("X-Empty", lambda: ""),
        ("Sender", lambda: address(rng, tags)),
        ("Precedence", lambda: "bulk"),
    ]
    headers = {}
    for name, make in rng.sample(choices, rng.choice([0, 0, 0, 1, 1, 2, 4])):
        headers[name] = make()
        tags.add(f"extra-{name}")
    return headers


def random_message(rng: random.Random) -> tuple[EmailMessage, set[str]]:
    tags: set[str] = set()
    kwargs = {
        "subject": subject(rng, tags),
        "body": body(rng, tags),
        "from_email": SENDER if rng.random() < 0.4 else address(rng, tags),
        "to": [address(rng, tags) for _ in range(rng.choice([1, 1, 1, 2, 6]))],
        "headers": extra_headers(rng, tags),
    }
    if rng.random() < 0.2:
        kwargs["cc"] = [address(rng, tags) for _ in range(rng.randint(1, 3))]
    if rng.random() < 0.1:
        kwargs["bcc"] = [address(rng, tags)]
    if rng.random() < 0.15:
        kwargs["reply_to"] = [address(rng, tags)]
    kind = rng.random()
    if kind < 0.55:
        m = EmailMessage(**kwargs)
    else:
        m = EmailMultiAlternatives(**kwargs)
        if kind > 0.85:
            tags.add("alternative")
            m.attach_alternative(f"<p>{words(rng, 5, 0.3)}</p>", "text/html")
        elif kind > 0.75:
            tags.add("attachment")
            m.attach("report.csv", "a,b\n1,2\n", "text/csv")
    if rng.random() < 0.15:
        tags.add("html")
        m.content_subtype = "html"
    encoding = rng.random()
    if encoding < 0.05:
        tags.add("latin-1")
        m.encoding = "latin-1"
    elif encoding < 0.15:
        m.encoding = "utf-8"
    return m, tags


# Not traced for coverage (make test measures it): tracing thousands of calls
# nearly doubles this test's time, for two lines the other tests do not reach.
@pytest.mark.no_cover
@pytest.mark.parametrize("localtime", [False, True], ids=["utc", "localtime"])
def test_serialize_equals_djangos_bytes_for_thousands_of_random_messages(
    settings, localtime
) -> None:
    settings.EMAIL_USE_LOCALTIME = localtime
    settings.TIME_ZONE = "America/New_York" if localtime else "UTC"
    rng = random.Random(20240601 + localtime)
    fast: Counter[str] = Counter()
    fallback: Counter[str] = Counter()
    generated_ids = patched_ids = local_offsets = 0
    with fixed_clock() as clock:
        for i in range(N_MESSAGES):
            m, tags = random_message(rng)
            clock.timestamp = rng.randrange(0, 2**31) + rng.random()
            clock.serial = i
            dns_name = "mail.example.com"
            if rng.random() < 0.05:
                dns_name = LONG_DNS_NAME  # a Message-ID too long for one line
                tags.add("long-message-id")
            with mock.patch.object(django_message, "DNS_NAME", dns_name):
                with django_builds() as calls:
                    got = outcome(lambda m=m: serialize(m))
                expected = djangos(m)
            assert got == expected, (i, m.__dict__)
            (fallback if calls else fast).update(tags | {"all"})
            if expected[0] == "ok" and "message-id" not in {k.lower() for k in m.extra_headers}:
                generated_ids += 1
                patched_ids += f".4242.{i}@".encode() in expected[1]
                local_offsets += any(
                    f" {z}\r\n".encode() in expected[1] for z in ("-0500", "-0400")
                )

    # The comparison means something only if both paths ran, often.
    assert fast["all"] > N_MESSAGES * 0.3, (fast, fallback)
    assert fallback["all"] > N_MESSAGES * 0.15, (fast, fallback)
    assert patched_ids == generated_ids > N_MESSAGES * 0.5, "make_msgid must be the patched one"
    # New York's offsets in the Date header exactly when EMAIL_USE_LOCALTIME is on.
    assert (local_offsets > generated_ids * 0.9) if localtime else not local_offsets
    for tag in ["body-bench", "body-unicode", "body-empty", "body-no-final-newline",
                "body-from-or-dot", "body-odd-break", "body-fold-width", "html",
                "subject-bench", "subject-empty", "display-name", "extra-X-Tag",
                "extra-Date", "extra-Message-ID", "extra-From"]:  # fmt: skip
        assert fast[tag] >= MIN_SHAPE, (tag, fast)
    if ADDRESS_OVERRIDES_FAST:
        assert fast["extra-To"] >= MIN_SHAPE, fast
    else:
        assert fallback["extra-To"] >= MIN_SHAPE and not fast["extra-To"], (fast, fallback)
    for tag in ["alternative", "attachment", "latin-1", "extra-Subject", "extra-Bcc"]:
        assert fallback[tag] >= MIN_SHAPE and not fast[tag], (tag, fast, fallback)
    # Headers that need encoding or folding are written by the standard
    # library's own folding, without message(), on both implementations.
    for tag in ["subject-unicode", "subject-long", "idn", "long-message-id"]:
        assert fast[tag] >= MIN_SHAPE, (tag, fast)


# --- the shapes that must stay fast ------------------------------------------------


def assert_fast_and_exact(m: EmailMessage) -> bytes:
    with fixed_clock(), django_builds() as calls:
        data, message_id = serialize(m)
        assert not calls, "the fast path should have written this message"
        expected = djangos(m)
    assert ("ok", data, message_id) == expected
    return data


def test_the_installed_django_is_one_the_fast_path_was_verified_against() -> None:
    # A release outside serialize._COMPAT32_RELEASES / _MODERN_RELEASES takes
    # Django's path: run this file against it, then widen the range.
    expected = "modern" if MODERN else "compat32"
    assert expected == serialize_module.FAST_PATH, f"Django {django.__version__}"


def _writer(found):
    """(name, function, keyword arguments) of what _detect() chose: partials compare by identity."""
    name, writer = found
    if isinstance(writer, partial):
        return name, writer.func, writer.keywords
    return name, writer, {}


def test_the_writer_is_chosen_from_the_installed_django() -> None:
    # FAST_PATH and the writer were chosen once, at import, by _detect().
    found = serialize_module._detect()
    assert _writer(found) == _writer((serialize_module.FAST_PATH, serialize_module._fast))
    assert found[1] is not None


# The releases either side of each verified range, as the installed Django's
# message() would be seen by a release number that says otherwise.
if MODERN:
    RELEASES = [((5, 2), ""), ((6, 0), "modern"), ((6, 1), "modern"), ((6, 2), "")]
else:
    RELEASES = [
        ((4, 1), ""),
        ((4, 2), "compat32-own-addresses"),
        ((5, 1), "compat32-own-addresses"),
        ((5, 2), "compat32"),
        ((5, 3), ""),
    ]


@pytest.mark.parametrize(("release", "expected"), RELEASES, ids=lambda v: str(v))
def test_only_the_releases_the_writers_were_checked_against_take_the_fast_path(
    monkeypatch, release, expected
) -> None:
    monkeypatch.setattr(django, "VERSION", (*release, 0, "final", 0))
    name, writer, keywords = _writer(serialize_module._detect())
    if expected == "":
        assert (name, writer) == ("", None)
    elif expected == "modern":
        assert (name, writer, keywords) == ("modern", serialize_module._fast_modern, {})
    else:
        # Before 5.2, Django also writes To/Cc/Reply-To from extra_headers among
        # the extra headers, which the writer leaves to Django.
        own = expected == "compat32-own-addresses"
        assert name == "compat32" and writer is serialize_module._fast_compat32
        assert keywords == ({"address_overrides": False} if own else {})


def test_benchmark_shape_takes_the_fast_path() -> None:
    for subject_, body_, from_email, to in datatuples(3):
        data = assert_fast_and_exact(EmailMessage(subject_, body_, from_email, to))
        assert data.endswith(BODY.replace("\n", "\r\n").encode())


@pytest.mark.parametrize(
    "make",
    [
        lambda: EmailMessage("Grüße", "Hallo Jörg ✉\nZweite Zeile\n", SENDER, ["a@example.com"]),
        lambda: EmailMessage("Hi", "Ünïcode without final newline", SENDER, ["a@example.com"]),
        lambda: EmailMultiAlternatives("Hi", "Body\n", "Site <s@example.com>", ["a@example.com"]),
        lambda: EmailMessage(
            "Reset",
            "Body\n",
            SENDER,
            ["a@example.com"],
            cc=["c@example.com"],
            reply_to=["Support <help@example.com>"],
            headers={"List-Unsubscribe": "<mailto:u@example.com>", "Message-ID": "<a@b.example>"},
        ),
    ],
    ids=["utf8-body", "utf8-no-final-newline", "multi-alternatives-without-any", "cc-and-extras"],
)
def test_common_shapes_take_the_fast_path(make) -> None:
    assert_fast_and_exact(make())


def test_html_body_takes_the_fast_path() -> None:
    m = EmailMessage("Hi", "<p>Hello</p>\n", SENDER, ["a@example.com"])
    m.content_subtype = "html"
    assert b'Content-Type: text/html; charset="utf-8"' in assert_fast_and_exact(m)


@pytest.mark.skipif(not MODERN, reason="Django 6 only: before, lines up to 998 bytes stay 7/8bit")
def test_long_lines_take_the_fast_path_on_django_6() -> None:
    m = EmailMessage("Hi", "é" * 100 + "\n" + "long " * 300, SENDER, ["a@example.com"])
    assert b"quoted-printable" in assert_fast_and_exact(m)


# --- the shapes that go through Django ----------------------------------------------


class CustomMessage(EmailMessage):
    def message(self, *args, **kwargs):
        msg = super().message(*args, **kwargs)
        msg["X-Custom"] = "yes"
        return msg


def _with_alternative() -> EmailMessage:
    m = EmailMultiAlternatives("Hi", "Body", SENDER, ["a@example.com"])
    m.attach_alternative("<p>Body</p>", "text/html")
    return m


def _with_attachment() -> EmailMessage:
    m = EmailMessage("Hi", "Body", SENDER, ["a@example.com"])
    m.attach("a.txt", "text", "text/plain")
    return m


def _with_encoding(encoding: str) -> EmailMessage:
    m = EmailMessage("Hi", "Body", SENDER, ["a@example.com"])
    m.encoding = encoding
    return m


FALLBACK_SHAPES = {
    "subclass": lambda: CustomMessage("Hi", "Body", SENDER, ["a@example.com"]),
    "alternative": _with_alternative,
    "attachment": _with_attachment,
    "latin-1": lambda: _with_encoding("latin-1"),
    "utf-8-other-spelling": lambda: _with_encoding("UTF-8"),
    "lazy-body": lambda: EmailMessage("Hi", gettext_lazy("Body"), SENDER, ["a@example.com"]),
    "subject-header": lambda: EmailMessage(
        "Hi", "Body", SENDER, ["a@example.com"], headers={"Subject": "Other"}
    ),
    "lone-surrogate": lambda: EmailMessage("Hi", "Body \udce9", SENDER, ["a@example.com"]),
    "bcc-header": lambda: EmailMessage(
        "Hi", "Body", SENDER, ["a@example.com"], headers={"Bcc": "b@example.com"}
    ),
    "header-name-with-a-space": lambda: EmailMessage(
        "Hi", "Body", SENDER, ["a@example.com"], headers={"X Tag": "a"}
    ),
    # Not a dict: whatever Django makes of it (here, an error) is what serialize() gives.
    "headers-not-a-dict": lambda: EmailMessage(
        "Hi", "Body", SENDER, ["a@example.com"], headers=[("X-Tag", "a")]
    ),
}
if MODERN:
    # Django 6 hands a number to the header registry as it is.
    FALLBACK_SHAPES["number-header"] = lambda: EmailMessage(
        "Hi", "Body", SENDER, ["a@example.com"], headers={"X-Count": 3}
    )
else:
    # Before 6, Django writes such a body quoted-printable; only Django's path does that.
    FALLBACK_SHAPES["line-over-998-bytes"] = lambda: EmailMessage(
        "Hi", "x" * 999, SENDER, ["a@example.com"]
    )


@pytest.mark.parametrize("make", FALLBACK_SHAPES.values(), ids=FALLBACK_SHAPES.keys())
def test_shapes_outside_the_fast_path_go_through_django(make) -> None:
    m = make()
    with fixed_clock(), django_builds() as calls:
        got = outcome(lambda: serialize(m))
        assert calls, "Django's message() should have built this message"
        assert got == djangos(m)


def test_a_header_django_refuses_raises_djangos_error() -> None:
    m = EmailMessage("Hi\nBcc: victim@example.com", "Body", SENDER, ["a@example.com"])
    with pytest.raises(ValueError) as info:
        serialize(m)
    assert djangos(m) == ("error", type(info.value), str(info.value))


def test_prepare_queues_the_serialized_bytes_and_message_id() -> None:
    m = EmailMessage("Newsletter #1", BODY, SENDER, ["user1@example.com"])
    with fixed_clock(), django_builds() as calls:
        prepared = prepare(m)
        assert not calls
        assert djangos(m) == ("ok", prepared.data, prepared.message_id)
    assert prepared.message_id.encode() in prepared.data


@pytest.mark.parametrize("separator", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e"])
def test_a_header_that_would_fold_at_a_bare_line_break_is_left_to_django(separator) -> None:
    # These split str lines but are ASCII: folding would write a line break with
    # no white space after it, which only Django's path may decide about.
    m = EmailMessage(f"Before{separator}after", "Body\n", SENDER, ["a@example.com"])
    with fixed_clock(), django_builds() as calls:
        got = outcome(lambda: serialize(m))
        assert calls, "Django's path should have written this message"
        assert got == djangos(m)


@pytest.mark.skipif(MODERN, reason="Django 4.2-5.2's line rule; Django 6's policy picks its own")
def test_a_line_of_exactly_998_bytes_stays_on_the_fast_path() -> None:
    # The byte line is longer (a form feed splits only the str line): Django's
    # own test, line by line of the str, decides, and 998 is not over the limit.
    m = EmailMessage("Hi", "a" * 998 + "\x0c" + "b\n", SENDER, ["a@example.com"])
    assert b"a" * 998 in assert_fast_and_exact(m)


def test_a_message_in_utf_8_has_its_headers_in_utf_8_whatever_the_default_charset(
    settings,
) -> None:
    settings.DEFAULT_CHARSET = "iso-8859-1"
    m = EmailMessage("Grüße aus Köln", "Body\n", "Jörg <s@example.com>", ["a@example.com"])
    m.encoding = "utf-8"
    assert b"=?utf-8?" in assert_fast_and_exact(m)


@pytest.mark.skipif(MODERN, reason="the compat32 writer's option for Django 4.2 to 5.1")
@pytest.mark.parametrize("name", ["To", "cc", "Reply-To"])
def test_before_django_5_2_address_headers_among_the_extras_are_left_to_django(name) -> None:
    headers = {name: "Other <other@example.com>", "X-Tag": "a"}
    m = EmailMessage("Hi", "Body\n", SENDER, ["a@example.com"], headers=headers)
    assert serialize_module._fast_compat32(m, address_overrides=False) is None
    plain = EmailMessage("Hi", "Body\n", SENDER, ["a@example.com"], headers={"X-Tag": "a"})
    assert serialize_module._fast_compat32(plain, address_overrides=False) is not None
