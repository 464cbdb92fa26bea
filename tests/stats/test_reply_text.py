"""normalise_reply: the same error from different messages reads the same."""

import pytest

from django_smtprelay.reply_text import MAX_LENGTH, normalise_reply


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (
            "5.1.1 <ann@example.com>: Recipient address rejected: User unknown",
            "5.1.1 <bob.smith+x@example.org>: Recipient address rejected: User unknown",
        ),
        ("4.7.0 Try again in 300 seconds", "4.7.0 Try again in 12 seconds"),
        ("Queued as 4Xk9Pq2LmZz1", "Queued as 5Ab7Rq0TmWy3"),
        ("connection to [192.0.2.1]:25 refused", "connection to [198.51.100.77]:587 refused"),
        ("blocked from 2001:db8::1 by policy", "blocked from 2001:db8:0:1::ff by policy"),
        ("id deadbeef01234567 failed", "id 0123456789abcdef failed"),
        ("too  many\r\n  connections", "too many connections"),
    ],
)
def test_replies_that_differ_only_in_details_normalise_alike(a: str, b: str) -> None:
    assert normalise_reply(a) == normalise_reply(b)


def test_the_masks_are_named() -> None:
    assert (
        normalise_reply("5.1.1 <ann@example.com> refused from 192.0.2.1 after 3 tries, id Ab12Cd3")
        == "5.1.1 <addr> refused from <ip> after <n> tries, id <id>"
    )


def test_the_enhanced_code_and_the_words_are_kept() -> None:
    assert normalise_reply("5.7.1 Message rejected as spam") == "5.7.1 Message rejected as spam"
    assert normalise_reply("4.2.2 Mailbox full") != normalise_reply("5.2.2 Mailbox full")


def test_gmail_style_reply_groups_by_kind() -> None:
    text = "5.1.1 The email account does not exist. https://support.google.com/mail/?p=NoSuchUser"
    a = f"{text} d2e1a72fcca58-7241c8c1b2fsi123.26 - gsmtp"
    b = f"{text} a640c23a62f3a-7331c8c1b2fsi998.11 - gsmtp"
    assert normalise_reply(a) == normalise_reply(b)


def test_result_is_bounded() -> None:
    out = normalise_reply("x " * 100_000)
    assert len(out) <= MAX_LENGTH


def test_empty_reply() -> None:
    assert normalise_reply("") == ""
