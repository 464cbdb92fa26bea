"""MTA-STS: the record and the policy it announces, fetched over real HTTPS on loopback.

The loopback DNS server answers ``mta-sts.<domain>`` with 127.0.0.1; the
HTTPS server (tests/httpsserver.py) presents a certificate from the test CA
and serves each domain's policy (tests/domains/conftest.py).
"""

from __future__ import annotations

import re
import time

import pytest
from django.test import override_settings

from django_smtprelay.domains.check import check_domain
from django_smtprelay.domains.mta_sts import (
    Policy,
    PolicyMalformed,
    check_mta_sts,
    parse_policy,
)
from django_smtprelay.domains.resolver import Resolver


def found(result, code):
    return next(f.found for f in result.findings if f.code == code)


def test_a_policy_that_matches_every_mx_is_ok(dns, mta_sts_server):
    result = check_mta_sts("clean.test", Resolver())
    assert result.findings == []
    assert result.status == "ok"
    assert ("mta-sts.clean.test", "/.well-known/mta-sts.txt") in mta_sts_server.requests


def test_wildcard_mx_patterns_cover_one_label(dns):
    assert check_mta_sts("sts-testing.test", Resolver()).findings == []
    result = check_mta_sts("sts-mismatch.test", Resolver())
    why = found(result, "mta_sts.mx_mismatch")
    # mx1 matches *.sts-mismatch.test; a.b.sts-mismatch.test has two labels; other.test none.
    assert "mx.other.test" in why and "a.b.sts-mismatch.test" in why
    assert "mx1.sts-mismatch.test," not in why
    assert result.status == "warning"


@pytest.mark.parametrize(
    ("domain", "code", "why"),
    [
        ("sts-404.test", "mta_sts.policy_unreachable", "HTTP 404"),
        (
            "sts-noname.test",
            "mta_sts.policy_unreachable",
            "mta-sts.sts-noname.test does not resolve",
        ),
        ("sts-badcert.test", "mta_sts.policy_unreachable", "certificate not trusted"),
        ("sts-redirect.test", "mta_sts.policy_unreachable", "HTTP 301"),
        ("sts-html.test", "mta_sts.policy_unreachable", "expected text/plain"),
        ("sts-big.test", "mta_sts.policy_unreachable", "larger than 65536 bytes"),
        ("sts-malformed.test", "mta_sts.policy_malformed", "mode is 'sometimes'"),
    ],
)
def test_a_record_whose_policy_fails_is_a_warning_with_the_reason(dns, domain, code, why):
    result = check_mta_sts(domain, Resolver())
    assert [f.code for f in result.findings] == [code]
    assert why in found(result, code)
    assert result.status == "warning"


def test_a_slow_policy_host_is_cut_off_at_the_timeout(dns, settings):
    with override_settings(SMTPRELAY={**settings.SMTPRELAY, "MTA_STS_TIMEOUT": 0.3}):
        started = time.monotonic()
        result = check_mta_sts("sts-slow.test", Resolver())
        took = time.monotonic() - started
    assert "timed out" in found(result, "mta_sts.policy_unreachable")
    assert took < 2.5  # the server would answer after 3 s


def test_the_fetch_stays_within_the_checks_time_budget(dns):
    resolver = Resolver()
    budget = resolver.start_budget()
    budget.seconds = 0.0  # spent: not even the policy host's name is asked
    result = check_mta_sts("clean.test", resolver)
    assert result.findings == []  # the record itself could not be read: nothing to say
    assert budget.exhausted is not None
    # With the record read, a spent budget stops the fetch before it starts.
    resolver = Resolver()
    resolver.start_budget()
    resolver.txt("_mta-sts.clean.test")
    resolver.budget.seconds = 0.0
    result = check_mta_sts("clean.test", resolver)
    assert "time budget" in found(result, "mta_sts.policy_unreachable")


def test_without_the_test_ca_no_private_address_is_contacted(dns, settings, mta_sts_server):
    before = len(mta_sts_server.requests)
    with override_settings(SMTPRELAY={**settings.SMTPRELAY, "MTA_STS_CA_FILE": ""}):
        result = check_mta_sts("clean.test", Resolver())
    assert "127.0.0.1 is not a public address" in found(result, "mta_sts.policy_unreachable")
    assert len(mta_sts_server.requests) == before


def test_the_domain_check_shows_the_policy_problem(dns, routes):
    report = check_domain("sts-mismatch.test")
    assert report.areas["mta_sts"] == "warning"
    assert "mta_sts.mx_mismatch" in {f.code for f in report.findings}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("mode: enforce\nmx: a.example\nmax_age: 1", "version is ''"),
        ("version: STSv1\nmx: a.example\nmax_age: 1", "mode is ''"),
        ("version: STSv1\nmode: enforce\nmax_age: 1", "names no mx"),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: soon", "max_age is 'soon'"),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 99999999", "max_age"),
        ("version: STSv1\nmode: enforce\nmx: a.*.example\nmax_age: 1", "not a host name"),
        ("version: STSv1\nmode enforce", "not 'key: value'"),
    ],
)
def test_malformed_policies(text, why):
    with pytest.raises(PolicyMalformed, match=why):
        parse_policy(text)


def test_a_policy_in_mode_none_needs_no_mx():
    assert parse_policy("version: STSv1\r\nmode: none\r\nmax_age: 0\r\n") == Policy("none", 0, [])


def test_mx_patterns():
    policy = Policy("enforce", 1, ["mail.example.com", "*.example.net"])
    assert policy.matches("mail.example.com") and policy.matches("MX1.example.net.")
    assert not policy.matches("example.net") and not policy.matches("a.b.example.net")
    assert not policy.matches("mail.example.com.evil.test")


@pytest.mark.parametrize("port", [0, 70000, "443", True])
def test_a_bad_port_setting_names_the_value(settings, port):
    from django.core.exceptions import ImproperlyConfigured

    from django_smtprelay.conf import app_settings

    with (
        override_settings(SMTPRELAY={**settings.SMTPRELAY, "MTA_STS_PORT": port}),
        pytest.raises(ImproperlyConfigured, match=re.escape(repr(port))),
    ):
        app_settings.mta_sts_port  # noqa: B018


def test_an_unreadable_ca_file_is_reported_not_raised(dns, settings, tmp_path):
    missing = str(tmp_path / "nowhere.pem")
    with override_settings(SMTPRELAY={**settings.SMTPRELAY, "MTA_STS_CA_FILE": missing}):
        result = check_mta_sts("clean.test", Resolver())
    assert "MTA_STS_CA_FILE" in found(result, "mta_sts.policy_unreachable")
