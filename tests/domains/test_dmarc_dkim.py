"""DMARC parsing and the tree walk; DKIM key records."""

from __future__ import annotations

import pytest

from django_smtprelay.domains import dmarc
from django_smtprelay.domains.dkim import check_selector
from django_smtprelay.domains.resolver import Resolver
from tests.domains.conftest import TESTING_DMARC


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


def _not_authorized(found: str, name: str) -> tuple[str, ...]:
    hint = f'The other domain must publish "v=DMARC1" at {name}.'
    return ("dmarc.report_not_authorized", "warning", found, name, hint)


# Each zone's DMARC audit: every finding as (code, severity, found, expected, hint),
# the records shown, the organizational domain and the effective policy / enforcing.
PARENT = "_dmarc.parent.test: v=DMARC1; p=none; sp=reject; np=quarantine; rua=mailto:d@parent.test"
AUDITS = [
    (
        "soafail.test",
        [
            (
                "dmarc.unavailable",
                "unknown",
                "SOA soafail.test: server failure (SERVFAIL or refused)",
                "",
                "Nothing to change in the zone yet; check again later or check the nameservers.",
            )
        ],
        [],
        None,
        None,
        None,
    ),
    (
        "twoat.test",
        [
            (
                "dmarc.invalid_tag",
                "warning",
                "rua=mailto:a@b@noauth.test,mailto:c@noauth.test",
                "rua=mailto:address[,mailto:address]",
                "Correct the tag shown to one of the expected values.",
            ),
            _not_authorized("rua=mailto:c@noauth.test", "twoat.test._report._dmarc.noauth.test"),
        ],
        ["_dmarc.twoat.test: v=DMARC1; p=reject; rua=mailto:a@b@noauth.test,mailto:c@noauth.test"],
        "twoat.test",
        "reject",
        True,
    ),
    (
        "zone.parent.test",
        [
            (
                "dmarc.inherited",
                "info",
                "_dmarc.parent.test (sp applies: reject)",
                "",
                "Publish _dmarc.zone.parent.test if this domain needs a policy of its own.",
            )
        ],
        [PARENT],
        "parent.test",
        "reject",
        True,
    ),
    (
        "destfail.test",
        [
            (
                "dmarc.unavailable",
                "unknown",
                "while checking report destinations: "
                "TXT _dmarc.servfail.test: server failure (SERVFAIL or refused)",
                "",
                "Nothing to change in the zone yet; check again later or check the nameservers.",
            )
        ],
        ["_dmarc.destfail.test: v=DMARC1; p=reject; rua=mailto:d@servfail.test"],
        "destfail.test",
        "reject",
        True,
    ),
    (
        "clean.test",
        [],
        ["_dmarc.clean.test: v=DMARC1; p=reject; rua=mailto:dmarc@clean.test; adkim=r; aspf=r"],
        "clean.test",
        "reject",
        True,
    ),
    (
        "lookups.test",
        [
            (
                "dmarc.policy_none",
                "info",
                "p=none",
                "p=quarantine or p=reject",
                "Once reports show all mail aligned, move to p=quarantine, then p=reject.",
            )
        ],
        ["_dmarc.lookups.test: v=DMARC1; p=none; rua=mailto:dmarc@lookups.test"],
        "lookups.test",
        "none",
        False,
    ),
    (
        "malformed.test",
        [
            (
                "dmarc.malformed",
                "error",
                "v=DMARC1 p=reject",
                "v=DMARC1 first",
                'Start the record with "v=DMARC1;" and write tags as name=value separated by ";".',
            )
        ],
        ["_dmarc.malformed.test: v=DMARC1 p=reject"],
        "malformed.test",
        None,
        None,
    ),
    (
        "badtags.test",
        [
            (
                "dmarc.invalid_policy",
                "error",
                "p=maybe",
                "p=none|quarantine|reject",
                "Set p=none, p=quarantine or p=reject.",
            ),
            (
                "dmarc.invalid_tag",
                "warning",
                "pct=150",
                "pct=0..100",
                "Correct the tag shown to one of the expected values.",
            ),
            (
                "dmarc.invalid_tag",
                "warning",
                "adkim=x",
                "adkim=r|s",
                "Correct the tag shown to one of the expected values.",
            ),
        ],
        ["_dmarc.badtags.test: v=DMARC1; p=maybe; pct=150; adkim=x"],
        "badtags.test",
        None,
        None,
    ),
    (
        "nonedmarc.test",
        [
            (
                "dmarc.policy_none",
                "info",
                "p=none",
                "p=quarantine or p=reject",
                "Once reports show all mail aligned, move to p=quarantine, then p=reject.",
            ),
            (
                "dmarc.pct_partial",
                "warning",
                "pct=50",
                "pct=100",
                "Raise pct to 100 (or remove it) once reports are clean.",
            ),
            _not_authorized(
                "rua=mailto:agg@noauth.test", "nonedmarc.test._report._dmarc.noauth.test"
            ),
        ],
        [
            "_dmarc.nonedmarc.test: v=DMARC1; p=none; pct=50; "
            "rua=mailto:agg@reports.test,mailto:agg@noauth.test"
        ],
        "nonedmarc.test",
        "none",
        False,
    ),
    (
        "twodmarc.test",
        [
            (
                "dmarc.multiple",
                "error",
                "v=DMARC1; p=none | v=DMARC1; p=reject",
                "one record",
                "Keep exactly one TXT record starting with v=DMARC1 at the name shown.",
            )
        ],
        ["_dmarc.twodmarc.test: v=DMARC1; p=none", "_dmarc.twodmarc.test: v=DMARC1; p=reject"],
        "twodmarc.test",
        None,
        None,
    ),
    (
        "strict.test",
        [
            (
                "dmarc.no_reports",
                "info",
                "no rua",
                "rua=mailto:…",
                "Add rua=mailto:dmarc-reports@strict.test (or a report service's address).",
            )
        ],
        ["_dmarc.strict.test: v=DMARC1; p=reject; aspf=s; adkim=s"],
        "strict.test",
        "reject",
        True,
    ),
    (
        "parent.test",
        [
            (
                "dmarc.policy_none",
                "info",
                "p=none",
                "p=quarantine or p=reject",
                "Once reports show all mail aligned, move to p=quarantine, then p=reject.",
            )
        ],
        [PARENT],
        "parent.test",
        "none",
        False,
    ),
    (
        "news.parent.test",
        [
            (
                "dmarc.inherited",
                "info",
                "_dmarc.parent.test (sp applies: reject)",
                "",
                "Publish _dmarc.news.parent.test if this domain needs a policy of its own.",
            )
        ],
        [PARENT],
        "parent.test",
        "reject",
        True,
    ),
    (
        "nope.parent.test",
        [
            (
                "dmarc.inherited",
                "info",
                "_dmarc.parent.test (np applies: quarantine)",
                "",
                "Publish _dmarc.nope.parent.test if this domain needs a policy of its own.",
            )
        ],
        [PARENT],
        "parent.test",
        "quarantine",
        True,
    ),
    (
        "bimi.test",
        [
            (
                "dmarc.policy_none",
                "info",
                "p=none",
                "p=quarantine or p=reject",
                "Once reports show all mail aligned, move to p=quarantine, then p=reject.",
            )
        ],
        ["_dmarc.bimi.test: v=DMARC1; p=none; rua=mailto:d@bimi.test"],
        "bimi.test",
        "none",
        False,
    ),
    (
        "psd.test",
        [
            (
                "dmarc.no_reports",
                "info",
                "no rua",
                "rua=mailto:…",
                "Add rua=mailto:dmarc-reports@psd.test (or a report service's address).",
            )
        ],
        ["_dmarc.psd.test: v=DMARC1; p=reject; psd=y"],
        "psd.test",
        "reject",
        True,
    ),
    (
        "a.psd.test",
        [
            (
                "dmarc.inherited",
                "info",
                "_dmarc.psd.test (np applies: reject)",
                "",
                "Publish _dmarc.a.psd.test if this domain needs a policy of its own.",
            ),
            (
                "dmarc.no_reports",
                "info",
                "no rua",
                "rua=mailto:…",
                "Add rua=mailto:dmarc-reports@a.psd.test (or a report service's address).",
            ),
        ],
        ["_dmarc.psd.test: v=DMARC1; p=reject; psd=y"],
        "a.psd.test",
        "reject",
        True,
    ),
    (
        "org.npsd.test",
        [
            (
                "dmarc.policy_none",
                "info",
                "p=none",
                "p=quarantine or p=reject",
                "Once reports show all mail aligned, move to p=quarantine, then p=reject.",
            ),
            (
                "dmarc.no_reports",
                "info",
                "no rua",
                "rua=mailto:…",
                "Add rua=mailto:dmarc-reports@org.npsd.test (or a report service's address).",
            ),
        ],
        ["_dmarc.org.npsd.test: v=DMARC1; p=none; psd=n"],
        "org.npsd.test",
        "none",
        False,
    ),
    (
        "nothing.test",
        [
            (
                "dmarc.missing",
                "error",
                "no v=DMARC1 record",
                "_dmarc.nothing.test: v=DMARC1; p=none; rua=mailto:dmarc-reports@nothing.test",
                'Publish a TXT record at _dmarc.nothing.test: "v=DMARC1; p=none; rua=mailto:…".',
            )
        ],
        [],
        "nothing.test",
        None,
        None,
    ),
    (
        "servfail.test",
        [
            (
                "dmarc.unavailable",
                "unknown",
                "TXT _dmarc.servfail.test: server failure (SERVFAIL or refused)",
                "",
                "Nothing to change in the zone yet; check again later or check the nameservers.",
            )
        ],
        [],
        None,
        None,
        None,
    ),
    (
        "testing.test",
        [
            (
                "dmarc.invalid_tag",
                "warning",
                "pct=-1",
                "pct=0..100",
                "Correct the tag shown to one of the expected values.",
            ),
            (
                "dmarc.testing",
                "info",
                "t=y",
                "t=n or no t tag",
                "Remove t=y when the policy is meant to apply.",
            ),
            _not_authorized("rua=mailto:b@noauth.test", "testing.test._report._dmarc.noauth.test"),
            _not_authorized(
                "ruf=mailto:f@noauth.test!10m", "testing.test._report._dmarc.noauth.test"
            ),
        ],
        ["_dmarc.testing.test: " + TESTING_DMARC],
        "testing.test",
        "quarantine",
        False,
    ),
    (
        "x.spbad.test",
        [
            (
                "dmarc.invalid_tag",
                "warning",
                "sp=bogus",
                "sp=none|quarantine|reject",
                "Correct the tag shown to one of the expected values.",
            ),
            (
                "dmarc.inherited",
                "info",
                "_dmarc.spbad.test (np applies: reject)",
                "",
                "Publish _dmarc.x.spbad.test if this domain needs a policy of its own.",
            ),
        ],
        ["_dmarc.spbad.test: v=DMARC1; p=reject; sp=bogus; rua=mailto:d@spbad.test"],
        "spbad.test",
        "reject",
        True,
    ),
    (
        "spbad.test",
        [
            (
                "dmarc.invalid_tag",
                "warning",
                "sp=bogus",
                "sp=none|quarantine|reject",
                "Correct the tag shown to one of the expected values.",
            )
        ],
        ["_dmarc.spbad.test: v=DMARC1; p=reject; sp=bogus; rua=mailto:d@spbad.test"],
        "spbad.test",
        "reject",
        True,
    ),
]


@pytest.mark.parametrize(("domain", "findings", "records", "org", "effective", "enforcing"), AUDITS)
def test_dmarc_audit_findings_per_zone(dns, domain, findings, records, org, effective, enforcing):
    result = dmarc.audit(domain, Resolver())
    # Two records come in the order the server sends them: compare them sorted.
    assert [
        (f.code, f.severity, " | ".join(sorted(f.found.split(" | "))), f.expected, f.hint)
        for f in result.findings
    ] == findings
    assert sorted(result.records) == records
    assert result.data.get("org_domain") == org
    assert result.data.get("effective_policy") == effective
    assert result.data.get("enforcing") == enforcing


# Each tag's value -> '' when valid, else what the finding says is expected.
TAGS = [
    ("p", "reject", ""),
    ("p", "Quarantine", ""),
    ("p", "all", "p=none|quarantine|reject"),
    ("sp", "none", ""),
    ("sp", "all", "sp=none|quarantine|reject"),
    ("np", "x", "np=none|quarantine|reject"),
    ("adkim", "s", ""),
    ("adkim", "R", ""),
    ("adkim", "x", "adkim=r|s"),
    ("aspf", "r", ""),
    ("aspf", "x", "aspf=r|s"),
    ("pct", "0", ""),
    ("pct", "100", ""),
    ("pct", "101", "pct=0..100"),
    ("pct", "-1", "pct=0..100"),
    ("pct", "half", "pct=0..100"),
    ("t", "y", ""),
    ("t", "N", ""),
    ("t", "u", ""),
    ("t", "maybe", "t=y|n"),
    ("psd", "Y", ""),
    ("psd", "n", ""),
    ("psd", "U", ""),
    ("psd", "x", "psd=y|n"),
    ("fo", "0", ""),
    ("fo", "1:D:S", ""),
    ("fo", "0 : s", ""),
    ("fo", "2", "fo=0|1|d|s"),
    ("fo", "1:x", "fo=0|1|d|s"),
    ("ri", "86400", ""),
    ("ri", "daily", "ri=<seconds>"),
    ("rua", "mailto:a@b.test", ""),
    ("rua", "mailto:a@b.test, mailto:c@d.test!10m", ""),
    ("rua", "mailto:a@b.test,a@d.test", "rua=mailto:address[,mailto:address]"),
    ("ruf", "mailto:", "ruf=mailto:address[,mailto:address]"),
    ("rua", "mailto:a@b@c.test", "rua=mailto:address[,mailto:address]"),
    ("rua", "MailTo:a@b.test!10M ", ""),
    ("ruf", "mailto:a@b.test!big", "ruf=mailto:address[,mailto:address]"),
    ("other", "anything", ""),
]


@pytest.mark.parametrize(("name", "value", "expected"), TAGS)
def test_each_dmarc_tag_is_checked_against_its_syntax(name, value, expected):
    assert dmarc._check_tag(name, value) == expected


# Record text -> (tags, errors as (code, found, expected), malformed).
RECORDS = [
    (
        "v=DMARC1; p=reject; P=none; pct = 50 ;",
        {"v": "DMARC1", "p": "reject", "pct": "50"},
        [],
        False,
    ),
    (
        "v=DMARC1; p=reject; junk; rua=mailto:a@b.test",
        {"v": "DMARC1", "p": "reject", "rua": "mailto:a@b.test"},
        [("dmarc.malformed", "junk", "name=value")],
        True,
    ),
    (
        "p=reject; v=DMARC1",
        {"p": "reject", "v": "DMARC1"},
        [("dmarc.malformed", "p=reject", "v=DMARC1 first")],
        True,
    ),
    (
        "v=dmarc1; p=reject",
        {"v": "dmarc1", "p": "reject"},
        [("dmarc.malformed", "v=dmarc1", "v=DMARC1 first")],
        True,
    ),
    (
        "v=DMARC1; rua=mailto:a@b.test",
        {"v": "DMARC1", "rua": "mailto:a@b.test"},
        [("dmarc.invalid_policy", "no p tag", "p=none|quarantine|reject")],
        False,
    ),
    (
        "v=DMARC1; p=maybe; sp=all",
        {"v": "DMARC1", "p": "maybe", "sp": "all"},
        [
            ("dmarc.invalid_policy", "p=maybe", "p=none|quarantine|reject"),
            ("dmarc.invalid_tag", "sp=all", "sp=none|quarantine|reject"),
        ],
        False,
    ),
]


@pytest.mark.parametrize(("text", "tags", "errors", "malformed"), RECORDS)
def test_a_dmarc_record_parses_to_its_tags_and_errors(text, tags, errors, malformed):
    record = dmarc.parse(text)
    assert (record.text, record.tags, record.errors, record.malformed) == (
        text,
        tags,
        errors,
        malformed,
    )


@pytest.mark.parametrize(
    ("text", "is_dmarc"),
    [
        ("v=DMARC1; p=none", True),
        (" V = dmarc1; p=none", True),
        ("v=spf1 -all", False),
        ("x v=DMARC1", False),
    ],
)
def test_what_counts_as_a_dmarc_record(text, is_dmarc):
    assert dmarc.is_dmarc(text) is is_dmarc


@pytest.mark.parametrize(
    ("text", "adkim", "aspf"),
    [
        ("v=DMARC1; p=none", "r", "r"),
        ("v=DMARC1; p=none; adkim=S; aspf=R", "s", "r"),
        ("v=DMARC1; p=none; adkim=x; aspf=s", "r", "s"),
    ],
)
def test_alignment_modes_default_to_relaxed(text, adkim, aspf):
    record = dmarc.parse(text)
    assert (record.alignment("adkim"), record.alignment("aspf")) == (adkim, aspf)


# Record found at parent.test -> the policy for (domain, exists).
POLICIES = [
    ("v=DMARC1; p=reject", "parent.test", True, "reject"),
    ("v=DMARC1; p=Reject; sp=none; np=none", "parent.test", False, "reject"),
    ("v=DMARC1; p=reject", "news.parent.test", True, "reject"),
    ("v=DMARC1; p=reject", "news.parent.test", False, "reject"),
    ("v=DMARC1; p=none; sp=Quarantine", "news.parent.test", True, "quarantine"),
    ("v=DMARC1; p=none; sp=Quarantine", "news.parent.test", False, "quarantine"),
    ("v=DMARC1; p=none; sp=quarantine; np=Reject", "news.parent.test", False, "reject"),
    ("v=DMARC1; p=none; sp=quarantine; np=Reject", "news.parent.test", True, "quarantine"),
    ("v=DMARC1; p=Quarantine; sp=bogus; np=bogus", "news.parent.test", False, "quarantine"),
]


@pytest.mark.parametrize(("text", "domain", "exists", "effective"), POLICIES)
def test_the_effective_policy_is_p_sp_or_np(text, domain, exists, effective):
    policy = dmarc.Policy(domain, found_at="parent.test", records=[text], record=dmarc.parse(text))
    assert policy.effective_policy(exists) == effective
    if exists:
        assert policy.effective_policy() == effective


def test_no_record_has_no_effective_policy():
    assert dmarc.Policy("x.test").effective_policy() == ""
    assert dmarc.Policy("x.test").effective_policy(exists=False) == ""
    assert not dmarc.Policy("x.test").inherited


@pytest.mark.parametrize(
    ("domain", "uri", "name"),
    [
        ("a.test", "mailto:d@Reports.Test.", "a.test._report._dmarc.reports.test"),
        ("a.test", "mailto:d@reports.test!10m", "a.test._report._dmarc.reports.test"),
        ("a.test", " mailto:d@ reports.test ", "a.test._report._dmarc.reports.test"),
        ("a.test", "mailto:d@BOX.", "a.test._report._dmarc.box"),
    ],
)
def test_report_authorization_name(domain, uri, name):
    assert dmarc.report_authorization_name(domain, uri) == name


@pytest.mark.parametrize(
    ("domain", "targets"),
    [
        ("Mail.Example.COM.", ["mail.example.com", "example.com", "com"]),
        ("MAIL.BOX.", ["mail.box", "box"]),
        (" mail.test.", [" mail.test", "test"]),
        ("a.b.c.d.e", ["a.b.c.d.e", "b.c.d.e", "c.d.e", "d.e", "e"]),
    ],
)
def test_walk_targets_of_names_with_case_and_a_root_dot(domain, targets):
    assert dmarc.walk_targets(domain) == targets


@pytest.mark.parametrize(
    ("domain", "org"),
    [
        ("News.Parent.Test.", "parent.test"),
        ("MAIL.RELAYX.", "mail.relayx"),
        ("A.B.C.PSD.TEST.", "c.psd.test"),
        ("Mail.Org.NPSD.Test", "org.npsd.test"),
    ],
)
def test_organizational_domain_of_names_with_case_and_a_root_dot(dns, domain, org):
    assert dmarc.organizational_domain(domain, Resolver()) == org


@pytest.mark.parametrize(
    ("identifier", "from_domain", "mode", "aligned"),
    [
        ("BOX.RELAYX", "box.relayx", "s", True),
        ("box.relayx", "BOX.RELAYX.", "s", True),
        ("clean.test", "clean.test.", "s", True),
        ("bounce.parent.test.", "News.Parent.Test.", "r", True),
        ("bounce.parent.test", "clean.test", "r", False),
    ],
)
def test_alignment_ignores_case_and_the_root_dot(dns, identifier, from_domain, mode, aligned):
    assert dmarc.aligned(identifier, from_domain, mode, Resolver()) is aligned
