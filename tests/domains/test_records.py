"""BIMI, MTA-STS, TLS-RPT and DKIM key records that are there but wrong, and Ed25519 keys,
read from a real DNS server on 127.0.0.1."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from django.test import override_settings

from django_smtprelay.domains.dkim import check_selector
from django_smtprelay.domains.mta_sts import check_mta_sts
from django_smtprelay.domains.records import check_bimi, check_tls_rpt
from django_smtprelay.domains.resolver import Resolver, clear_cache
from tests.dnsserver import DNSServer

ED_PRIVATE = ed25519.Ed25519PrivateKey.generate()
ED_PEM = ED_PRIVATE.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
ED_RAW = base64.b64encode(
    ED_PRIVATE.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
).decode()
# The same Ed25519 key as SubjectPublicKeyInfo: what a record with k=rsa would need to be.
ED_SPKI = base64.b64encode(
    ED_PRIVATE.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()
OTHER_ED_PEM = (
    ed25519.Ed25519PrivateKey.generate()
    .private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    .decode()
)

ZONE = f"""
$TTL 300
@ SOA ns.records.test. hostmaster.records.test. 1 3600 600 86400 60
@ NS ns.records.test.
ns A 127.0.0.1

default._bimi.logo TXT "v=BIMI1; l=https://logo.records.test/logo.svg"
default._bimi.cert TXT "v=BIMI1; l=; a=https://cert.records.test/vmc.pem"
default._bimi.nologo TXT "v=BIMI1; l=; a="
default._bimi.bare TXT "v=BIMI1"
default._bimi.two TXT "v=BIMI1; l=https://two.records.test/1.svg"
default._bimi.two TXT "v=BIMI1; l=https://two.records.test/2.svg"
default._bimi.other TXT "not a bimi record"

_mta-sts.sts TXT "v=STSv1; id=20240101T000000"
_mta-sts.noid TXT "v=STSv1;"
_mta-sts.badid TXT "v=STSv1; id=2024-01-01"
_mta-sts.two TXT "v=STSv1; id=1"
_mta-sts.two TXT "v=STSv1; id=2"

_smtp._tls.mailto TXT "v=TLSRPTv1; rua=mailto:tls@records.test"
_smtp._tls.https TXT "v=TLSRPTv1; rua=https://reports.records.test/tls"
_smtp._tls.http TXT "v=TLSRPTv1; rua=http://reports.records.test/tls"
_smtp._tls.norua TXT "v=TLSRPTv1"
_smtp._tls.two TXT "v=TLSRPTv1; rua=mailto:a@records.test"
_smtp._tls.two TXT "v=TLSRPTv1; rua=mailto:b@records.test"

s1._domainkey.ed TXT "v=DKIM1; k=ed25519; p={ED_RAW}"
s1._domainkey.edshort TXT "v=DKIM1; k=ed25519; p={base64.b64encode(b"short").decode()}"
s1._domainkey.edasrsa TXT "v=DKIM1; k=rsa; p={ED_SPKI}"
s1._domainkey.notbase64 TXT "v=DKIM1; k=rsa; p=abc"
s1._domainkey.notder TXT "v=DKIM1; p={base64.b64encode(b"not a key").decode()}"
s1._domainkey.v2 TXT "v=DKIM2; p={ED_RAW}"
s1._domainkey.nop TXT "v=DKIM1; k=rsa"
s1._domainkey.two TXT "v=DKIM1; k=ed25519; p={ED_RAW}"
s1._domainkey.two TXT "v=DKIM1; p={ED_RAW}"
"""


@pytest.fixture(scope="module")
def records_server():
    server = DNSServer({"records.test.": ZONE})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def resolver(records_server, settings):
    with override_settings(
        SMTPRELAY={
            **settings.SMTPRELAY,
            "DNS_NAMESERVERS": [records_server.address],
            "DNS_TIMEOUT": 2.0,
        }
    ):
        clear_cache()
        yield Resolver()
    clear_cache()


def codes(result) -> list[str]:
    return [f.code for f in result.findings]


@pytest.mark.parametrize(
    ("domain", "found"),
    [
        ("logo", []),
        ("cert", []),  # an authority (certificate) without a logo is enough
        ("nologo", ["bimi.malformed"]),
        ("bare", ["bimi.malformed"]),
        ("two", ["bimi.malformed"]),  # one record only
        ("other", []),  # no BIMI record: nothing to say
        ("nothing", []),
    ],
)
def test_a_bimi_record_needs_a_logo_or_an_authority(resolver, domain, found):
    result = check_bimi(f"{domain}.records.test", resolver, dmarc_enforcing=True)
    assert codes(result) == found
    if found and found[0] == "mta_sts.malformed":
        assert result.findings[0].found == "; ".join(result.records) != ""


def test_bimi_asks_for_enforcing_dmarc_only_when_dmarc_was_checked(resolver):
    def dmarc_codes(enforcing):
        return codes(check_bimi("logo.records.test", resolver, dmarc_enforcing=enforcing))

    assert dmarc_codes(False) == ["bimi.dmarc_not_enforcing"]
    assert dmarc_codes(None) == []
    assert dmarc_codes(True) == []


@pytest.mark.parametrize(
    ("domain", "found"),
    [
        # A well-formed record passes on to fetching the policy, which no
        # server here serves; a malformed one stops before any fetch.
        ("sts", ["mta_sts.policy_unreachable"]),
        ("noid", ["mta_sts.malformed"]),
        ("badid", ["mta_sts.malformed"]),  # id is letters and digits only
        ("two", ["mta_sts.malformed"]),
        ("nothing", []),
    ],
)
def test_an_mta_sts_record_needs_an_alphanumeric_id(resolver, domain, found):
    result = check_mta_sts(f"{domain}.records.test", resolver)
    assert codes(result) == found
    if found and found[0] == "mta_sts.malformed":
        assert result.findings[0].found == "; ".join(result.records) != ""


@pytest.mark.parametrize(
    ("domain", "found"),
    [
        ("mailto", []),
        ("https", []),
        ("http", ["tls_rpt.malformed"]),  # reports go by mail or HTTPS only
        ("norua", ["tls_rpt.malformed"]),
        ("two", ["tls_rpt.malformed"]),
        ("nothing", []),
    ],
)
def test_a_tls_rpt_record_needs_a_mailto_or_https_rua(resolver, domain, found):
    result = check_tls_rpt(f"{domain}.records.test", resolver)
    assert codes(result) == found
    if found and found[0] == "mta_sts.malformed":
        assert result.findings[0].found == "; ".join(result.records) != ""


def test_an_ed25519_key_is_read_and_compared_with_the_private_key(resolver):
    key = check_selector("ed.records.test", "s1", resolver, ED_PEM)
    assert (key.key_type, key.bits, key.problem, key.matches_private_key) == (
        "ed25519",
        256,
        "",
        True,
    )
    assert key.usable
    other = check_selector("ed.records.test", "s1", resolver, OTHER_ED_PEM)
    assert (other.problem, other.matches_private_key) == ("dkim.key_mismatch", False)
    unreadable = check_selector("ed.records.test", "s1", resolver, "not a PEM key")
    assert (unreadable.problem, unreadable.matches_private_key) == ("dkim.key_mismatch", False)


@pytest.mark.parametrize(
    ("domain", "detail"),
    [
        ("edshort", "An Ed25519 public key is 32 bytes long"),
        ("edasrsa", "k=rsa but the key is"),
        ("notbase64", "Incorrect padding"),
        ("notder", "not an RSA public key"),
        ("v2", "no v=DKIM1 or no p= tag"),
        ("nop", "no v=DKIM1 or no p= tag"),
        ("two", "2 key records"),
    ],
)
def test_a_dkim_key_record_that_cannot_be_used_is_malformed_saying_why(resolver, domain, detail):
    key = check_selector(f"{domain}.records.test", "s1", resolver)
    assert key.problem == "dkim.malformed"
    assert detail in key.detail
    assert not key.usable
