"""DMARC parsing and the tree walk; DKIM key records."""

from __future__ import annotations

import pytest

from django_smtprelay.domains import dmarc
from django_smtprelay.domains.dkim import check_selector
from django_smtprelay.domains.resolver import Resolver


def test_walk_targets_follow_dmarcbis():
    assert dmarc.walk_targets("a.b.c.d.e.f.example.com") == [
        "a.b.c.d.e.f.example.com",
        "e.f.example.com",
        "f.example.com",
        "example.com",
        "com",
    ]
    assert dmarc.walk_targets("mail.example.com") == ["mail.example.com", "example.com", "com"]


def test_parse_valid_record():
    record = dmarc.parse(
        "v=DMARC1; p=quarantine; sp=reject; adkim=s; pct=100; fo=1:d; rua=mailto:a@b.test"
    )
    assert record.errors == [] and record.policy == "quarantine"
    assert record.alignment("adkim") == "s" and record.alignment("aspf") == "r"
    assert record.report_uris("rua") == ["mailto:a@b.test"]


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("p=reject; v=DMARC1", "dmarc.malformed"),
        ("v=DMARC1 p=reject", "dmarc.malformed"),
        ("v=DMARC1; p=maybe", "dmarc.invalid_policy"),
        ("v=DMARC1; rua=mailto:a@b.test", "dmarc.invalid_policy"),
        ("v=DMARC1; p=none; sp=all", "dmarc.invalid_tag"),
        ("v=DMARC1; p=none; np=x", "dmarc.invalid_tag"),
        ("v=DMARC1; p=none; pct=101", "dmarc.invalid_tag"),
        ("v=DMARC1; p=none; aspf=x", "dmarc.invalid_tag"),
        ("v=DMARC1; p=none; fo=2", "dmarc.invalid_tag"),
        ("v=DMARC1; p=none; t=maybe", "dmarc.invalid_tag"),
        ("v=DMARC1; p=none; rua=a@b.test", "dmarc.invalid_tag"),
        ("v=DMARC1; p=none; ruf=mailto:", "dmarc.invalid_tag"),
        ("v=DMARC1; p=none; ri=daily", "dmarc.invalid_tag"),
        ("v=DMARC1; p=none; fo=1:x", "dmarc.invalid_tag"),
    ],
)
def test_parse_errors(text, code):
    assert code in {c for c, *_ in dmarc.parse(text).errors}


def test_organizational_domain_by_tree_walk(dns):
    resolver = Resolver()
    assert dmarc.organizational_domain("deep.a.b.c.parent.test", resolver) == "parent.test"
    assert dmarc.organizational_domain("news.parent.test", resolver) == "parent.test"
    assert dmarc.organizational_domain("nothing.test", resolver) == "nothing.test"
    assert dmarc.aligned("bounce.parent.test", "news.parent.test", "r", resolver)
    assert not dmarc.aligned("bounce.parent.test", "news.parent.test", "s", resolver)
    assert not dmarc.aligned("bounce.relay.test", "clean.test", "r", resolver)


def test_the_tree_walk_follows_psd_tags(dns):
    resolver = Resolver()
    # psd=y: the organization is one label below the public suffix domain.
    assert dmarc.organizational_domain("a.b.c.psd.test", resolver) == "c.psd.test"
    assert dmarc.organizational_domain("psd.test", resolver) == "psd.test"
    # psd=n: the name that says so is the organization, however deep.
    assert dmarc.organizational_domain("mail.org.npsd.test", resolver) == "org.npsd.test"
    assert dmarc.organizational_domain("other.npsd.test", resolver) == "npsd.test"


def test_alignment_of_an_empty_identifier_is_never_true(dns):
    assert not dmarc.aligned("", "clean.test", "r", Resolver())
    assert not dmarc.aligned("clean.test", ".", "r", Resolver())
    assert dmarc.aligned("CLEAN.test.", "clean.test", "s", Resolver())


def test_a_pct_that_is_not_a_number_counts_as_100_and_is_reported():
    record = dmarc.parse("v=DMARC1; p=none; pct=half")
    assert record.pct == 100
    assert [c for c, *_ in record.errors] == ["dmarc.invalid_tag"]
    assert dmarc.parse("v=DMARC1; p=none; pct=0").pct == 0


def test_discovery_stops_at_the_domain_record(dns):
    policy = dmarc.discover("clean.test", Resolver())
    assert policy.found_at == "clean.test" and not policy.inherited
    assert policy.effective_policy() == "reject"


def test_dkim_keys(dns, signing_pem):
    resolver = Resolver()
    key = check_selector("clean.test", "s1", resolver, signing_pem)
    assert (key.key_type, key.bits, key.problem, key.matches_private_key) == ("rsa", 2048, "", True)
    assert check_selector("clean.test", "s1", resolver).matches_private_key is None
    assert check_selector("shortkey.test", "s1", resolver).problem == "dkim.key_too_short"
    assert check_selector("shortkey.test", "s1", resolver).bits == 512
    assert check_selector("weakkey.test", "s1", resolver).bits == 1024
    assert (
        check_selector("wrongkey.test", "s1", resolver, signing_pem).problem == "dkim.key_mismatch"
    )
    assert check_selector("revoked.test", "s1", resolver).problem == "dkim.revoked"
    assert check_selector("clean.test", "nope", resolver).problem == "dkim.missing"
