"""SPF: the parser, macros, and check_host() against real zones."""

from __future__ import annotations

import pytest

from django_smtprelay.domains import spf, spf_audit
from django_smtprelay.domains.resolver import Resolver


def test_parse_terms_and_modifiers():
    record = spf.parse("v=spf1 ip4:192.0.2.0/24 -a:mail.example.com/28 ~mx include:x.test ?all")
    assert [t.mechanism for t in record.terms] == ["ip4", "a", "mx", "include", "all"]
    assert record.terms[1].qualifier == "-" and record.terms[1].cidr4 == 28
    assert record.all_term.result == "neutral"
    assert spf.parse("v=spf1 redirect=_spf.x.test").redirect == "_spf.x.test"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("v=spf1 ip4:300.1.2.3 -all", "'ip4:300.1.2.3': '300.1.2.3' is not an ip4 address"),
        ("v=spf1 ip4:2001:db8::1 -all", "'ip4:2001:db8::1': '2001:db8::1' is not an ip4 address"),
        ("v=spf1 ip6:192.0.2.1 -all", "'ip6:192.0.2.1': '192.0.2.1' is not an ip6 address"),
        ("v=spf1 ip4:192.0.2.1/24//64 -all", "'ip4:192.0.2.1/24//64': one prefix length only"),
        ("v=spf1 foo -all", "unknown term 'foo'"),
        ("v=spf1 include -all", "'include': include needs a domain (include:example.com)"),
        ("v=spf1 exists -all", "'exists': exists needs a domain (exists:example.com)"),
        ("v=spf1 all:x.test", "'all:x.test': all takes no value"),
        ("v=spf1 -all/24", "'-all/24': all takes no value"),
        ("v=spf1 redirect=a.test redirect=b.test", "redirect= appears twice"),
        ("v=spf1 exp=a.test exp=b.test -all", "exp= appears twice"),
        ("v=spf1 redirect=", "'redirect=' has no domain"),
        ("v=spf2 -all", "'v=spf2 -all' does not start with v=spf1"),
        ("", "'' does not start with v=spf1"),
    ],
)
def test_parse_errors_name_the_term_and_what_is_wrong(text, error):
    # The exact message: it is what the admin shows the owner of the domain.
    assert spf.parse(text).errors == [error]


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
        ("192.0.2.1", "ptr.test", "pass"),  # out1.relay.test, whose A is 192.0.2.1
        ("192.0.2.1", "ptrexact.test", "pass"),
        ("192.0.2.1", "ptrlabel.test", "fail"),  # a suffix counts at a dot only
        ("192.0.2.1", "ptrself.test", "fail"),  # not under ptrself.test
        ("192.0.2.3", "ptr.test", "fail"),  # out3.relay.test has no address
        ("203.0.113.9", "ptr.test", "fail"),  # no reverse name at all
        ("2001:db8:1:2::99", "a6.test", "pass"),  # the /64 of an AAAA
        ("2001:db8:1:3::10", "a6.test", "fail"),
        ("198.51.100.99", "mxnet.test", "pass"),  # the /24 of the MX host's address
        ("198.51.101.25", "mxnet.test", "fail"),
        ("192.0.2.1", "tempa.test", "temperror"),
    ],
)
def test_check_host(dns, ip, domain, result):
    outcome = spf.check_host(ip, domain, f"postmaster@{domain}", Resolver())
    assert outcome.result == result, outcome.reason


@pytest.mark.parametrize("domain", ["tempa.test", "tempmx.test"], ids=["a-term", "mx-host"])
def test_a_lookup_that_cannot_be_made_is_a_temperror_naming_the_name(dns, domain):
    # tempa's a: term asks for servfail.test; tempmx's MX host is servfail.test.
    outcome = spf.check_host("192.0.2.1", domain, f"postmaster@{domain}", Resolver())
    assert outcome.result == "temperror"
    assert "servfail.test" in outcome.reason


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


def test_networks_of_a_record_are_its_pass_terms_through_includes_and_redirects(dns):
    from ipaddress import ip_network

    from django_smtprelay.domains.spf_audit import networks_of

    assert networks_of("nets.test", Resolver()) == [
        ip_network("2001:db8::/32"),
        ip_network("192.0.2.1/32"),  # a:out1.relay.test
        ip_network("198.51.100.25/32"),  # mx:clean.test's host
        # include:spf.relay.test; nets.test and SPF.relay.test. again add nothing
        ip_network("192.0.2.0/30"),
        ip_network("198.18.0.0/15"),  # include:spf.RELAYX, names being case-blind
    ]
    assert networks_of("netsredirect.test", Resolver()) == [
        ip_network("203.0.113.0/24"),
        ip_network("192.0.2.0/30"),
    ]
    # Not a redirect without one, nor a term whose name is a macro taken literally.
    assert networks_of("netsnoall.test", Resolver()) == [ip_network("203.0.113.7/32")]
    assert networks_of("netsmacro.test", Resolver()) == [ip_network("203.0.113.8/32")]
    # +all names no network, and the terms after the include still count.
    assert networks_of("netsplusall.test", Resolver()) == [ip_network("203.0.113.9/32")]
    assert networks_of("nothing.test", Resolver()) == []


def test_lookups_an_include_adds_count_itself_and_its_record(dns):
    from django_smtprelay.domains.spf_audit import lookups_added_by_include

    resolver = Resolver()
    assert lookups_added_by_include("spf.relay.test", resolver) == 1
    assert lookups_added_by_include("bounce.relay.test", resolver) == 2
    assert lookups_added_by_include("nothing.test", resolver) == 1
    assert lookups_added_by_include("servfail.test", resolver) is None
    assert lookups_added_by_include("tempinc.test", resolver) is None  # servfail inside
    # l1's bare a and mx are its own name's: 1 + a + mx + include (l3: a, mx, exists, include)
    assert lookups_added_by_include("l1.lookups.test", resolver) == 8


NO_ALL = "v=spf1 ip4:203.0.113.7"
BAD_IP4 = "'300.1.2.3' is not an ip4 address"
LOOKUPS_BREAKDOWN = (
    "include:spf.relay.test (+1), include:l3.lookups.test (+5), "
    "include:l1.lookups.test (+8), include:l2.lookups.test (+3)"
)


@pytest.mark.parametrize(
    ("domain", "findings"),
    [
        ("clean.test", []),
        ("plusall.test", [("spf.plus_all", "+all", "-all")]),
        ("neutral.test", [("spf.neutral_all", "?all", "-all")]),
        (
            "netsnoall.test",
            [("spf.no_all", "v=spf1 ip4:203.0.113.7", "v=spf1 ip4:203.0.113.7 -all")],
        ),
        ("netsredirect.test", []),  # a redirect stands in for the all term
        ("ptr.test", [("spf.ptr_used", "ptr:relay.test", "ip4:/ip6: ranges")]),
        (
            "twospf.test",
            [
                (
                    "spf.multiple",
                    "v=spf1 include:spf.relay.test -all | v=spf1 ip4:198.51.100.7 -all",
                    "one v=spf1 record",
                )
            ],
        ),
        (
            "syntax.test",
            [
                (
                    "spf.syntax",
                    "'ip4:300.1.2.3': '300.1.2.3' is not an ip4 address",
                    "a valid SPF term",
                ),
                ("spf.syntax", "unknown term 'foo'", "a valid SPF term"),
            ],
        ),
        (
            "lookups.test",
            [
                (
                    "spf.too_many_lookups",
                    "11 lookups: the limit of 10 is crossed by a:h2.lookups.test "
                    f"in the SPF record of l2.lookups.test ({LOOKUPS_BREAKDOWN})",
                    "at most 10",
                )
            ],
        ),
    ],
)
def test_audit_findings_say_what_was_found_and_what_is_expected(dns, domain, findings):
    result = spf_audit.audit(domain, Resolver(), "v=spf1 -all")

    def found(f):  # the DNS server answers two records in either order
        return " | ".join(sorted(f.found.split(" | "))) if f.code == "spf.multiple" else f.found

    assert [(f.code, found(f), f.expected) for f in result.findings] == findings
    # The record the findings are about, parsed, for the report's record view.
    assert result.data["record"].text == result.records[0]
