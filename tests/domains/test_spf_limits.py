"""RFC 7208's processing limits, at their exact boundaries, and zones built to explode.

Both the evaluator (``spf.check_host``, one IP) and the audit (every branch
of the record) stop where a receiver stops: the 11th DNS-querying term, the
3rd void lookup, an mx term with 11 names. The query counts are taken at the
DNS server, so they show what the check really asked.
"""

from __future__ import annotations

import pytest

from django_smtprelay.domains import spf, spf_audit
from django_smtprelay.domains.check import check_domain
from django_smtprelay.domains.resolver import Resolver
from tests.domains.limits_zone import ALLOWED_IP, ORIGIN, asked


def evaluate(name: str) -> spf.SPFResult:
    domain = f"{name}.{ORIGIN}"
    return spf.check_host(ALLOWED_IP, domain, f"postmaster@{domain}", Resolver())


def audit(name: str) -> dict[str, str]:
    result = spf_audit.audit(f"{name}.{ORIGIN}", Resolver(), "v=spf1 -all")
    return {f.code: f.found for f in result.findings}


# The evaluator, one IP: the allowed address is listed after the terms under test.


@pytest.mark.parametrize(
    ("name", "lookups"),
    [("ten", 10), ("nest10", 10), ("void2", 2), ("names10", 1)],
)
def test_evaluation_at_the_limit_passes(limits_dns, name, lookups):
    outcome = evaluate(name)
    assert outcome.result == "pass", outcome.reason
    assert outcome.lookups == lookups


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (
            "eleven",
            f"more than 10 DNS lookups: lookup 11 is a:h11.hosts.{ORIGIN} "
            f"in the SPF record of eleven.{ORIGIN}",
        ),
        (
            "nest11",
            f"more than 10 DNS lookups: lookup 11 is include:in0.{ORIGIN} "
            f"in the SPF record of in10.{ORIGIN}",
        ),
        (
            "void3",
            f"more than 2 void lookups: void lookup 3 is a:gone3.{ORIGIN} "
            f"in the SPF record of void3.{ORIGIN}",
        ),
        (
            "names11",
            f"mx:mx11.{ORIGIN} in the SPF record of names11.{ORIGIN}: "
            f"mx:mx11.{ORIGIN} has 11 MX names, more than 10",
        ),
        ("incbroken", f"broken.{ORIGIN}: unknown term 'foo'"),
        ("inctwo", f"2 SPF records at two.{ORIGIN}"),
        ("incnone", f"include:nospf.{ORIGIN} has no SPF record"),
        ("loopa", f"loop through loopa.{ORIGIN}"),
    ],
)
def test_evaluation_one_past_the_limit_is_permerror(limits_dns, name, reason):
    outcome = evaluate(name)
    assert (outcome.result, outcome.reason) == ("permerror", reason)


def test_evaluation_of_a_1000_deep_chain_stops_at_the_limit(limits_dns):
    outcome = spf.check_host("192.0.2.8", f"c0.chain.{ORIGIN}", "a@x.test", Resolver())
    assert outcome.result == "permerror"
    assert outcome.reason.startswith("more than 10 DNS lookups: lookup 11 is include:c11.chain")
    assert asked(limits_dns, f"chain.{ORIGIN}") == 11


# The audit, every branch: same limits, and it says where each was crossed.


@pytest.mark.parametrize("name", ["ten", "nest10", "void2", "names10", "good"])
def test_audit_at_the_limit_finds_nothing(limits_dns, name):
    assert audit(name) == {}


def test_audit_eleven_lookups(limits_dns):
    found = audit("eleven")
    assert list(found) == ["spf.too_many_lookups"]
    assert found["spf.too_many_lookups"] == (
        f"11 lookups: the limit of 10 is crossed by a:h11.hosts.{ORIGIN} "
        f"in the SPF record of eleven.{ORIGIN}"
    )


def test_audit_eleven_lookups_through_an_include(limits_dns):
    assert audit("nest11") == {
        "spf.too_many_lookups": (
            f"11 lookups: the limit of 10 is crossed by include:in0.{ORIGIN} "
            f"in the SPF record of in10.{ORIGIN} (include:in10.{ORIGIN} (+11))"
        )
    }


def test_audit_three_void_lookups(limits_dns):
    assert audit("void3") == {
        "spf.too_many_void_lookups": (
            f"3 void lookups: the limit of 2 is crossed by a:gone3.{ORIGIN} "
            f"in the SPF record of void3.{ORIGIN}"
        )
    }


def test_audit_eleven_mx_names(limits_dns):
    assert audit("names11") == {
        "spf.too_many_names": (
            f"11 MX names: the limit of 10 is crossed by mx:mx11.{ORIGIN} "
            f"in the SPF record of names11.{ORIGIN}"
        )
    }


@pytest.mark.parametrize(
    ("name", "found"),
    [
        ("incbroken", f"include:broken.{ORIGIN} in the SPF record of incbroken.{ORIGIN}: "),
        ("inctwo", f"include:two.{ORIGIN} in the SPF record of inctwo.{ORIGIN}: 2 SPF records"),
    ],
)
def test_audit_include_of_a_permerror_is_a_permerror(limits_dns, name, found):
    findings = audit(name)
    assert list(findings) == ["spf.include_error"]
    assert findings["spf.include_error"].startswith(found)


def test_audit_of_a_domain_without_an_spf_record_suggests_one(limits_dns):
    result = spf_audit.audit(f"nospf.{ORIGIN}", Resolver(), "v=spf1 include:relay.test -all")
    assert [(f.code, f.found, f.expected) for f in result.findings] == [
        ("spf.missing", "no v=spf1 TXT record", "v=spf1 include:relay.test -all")
    ]
    assert result.records == []


def test_audit_of_a_name_that_does_not_exist_has_no_records(limits_dns):
    result = spf_audit.audit(f"nothing-here.{ORIGIN}", Resolver(), "v=spf1 -all")
    assert [f.code for f in result.findings] == ["spf.missing"]
    assert result.records == []


def test_audit_of_a_domain_with_two_spf_records(limits_dns):
    result = spf_audit.audit(f"two.{ORIGIN}", Resolver(), "v=spf1 -all")
    (multiple,) = [f for f in result.findings if f.code == "spf.multiple"]
    assert sorted(multiple.found.split(" | ")) == ["v=spf1 -all", "v=spf1 ip4:192.0.2.1 -all"]
    assert multiple.expected == "one v=spf1 record"
    assert sorted(result.records) == ["v=spf1 -all", "v=spf1 ip4:192.0.2.1 -all"]


def test_audit_when_the_record_cannot_be_looked_up(limits_dns):
    name = f"good.{ORIGIN}"
    limits_dns.servfail.add(name)
    try:
        result = spf_audit.audit(name, Resolver(), "v=spf1 -all")
    finally:
        limits_dns.servfail.discard(name)
    ((code, found),) = [(f.code, f.found) for f in result.findings]
    assert code == "spf.unavailable"
    assert name in found


def test_audit_include_of_a_name_without_an_spf_record(limits_dns):
    assert audit("incnone") == {"spf.include_not_found": f"include:nospf.{ORIGIN}"}


def test_audit_include_of_a_name_that_does_not_exist_is_a_void_lookup(limits_dns):
    assert audit("incgone") == {
        "spf.too_many_void_lookups": (
            f"3 void lookups: the limit of 2 is crossed by include:gone3.{ORIGIN} "
            f"in the SPF record of incgone.{ORIGIN}"
        ),
        "spf.include_not_found": f"include:gone3.{ORIGIN}",
    }


def test_audit_include_loop(limits_dns):
    assert audit("loopa") == {
        "spf.loop": f"loopa.{ORIGIN} -> loopb.{ORIGIN} -> loopa.{ORIGIN}",
    }


def test_audit_of_a_1000_deep_chain_is_bounded(limits_dns):
    found = audit("c0.chain")
    assert list(found) == ["spf.too_many_lookups"]
    assert found["spf.too_many_lookups"].startswith(
        f"11 lookups: the limit of 10 is crossed by include:c11.chain.{ORIGIN} "
        f"in the SPF record of c10.chain.{ORIGIN} ("
    )
    # The record itself and the ten includes within the limit; nothing past it.
    assert asked(limits_dns, f"chain.{ORIGIN}") == 11


def test_audit_of_a_10_wide_4_deep_tree_asks_at_most_the_limit(limits_dns):
    found = audit("wide")
    assert found["spf.too_many_lookups"].startswith("11 lookups: the limit of 10 is crossed by ")
    # 1 + 10 + 100 + 1,000 + 10,000 records; a walk of every branch asks them all.
    assert asked(limits_dns, f"wide.{ORIGIN}") == 11


def test_networks_of_a_wide_tree_are_bounded(limits_dns):
    networks = spf_audit.networks_of(f"wide.{ORIGIN}", Resolver())
    assert [str(n) for n in networks] == ["192.0.2.9/32"] * 7
    assert asked(limits_dns, f"wide.{ORIGIN}") == 11


def test_whole_check_of_hostile_zones_is_bounded(limits_dns, make_route):
    route = make_route("direct", sending_ips=ALLOWED_IP)
    for name, limit in (("c0.chain", f"chain.{ORIGIN}"), ("wide", f"wide.{ORIGIN}")):
        report = check_domain(f"{name}.{ORIGIN}", routes=[route])
        assert "spf.too_many_lookups" in {f.code for f in report.findings}
        assert report.routes[0].spf == "permerror"
        assert report.verdict == "failing"
        # The audit and the evaluation of the route share the resolver's cache;
        # the other TXT queries are DMARC, BIMI, MTA-STS and TLS-RPT names.
        spf_names = [
            name
            for (name, qtype, _) in limits_dns.queries
            if name.endswith(limit) and qtype == "TXT" and "._" not in f".{name}"
        ]
        assert len(spf_names) == 11
