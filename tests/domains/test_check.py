"""check_domain() against the test zones: each zone yields its findings and verdict."""

from __future__ import annotations

import pytest

from django_smtprelay.domains.check import check_domain, check_sender_domain
from django_smtprelay.domains.findings import CATALOGUE
from django_smtprelay.domains.refresh import refresh_domains
from django_smtprelay.models import SenderDomain


def codes(report, route=None):
    return {f.code for f in report.findings if route is None or f.route == route}


def by_route(report):
    return {r.route: r for r in report.routes}


def test_clean_domain_is_ok(dns, routes):
    report = check_domain("clean.test")
    assert report.verdict == "ok", [(f.code, f.found) for f in report.findings]
    assert report.findings == []
    assert report.areas["spf"] == report.areas["dmarc"] == report.areas["dkim"] == "ok"
    relay, direct = by_route(report)["relay"], by_route(report)["direct"]
    assert relay.spf == "pass" and relay.aligned_by == ["spf", "dkim"] and relay.dmarc_pass
    assert relay.hosts == ["192.0.2.1", "192.0.2.2"]
    assert relay.hosts_source == "spf_include:spf.relay.test"
    assert direct.spf == "pass" and direct.aligned_by == ["spf"]
    assert report.records["spf"] == ["v=spf1 include:spf.relay.test ip4:198.51.100.7 -all"]
    assert report.records["mx"] == ["10 mx.clean.test"]
    assert report.dkim_keys[0]["bits"] == 2048
    assert report.dkim_keys[0]["matches_private_key"] is True
    checklist = {c.key: c.status for c in report.checklist}
    assert checklist["spf"] == checklist["dmarc"] == checklist["alignment"] == "met"
    assert checklist["ptr"] == "met" and checklist["unsubscribe"] == "manual"
    assert checklist["dkim"] == "not_met"  # the direct route does not sign


def test_lookup_limit_through_nested_includes(dns, routes):
    report = check_domain("lookups.test")
    finding = next(f for f in report.findings if f.code == "spf.too_many_lookups")
    assert finding.found.startswith("11 lookups") and finding.blocking
    assert "include:l3.lookups.test (+5)" in finding.found
    assert report.verdict == "failing"
    # The relay matches before the limit; the direct host needs the 11th lookup.
    assert by_route(report)["relay"].spf == "pass"
    assert by_route(report)["direct"].spf == "permerror"
    assert "spf.route_error" in codes(report, "direct")


def test_adding_include_would_exceed_limit(dns, make_route):
    route = make_route("relay", spf_include="spf.relay.test")
    report = check_domain("nearlimit.test", routes=[route])
    found = {f.code: f for f in report.findings}
    assert found["spf.route_not_authorized"].expected == "include:spf.relay.test"
    assert 'Add "include:spf.relay.test"' in found["spf.route_not_authorized"].hint
    # 9 + 1 is 10: still allowed. A relay include with nested lookups would not be.
    assert "spf.include_would_exceed_limit" not in found


def test_include_with_nested_lookups_would_exceed(dns, make_route):
    route = make_route("relay", spf_include="bounce.relay.test")
    report = check_domain("nearlimit.test", routes=[route])
    advice = next(f for f in report.findings if f.code == "spf.include_would_exceed_limit")
    assert advice.found == "9 + 2 lookups" and not advice.blocking


def test_void_lookups(dns, routes):
    report = check_domain("void.test")
    assert "spf.too_many_void_lookups" in codes(report)
    assert by_route(report)["relay"].spf == "permerror"


@pytest.mark.parametrize(
    ("domain", "code", "blocking"),
    [
        ("plusall.test", "spf.plus_all", False),
        ("neutral.test", "spf.neutral_all", False),
        ("twospf.test", "spf.multiple", True),
        ("syntax.test", "spf.syntax", True),
        ("loop.test", "spf.loop", True),
        ("brokenredirect.test", "spf.include_not_found", True),
        ("nothing-at-all.test", "spf.missing", True),
        ("nodmarc.test", "dmarc.missing", True),
        ("malformed.test", "dmarc.malformed", True),
        ("badtags.test", "dmarc.invalid_policy", True),
        ("badtags.test", "dmarc.invalid_tag", False),
        ("twodmarc.test", "dmarc.multiple", True),
        ("nonedmarc.test", "dmarc.policy_none", False),
        ("nonedmarc.test", "dmarc.pct_partial", False),
        ("nonedmarc.test", "dmarc.report_not_authorized", False),
        ("strict.test", "dmarc.no_reports", False),
        ("news.parent.test", "dmarc.inherited", False),
        ("shortkey.test", "dkim.key_too_short", True),
        ("weakkey.test", "dkim.key_weak", False),
        ("wrongkey.test", "dkim.key_mismatch", True),
        ("revoked.test", "dkim.revoked", True),
        ("nodmarc.test", "dkim.missing", True),
        ("nullmx.test", "mx.null", True),
        ("nodmarc.test", "mx.missing", False),
        ("bimi.test", "bimi.dmarc_not_enforcing", False),
    ],
)
def test_zone_findings(dns, routes, domain, code, blocking):
    report = check_domain(domain)
    found = [f for f in report.findings if f.code == code]
    assert found, sorted(codes(report))
    assert found[0].blocking is blocking
    assert found[0].hint and "{" not in found[0].hint
    assert report.verdict == ("failing" if blocking else report.verdict)


def test_warning_verdict_without_blocking_findings(dns, routes):
    report = check_domain("clean.test", routes=[routes[1]])
    assert codes(report) == {"dkim.no_selector", "dkim.not_signing"}
    assert report.verdict == "warning"


def test_report_destination_authorized_is_not_flagged(dns, routes):
    report = check_domain("nonedmarc.test")
    found = [f.found for f in report.findings if f.code == "dmarc.report_not_authorized"]
    assert found == ["rua=mailto:agg@noauth.test"]


def test_strict_alignment_fails_per_route(dns, make_route, signing_pem):
    route = make_route(
        "rewriting",
        spf_include="spf.relay.test",
        return_path_domain="bounce.strict.test",
        dkim_domain="mail.strict.test",
        dkim_selector="s1",
        dkim_private_key=signing_pem,
    )
    report = check_domain("strict.test", routes=[route])
    result = report.routes[0]
    assert result.spf == "pass" and result.envelope_domain == "bounce.strict.test"
    assert result.dkim == "pass"
    assert not result.spf_aligned and not result.dkim_aligned and not result.dmarc_pass
    failure = next(f for f in report.findings if f.code == "dmarc.route_fails")
    assert failure.route == "rewriting" and failure.blocking
    assert "aspf=s" in failure.hint and "adkim=s" in failure.hint


def test_relaxed_alignment_passes_with_subdomains(dns, make_route, signing_pem):
    route = make_route(
        "rewriting",
        spf_include="spf.relay.test",
        return_path_domain="bounce.strict.test",
        dkim_domain="mail.strict.test",
        dkim_selector="s1",
    )
    report = check_domain("news.parent.test", routes=[route])
    assert "dmarc.route_fails" in codes(report)  # different organizational domain
    report = check_domain("clean.test", routes=[route])
    assert report.routes[0].aligned_by == []


def test_return_path_at_relay_is_not_aligned(dns, make_route):
    route = make_route("esp", spf_include="spf.relay.test", return_path_domain="bounce.relay.test")
    report = check_domain("clean.test", routes=[route])
    result = report.routes[0]
    assert result.spf == "pass" and not result.spf_aligned
    assert result.fix.startswith("Use a return-path domain under clean.test")


def test_route_not_authorized(dns, make_route):
    route = make_route("other", sending_ips="203.0.113.50\n203.0.113.64/30")
    report = check_domain("clean.test", routes=[route])
    finding = next(f for f in report.findings if f.code == "spf.route_not_authorized")
    assert finding.expected == "ip4:203.0.113.50/32 ip4:203.0.113.64/30"
    assert finding.found.startswith("fail")
    assert report.routes[0].hosts == ["203.0.113.50", "203.0.113.65", "203.0.113.66"]


def test_route_with_unknown_hosts(dns, make_route):
    report = check_domain("clean.test", routes=[make_route("mystery")])
    assert report.routes[0].spf == "unknown"
    assert "spf.route_hosts_unknown" in codes(report)
    assert "dmarc.route_fails" not in codes(report)


def test_ptr_checks_of_sending_hosts(dns, make_route):
    route = make_route("hosts", sending_ips="192.0.2.3, 198.51.100.99", security="none")
    report = check_domain("clean.test", routes=[route])
    found = {f.code: f.found for f in report.findings}
    assert found["host.ptr_mismatch"] == "192.0.2.3 -> out3.relay.test"
    assert found["host.ptr_missing"] == "198.51.100.99"
    assert found["route.no_tls"] == "security=none"
    checklist = {c.key: c.status for c in report.checklist}
    assert checklist["ptr"] == "not_met" and checklist["tls"] == "not_met"


@pytest.mark.parametrize("domain", ["servfail.test", "timeout.test"])
def test_dns_failures_are_could_not_check_never_missing(dns, routes, domain):
    report = check_domain(domain)
    assert report.verdict == "unknown"
    assert {"spf.unavailable", "dmarc.unavailable", "dkim.unavailable", "mx.unavailable"} <= codes(
        report
    )
    assert not {c for c in codes(report) if c.endswith(".missing")}
    assert report.areas["spf"] == "unknown"
    assert {c.key: c.status for c in report.checklist}["dmarc"] == "unknown"


def test_subdomain_policy_via_organizational_domain(dns, routes):
    report = check_domain("news.parent.test")
    assert report.org_domain == "parent.test"
    inherited = next(f for f in report.findings if f.code == "dmarc.inherited")
    assert inherited.found == "_dmarc.parent.test (sp applies: reject)"
    assert "dmarc.missing" not in codes(report)
    # np applies to a name that does not exist
    report = check_domain("ghost.parent.test")
    inherited = next(f for f in report.findings if f.code == "dmarc.inherited")
    assert "np applies: quarantine" in inherited.found


def test_bimi_with_enforcing_dmarc_is_fine(dns, routes):
    report = check_domain("clean.test")
    assert report.records["bimi"] == ["v=BIMI1; l=https://clean.test/logo.svg"]
    assert report.records["mta_sts"] == [
        "v=STSv1; id=20240101",
        "policy: mode=enforce; max_age=86400; mx=mx.clean.test",
    ]
    assert report.records["tls_rpt"] == ["v=TLSRPTv1; rua=mailto:tls@clean.test"]


def test_json_shape(dns, routes):
    data = check_domain("lookups.test").to_json()
    assert {"domain", "verdict", "checked_at", "records", "findings", "routes"} <= set(data)
    assert data["verdict"] in ("ok", "warning", "failing", "unknown")
    for finding in data["findings"]:
        assert {"code", "severity", "blocking", "found", "expected", "hint"} <= set(finding)
        assert finding["code"] in CATALOGUE
    for route in data["routes"]:
        assert {"route", "spf", "dmarc_pass", "aligned_by"} <= set(route)


def test_save_and_refresh(dns, routes):
    SenderDomain.objects.create(domain="Clean.Test.")
    SenderDomain.objects.create(domain="nullmx.test", dkim_selectors="s1, s2")
    assert refresh_domains() == {"ok": 1, "failing": 1}
    clean = SenderDomain.objects.get(domain="clean.test")
    assert clean.verdict == "ok" and clean.checked_at and clean.areas["spf"] == "ok"
    assert clean.route_results[0]["route"] == "relay"
    nullmx = SenderDomain.objects.get(domain="nullmx.test")
    assert "mx.null" in {f["code"] for f in nullmx.findings}
    assert "s2._domainkey.nullmx.test" in {
        f["expected"] for f in nullmx.findings if f["code"] == "dkim.missing"
    }
    report = check_sender_domain(nullmx)
    assert report.verdict == "failing"


def test_disabled_routes_are_not_checked(dns, routes):
    routes[1].enabled = False
    routes[1].save()
    assert [r.route for r in check_domain("clean.test").routes] == ["relay"]


def test_every_catalogue_code_is_documented():
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "domains.md").read_text()
    missing = [code for code in CATALOGUE if f"`{code}`" not in doc]
    assert not missing


def test_only_routes_whose_sender_rule_takes_the_domain_are_checked(dns, make_route):
    from django_smtprelay.domains.check import check_domain

    make_route("any", sending_ips="198.51.100.7")
    make_route("news-only", sending_ips="198.51.100.7", sender_domains="news.example.org")
    report = check_domain("clean.test")
    assert [r.route for r in report.routes] == ["any"]


def test_an_spf_record_with_a_bad_macro_is_a_syntax_error_not_a_pass(dns, routes):
    report = check_domain("badmacro.test")
    finding = next(f for f in report.findings if f.code == "spf.syntax")
    assert "unknown macro letter 'x'" in finding.found
    assert by_route(report)["relay"].spf == "permerror"
    assert report.verdict == "failing"
