"""SPF: the parser, macros, and check_host() against real zones."""

from __future__ import annotations

import pytest

from django_smtprelay.domains import spf
from django_smtprelay.domains.resolver import Resolver


def test_parse_terms_and_modifiers():
    record = spf.parse("v=spf1 ip4:192.0.2.0/24 -a:mail.example.com/28 ~mx include:x.test ?all")
    assert [t.mechanism for t in record.terms] == ["ip4", "a", "mx", "include", "all"]
    assert record.terms[1].qualifier == "-" and record.terms[1].cidr4 == 28
    assert record.all_term.result == "neutral"
    assert spf.parse("v=spf1 redirect=_spf.x.test").redirect == "_spf.x.test"


@pytest.mark.parametrize(
    "text",
    [
        "v=spf1 ip4:300.1.2.3 -all",
        "v=spf1 ip4:2001:db8::1 -all",
        "v=spf1 foo -all",
        "v=spf1 include -all",
        "v=spf1 redirect=a.test redirect=b.test",
        "v=spf2 -all",
    ],
)
def test_parse_errors(text):
    assert spf.parse(text).errors


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("v=spf1 exists:%{x}.example.com -all", "unknown macro letter 'x'"),
        # c, r and t belong to explanation strings, never to the record.
        ("v=spf1 exists:%{c}.example.com -all", "unknown macro letter 'c'"),
        ("v=spf1 include:%{d.example.com -all", "malformed macro"),
        ("v=spf1 a:%d.example.com -all", "malformed macro"),
        ("v=spf1 mx:mail.%{d0} -all", "keeps 0 labels"),
        ("v=spf1 redirect=%{q}.example.com", "unknown macro letter 'q'"),
        ("v=spf1 exp=explain.% -all", "malformed macro"),
        ("v=spf1 unknown-mod=%{z} -all", "unknown macro letter 'z'"),
    ],
)
def test_a_bad_macro_is_a_syntax_error(text, why):
    record = spf.parse(text)
    assert any(why in error for error in record.errors), record.errors


@pytest.mark.parametrize(
    "text",
    [
        "v=spf1 exists:%{ir}.%{v}._spf.%{d2} -all",
        "v=spf1 exists:%{l1r-+}.%{o}.x.example.com -all",
        "v=spf1 include:%{D}.example.com -all",
        "v=spf1 a:%%.%_.%-.example.com -all",
        "v=spf1 ptr:%{d10r} exp=%{h}.exp.example.com -all",
    ],
)
def test_valid_macros_parse(text):
    assert spf.parse(text).errors == []


def test_expand_refuses_what_parse_refuses():
    with pytest.raises(ValueError, match="unknown macro letter"):
        spf.expand("%{x}", ip="192.0.2.3", sender="a@b.example", domain="b.example")


def test_is_spf():
    assert spf.is_spf("v=spf1 -all") and spf.is_spf("V=SPF1")
    assert not spf.is_spf("v=spf10 -all") and not spf.is_spf("google-site-verification=x")


def test_macro_expansion():
    kwargs = {
        "ip": "192.0.2.3",
        "sender": "strong-bad@email.example.com",
        "domain": "email.example.com",
    }
    assert spf.expand("%{s}", **kwargs) == "strong-bad@email.example.com"
    assert spf.expand("%{o}", **kwargs) == "email.example.com"
    assert spf.expand("%{d4}", **kwargs) == "email.example.com"
    assert spf.expand("%{d2}", **kwargs) == "example.com"
    assert spf.expand("%{dr}", **kwargs) == "com.example.email"
    assert spf.expand("%{l-}", **kwargs) == "strong.bad"
    assert spf.expand("%{ir}.%{v}._spf.%{d2}", **kwargs) == "3.2.0.192.in-addr._spf.example.com"
    v6 = spf.expand("%{i}", ip="2001:db8::cb01", sender="a@b.c", domain="b.c")
    assert v6 == "2.0.0.1.0.d.b.8." + "0." * 20 + "c.b.0.1"
    # RFC 7208 section 7.4's examples.
    assert spf.expand("%{d2r}", **kwargs) == "example.email"  # reversed, then the right 2
    assert spf.expand("%{lr-}", **kwargs) == "bad.strong"
    assert spf.expand("%{l1r-}", **kwargs) == "strong"
    assert spf.expand("%{d9}", **kwargs) == "email.example.com"  # more than there are: all
    # Uppercase letters are URL-escaped; escapes expand.
    assert spf.expand("%{L}", ip="192.0.2.3", sender="a+b@x.example", domain="x.example") == (
        "a%2Bb"
    )
    assert spf.expand("a%%b%_c%-d", **kwargs) == "a%b c%20d"
    # Over 253 characters: labels go from the left until it fits.
    long = spf.expand(
        "%{l}.%{d}", ip="192.0.2.3", sender=("x." * 130) + "y@e.example", domain="e.example"
    )
    assert len(long) <= 253 and long.endswith("y.e.example")


@pytest.mark.parametrize(
    ("ip", "domain", "result"),
    [
        ("192.0.2.1", "clean.test", "pass"),  # through include:spf.relay.test
        ("198.51.100.7", "clean.test", "pass"),
        ("203.0.113.99", "clean.test", "fail"),
        ("2001:db8::1", "clean.test", "fail"),
        ("192.0.2.2", "redirect.test", "pass"),
        ("203.0.113.99", "redirect.test", "fail"),
        ("203.0.113.99", "neutral.test", "neutral"),
        ("203.0.113.99", "plusall.test", "pass"),
        ("192.0.2.1", "nothing.test", "none"),
        ("192.0.2.1", "twospf.test", "permerror"),
        ("192.0.2.1", "void.test", "permerror"),
        ("192.0.2.1", "loop.test", "permerror"),
        ("192.0.2.1", "syntax.test", "permerror"),
        ("192.0.2.1", "brokenredirect.test", "permerror"),
        ("192.0.2.1", "servfail.test", "temperror"),
        ("203.0.113.3", "lookups.test", "pass"),  # l3's a matches at lookup 5
        ("198.51.100.7", "lookups.test", "permerror"),  # needs the 11th lookup
    ],
)
def test_check_host(dns, ip, domain, result):
    outcome = spf.check_host(ip, domain, f"postmaster@{domain}", Resolver())
    assert outcome.result == result, outcome.reason


def test_check_host_reports_matching_term(dns):
    outcome = spf.check_host("198.51.100.7", "clean.test", "a@clean.test", Resolver())
    assert outcome.term == "ip4:198.51.100.7"
    assert outcome.lookups == 1


@pytest.mark.parametrize(
    ("domain", "why"),
    [
        ("badmacro.test", "unknown macro letter 'x'"),
        ("openmacro.test", "malformed macro"),
        ("zeromacro.test", "keeps 0 labels"),
    ],
)
def test_a_record_with_a_bad_macro_is_a_permerror_not_a_pass(dns, domain, why):
    # The relay's include would pass 192.0.2.1; a receiver never gets that far.
    outcome = spf.check_host("192.0.2.1", domain, f"postmaster@{domain}", Resolver())
    assert outcome.result == "permerror"
    assert why in outcome.reason


@pytest.mark.parametrize(
    ("ip", "sender", "result"),
    [
        ("192.0.2.3", "strong-bad@macro.test", "pass"),  # 3.2.0.192.strong._spf.macro.test
        ("192.0.2.4", "strong-bad@macro.test", "fail"),
        ("192.0.2.3", "weak-bad@macro.test", "fail"),
    ],
)
def test_valid_macros_are_evaluated_as_receivers_do(dns, ip, sender, result):
    outcome = spf.check_host(ip, "macro.test", sender, Resolver())
    assert outcome.result == result, outcome.reason
