"""Fixtures: a real DNS server on 127.0.0.1 serving the zones below, and routes."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.test import override_settings

from django_smtprelay.domains.resolver import clear_cache
from django_smtprelay.models import Route
from tests.dnsserver import DNSServer
from tests.domains import limits_zone
from tests.httpsserver import HTTPSTestServer, Page
from tests.tlscerts import TLSCerts

# A 512-bit RSA public key (SubjectPublicKeyInfo, base64): too short for RFC 8301.
SHORT_KEY = (
    "MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBALiv/RWPoPr2lzWEY0oStk9R/0gjZrx5LovB55YxRRkMicNczndJ"
    "EtL15pA7TY+Z9PmbMvDK+g4TeKSfkDD8YY8CAwEAAQ=="
)


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _public_b64(key: rsa.RSAPrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


# t=y, a pct out of range, a size-limited own address before an outside one, a ruf outside.
TESTING_DMARC = (
    "v=DMARC1; p=quarantine; t=Y; pct=-1; "
    "rua=mailto:a@testing.test!10m,mailto:b@noauth.test; ruf=mailto:f@noauth.test!10m"
)


def _txt(value: str) -> str:
    """A TXT rdata split into 255-byte character-strings."""
    return " ".join(f'"{value[i : i + 255]}"' for i in range(0, len(value), 255))


@pytest.fixture(scope="session")
def keys() -> dict[str, rsa.RSAPrivateKey]:
    return {
        "signing": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "weak": rsa.generate_private_key(
            public_exponent=65537, key_size=1024
        ),  # the weak key under test
        "other": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }


def zone_text(keys: dict[str, rsa.RSAPrivateKey]) -> str:
    signing, weak, other = (_public_b64(keys[k]) for k in ("signing", "weak", "other"))
    spf_ok = "v=spf1 include:spf.relay.test ip4:198.51.100.7 -all"
    near = " ".join(["v=spf1", *(f"a:a{i}.nearlimit.test" for i in range(1, 10)), "-all"])
    big = "v=spf1 " + " ".join(f"ip4:203.0.113.{i}" for i in range(1, 60)) + " -all"
    nets = (
        "v=spf1 ip6:2001:db8::/32 a:out1.relay.test mx:clean.test a:gone.nets.test "
        "-a:out2.relay.test a:%{i}.nets.test include:spf.relay.test include:nets.test "
        "include:SPF.relay.test. include:spf.RELAYX ~all"
    )
    return f"""
$TTL 300
@ SOA ns.test. hostmaster.test. 1 3600 600 86400 60
@ NS ns.test.
ns A 127.0.0.1

; The relay: its SPF include, return-path domain, sending hosts' reverse names.
spf.relay TXT "v=spf1 ip4:192.0.2.0/30 -all"
bounce.relay TXT "v=spf1 include:spf.relay.test -all"
out1.relay A 192.0.2.1
out2.relay A 192.0.2.2
mailer.clean A 198.51.100.7

; clean.test: everything right.
clean TXT "{spf_ok}"
clean A 198.51.100.80
clean MX 10 mx.clean.test.
mx.clean A 198.51.100.25
_dmarc.clean TXT "v=DMARC1; p=reject; rua=mailto:dmarc@clean.test; adkim=r; aspf=r"
s1._domainkey.clean TXT {_txt(f"v=DKIM1; k=rsa; p={signing}")}
default._bimi.clean TXT "v=BIMI1; l=https://clean.test/logo.svg"
_mta-sts.clean TXT "v=STSv1; id=20240101"
mta-sts.clean A 127.0.0.1
_smtp._tls.clean TXT "v=TLSRPTv1; rua=mailto:tls@clean.test"

; lookups.test: 11 lookups through nested includes.
lookups TXT "v=spf1 include:l1.lookups.test include:l2.lookups.test -all"
lookups MX 10 mx.clean.test.
l1.lookups TXT "v=spf1 a mx include:l3.lookups.test -all"
l1.lookups A 203.0.113.1
l1.lookups MX 10 mx.clean.test.
l3.lookups TXT "v=spf1 a mx exists:%{{i}}.x.lookups.test include:spf.relay.test -all"
l3.lookups A 203.0.113.3
l3.lookups MX 10 mx.clean.test.
x.lookups A 127.0.0.2
l2.lookups TXT "v=spf1 a:h1.lookups.test a:h2.lookups.test -all"
h1.lookups A 203.0.113.11
h2.lookups A 203.0.113.12
_dmarc.lookups TXT "v=DMARC1; p=none; rua=mailto:dmarc@lookups.test"

; nearlimit.test: 9 lookups; adding the relay's include (2) would make 11.
nearlimit TXT "{near}"
a1.nearlimit A 203.0.113.21
a2.nearlimit A 203.0.113.22
a3.nearlimit A 203.0.113.23
a4.nearlimit A 203.0.113.24
a5.nearlimit A 203.0.113.25
a6.nearlimit A 203.0.113.26
a7.nearlimit A 203.0.113.27
a8.nearlimit A 203.0.113.28
a9.nearlimit A 203.0.113.29

; void.test: three lookups that find nothing.
void TXT "v=spf1 a:gone1.void.test a:gone2.void.test mx:gone3.void.test include:spf.relay.test -all"

plusall TXT "v=spf1 +all"
neutral TXT "v=spf1 include:spf.relay.test ?all"

; twospf.test: two SPF records.
twospf TXT "v=spf1 include:spf.relay.test -all"
twospf TXT "v=spf1 ip4:198.51.100.7 -all"

; redirect.test: the policy lives elsewhere.
redirect TXT "v=spf1 redirect=_spf.redirect.test"
_spf.redirect TXT "v=spf1 include:spf.relay.test ip4:198.51.100.7 -all"
brokenredirect TXT "v=spf1 redirect=_spf.nowhere.test"

syntax TXT "v=spf1 include:spf.relay.test ip4:300.1.2.3 foo -all"

; MTA-STS: each record announces a policy, served (or not) by the loopback
; HTTPS server (MTA_STS_POLICIES below).
_mta-sts.sts-404 TXT "v=STSv1; id=1"
mta-sts.sts-404 A 127.0.0.1
_mta-sts.sts-noname TXT "v=STSv1; id=1"
_mta-sts.sts-badcert TXT "v=STSv1; id=1"
mta-sts.sts-badcert A 127.0.0.1
_mta-sts.sts-malformed TXT "v=STSv1; id=1"
mta-sts.sts-malformed A 127.0.0.1
sts-malformed MX 10 mx.clean.test.
_mta-sts.sts-mismatch TXT "v=STSv1; id=1"
mta-sts.sts-mismatch A 127.0.0.1
sts-mismatch MX 10 mx1.sts-mismatch.test.
sts-mismatch MX 20 mx.other.test.
sts-mismatch MX 30 a.b.sts-mismatch.test.
_mta-sts.sts-testing TXT "v=STSv1; id=2024"
mta-sts.sts-testing A 127.0.0.1
sts-testing MX 10 mx1.sts-testing.test.
sts-testing MX 20 mx2.sts-testing.test.
_mta-sts.sts-big TXT "v=STSv1; id=1"
mta-sts.sts-big A 127.0.0.1
_mta-sts.sts-slow TXT "v=STSv1; id=1"
mta-sts.sts-slow A 127.0.0.1
_mta-sts.sts-redirect TXT "v=STSv1; id=1"
mta-sts.sts-redirect A 127.0.0.1
_mta-sts.sts-html TXT "v=STSv1; id=1"
mta-sts.sts-html A 127.0.0.1

; SPF macros (RFC 7208 section 7): one evaluated as receivers do, and three
; that receivers refuse as a syntax error (an unknown letter, an unclosed
; macro, a count of 0 labels).
macro TXT "v=spf1 exists:%{{ir}}.%{{l1r-}}._spf.%{{d}} -all"
3.2.0.192.strong._spf.macro A 127.0.0.2
badmacro TXT "v=spf1 exists:%{{x}}._spf.badmacro.test include:spf.relay.test -all"
openmacro TXT "v=spf1 include:%{{d._spf.openmacro.test include:spf.relay.test -all"
zeromacro TXT "v=spf1 include:spf.relay.test exists:%{{d0}}._spf.zeromacro.test -all"
loop TXT "v=spf1 include:loop2.test -all"
loop2 TXT "v=spf1 include:loop.test -all"
big TXT {_txt(big)}

; DMARC cases.
nodmarc TXT "{spf_ok}"
malformed TXT "{spf_ok}"
_dmarc.malformed TXT "v=DMARC1 p=reject"
badtags TXT "{spf_ok}"
_dmarc.badtags TXT "v=DMARC1; p=maybe; pct=150; adkim=x"
nonedmarc TXT "{spf_ok}"
_dmarc.nonedmarc TXT "v=DMARC1; p=none; pct=50; rua=mailto:agg@reports.test,mailto:agg@noauth.test"
nonedmarc.test._report._dmarc.reports TXT "v=DMARC1"
_dmarc.reports TXT "v=DMARC1; p=reject"
twodmarc TXT "{spf_ok}"
_dmarc.twodmarc TXT "v=DMARC1; p=none"
_dmarc.twodmarc TXT "v=DMARC1; p=reject"

; strict.test: aspf=s and adkim=s, the relay rewrites the return path to a subdomain.
strict TXT "{spf_ok}"
_dmarc.strict TXT "v=DMARC1; p=reject; aspf=s; adkim=s"
bounce.strict TXT "v=spf1 include:spf.relay.test -all"
s1._domainkey.mail.strict TXT {_txt(f"v=DKIM1; k=rsa; p={signing}")}

; parent.test publishes for its subdomains; news.parent.test has no record.
parent TXT "{spf_ok}"
_dmarc.parent TXT "v=DMARC1; p=none; sp=reject; np=quarantine; rua=mailto:d@parent.test"
news.parent TXT "{spf_ok}"
deep.a.b.c.parent TXT "{spf_ok}"

; DKIM cases.
shortkey TXT "{spf_ok}"
s1._domainkey.shortkey TXT "v=DKIM1; k=rsa; p={SHORT_KEY}"
weakkey TXT "{spf_ok}"
s1._domainkey.weakkey TXT {_txt(f"v=DKIM1; k=rsa; p={weak}")}
wrongkey TXT "{spf_ok}"
s1._domainkey.wrongkey TXT {_txt(f"v=DKIM1; k=rsa; p={other}")}
revoked TXT "{spf_ok}"
s1._domainkey.revoked TXT "v=DKIM1; k=rsa; p="

nullmx TXT "{spf_ok}"
nullmx MX 0 .

bimi TXT "{spf_ok}"
_dmarc.bimi TXT "v=DMARC1; p=none; rua=mailto:d@bimi.test"
default._bimi.bimi TXT "v=BIMI1; l=https://bimi.test/logo.svg"

; Switched by the server: servfail.test answers SERVFAIL, timeout.test never answers.
servfail TXT "{spf_ok}"
timeout TXT "{spf_ok}"

; ptr: the reverse name of the connecting IP, checked forward, under a domain.
ptr TXT "v=spf1 ptr:relay.test -all"
ptrexact TXT "v=spf1 ptr:out1.relay.test -all"
ptrlabel TXT "v=spf1 ptr:ut1.relay.test -all"
ptrself TXT "v=spf1 ptr -all"
a6 TXT "v=spf1 a:v6.a6.test/24//64 -all"
v6.a6 AAAA 2001:db8:1:2::10
mxnet TXT "v=spf1 mx:clean.test/24 -all"
tempa TXT "v=spf1 a:servfail.test -all"
tempmx TXT "v=spf1 mx -all"
tempmx MX 10 servfail.test.

; networks_of: what a relay's SPF include authorizes (pass terms, no macros).
nets TXT "{nets}"
netsredirect TXT "v=spf1 ip4:203.0.113.0/24 redirect=spf.relay.test"
netsnoall TXT "v=spf1 ip4:203.0.113.7"
netsplusall TXT "v=spf1 include:plusall.test ip4:203.0.113.9"
netsmacro TXT "v=spf1 ip4:203.0.113.8 redirect=%{{d}}.nets.test"
; Names a macro would expand to, if macros were (wrongly) taken literally.
%{{i}}.nets A 192.0.2.99
%{{d}}.nets TXT "v=spf1 ip4:192.0.2.98"
tempinc TXT "v=spf1 include:servfail.test -all"

; DMARCbis tree walk: psd=y marks a public suffix domain, psd=n an organization.
_dmarc.psd TXT "v=DMARC1; p=reject; psd=y"
_dmarc.org.npsd TXT "v=DMARC1; p=none; psd=n"
_dmarc.npsd TXT "v=DMARC1; p=reject"

; DMARC findings: t=y, a pct not in 0..100, report addresses in and outside the domain.
_dmarc.testing TXT {_txt(TESTING_DMARC)}
; A report address whose domain cannot be looked up.
_dmarc.destfail TXT "v=DMARC1; p=reject; rua=mailto:d@servfail.test"
; A report address with two "@": invalid, no destination to authorize; the next one is.
_dmarc.twoat TXT "v=DMARC1; p=reject; rua=mailto:a@b@noauth.test,mailto:c@noauth.test"
; An sp= that is not a policy: a subdomain falls back to p.
_dmarc.spbad TXT "v=DMARC1; p=reject; sp=bogus; rua=mailto:d@spbad.test"
"""


REVERSE = """
$TTL 300
@ SOA ns.test. hostmaster.test. 1 3600 600 86400 60
1.2.0.192 PTR out1.relay.test.
2.2.0.192 PTR out2.relay.test.
7.100.51.198 PTR mailer.clean.test.
3.2.0.192 PTR out3.relay.test.
"""


def _policy(mode: str, *mx: str, max_age: int = 86400) -> bytes:
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), f"max_age: {max_age}"]
    return ("\r\n".join(lines) + "\r\n").encode()


MTA_STS_POLICIES = {
    "mta-sts.clean.test": Page(_policy("enforce", "mx.clean.test")),
    "mta-sts.sts-malformed.test": Page(_policy("sometimes", "mx.clean.test")),
    "mta-sts.sts-mismatch.test": Page(_policy("enforce", "*.sts-mismatch.test")),
    "mta-sts.sts-testing.test": Page(_policy("testing", "*.sts-testing.test")),
    "mta-sts.sts-big.test": Page(_policy("enforce", *["mx.clean.test"] * 5000)),
    "mta-sts.sts-slow.test": Page(_policy("enforce", "mx.clean.test"), delay=3.0),
    "mta-sts.sts-redirect.test": Page(
        b"", status=301, headers={"Location": "https://mta-sts.clean.test/.well-known/mta-sts.txt"}
    ),
    "mta-sts.sts-html.test": Page(b"<html></html>", content_type="text/html"),
}
# Every policy host but this one is in the server's certificate.
UNCERTIFIED = "mta-sts.sts-badcert.test"


@pytest.fixture(scope="session")
def mta_sts_server(tls_certs: TLSCerts):
    names = [*MTA_STS_POLICIES, "mta-sts.sts-404.test"]
    cert, key = tls_certs.issue(names, "mta-sts")
    server = HTTPSTestServer(cert, key, MTA_STS_POLICIES).start()
    yield server
    server.stop()


# A relay under a name that ends in an x, written upper-case in an include.
RELAYX = """
$TTL 300
@ SOA ns.test. hostmaster.test. 1 3600 600 86400 60
spf TXT "v=spf1 ip4:198.18.0.0/15 -all"
"""


@pytest.fixture(scope="session")
def dns_server(keys: dict[str, rsa.RSAPrivateKey]):
    server = DNSServer(
        {
            "test.": zone_text(keys),
            "in-addr.arpa.": REVERSE,
            "relayx.": RELAYX,
            # A subdomain that is a zone of its own (it has an SOA) and no DMARC record.
            "zone.parent.test.": "$TTL 300\n@ SOA ns.test. hostmaster.test. 1 3600 600 86400 60\n",
        }
    )
    server.servfail |= {"servfail.test", "_dmarc.servfail.test", "s1._domainkey.servfail.test"}
    # Its own name fails (the SOA that tells whether it exists); its _dmarc name answers.
    server.servfail.add("soafail.test")
    server.drop |= {"timeout.test", "_dmarc.timeout.test", "s1._domainkey.timeout.test"}
    server.start()
    yield server
    server.stop()


@pytest.fixture
def dns(dns_server: DNSServer, mta_sts_server: HTTPSTestServer, tls_certs: TLSCerts, settings):
    """Point the app's resolver at the test server, with a short timeout, and the
    MTA-STS policy fetch at the loopback HTTPS server (its port, the test CA)."""
    with override_settings(
        SMTPRELAY={
            **settings.SMTPRELAY,
            "DNS_NAMESERVERS": [dns_server.address],
            "DNS_TIMEOUT": 0.4,
            "DNS_CACHE_SECONDS": 300,
            "MTA_STS_PORT": mta_sts_server.port,
            "MTA_STS_CA_FILE": str(tls_certs.ca_file),
        }
    ):
        clear_cache()
        yield dns_server
    clear_cache()


@pytest.fixture
def make_route(db, keys):
    def make(name: str = "relay", **options: object) -> Route:
        signing_key = options.pop("dkim_private_key", None)
        route = Route(name=name, host=f"{name}.example", **options)
        if signing_key is not None:
            route.dkim_private_key = signing_key
        route.full_clean()
        route.save()
        return route

    return make


@pytest.fixture
def routes(make_route, keys) -> list[Route]:
    """The usual pair: a relay that signs as the sender, and a host sending directly."""
    return [
        make_route(
            "relay",
            spf_include="spf.relay.test",
            dkim_selector="s1",
            dkim_private_key=_pem(keys["signing"]),
        ),
        make_route("direct", sending_ips="198.51.100.7", priority=200),
    ]


@pytest.fixture
def signing_pem(keys) -> str:
    return _pem(keys["signing"])


@pytest.fixture(scope="session")
def limits_server():
    """A second server for the hostile and boundary SPF zone (tests/domains/limits_zone.py)."""
    # The parent zone, empty, so DMARC's tree walk finds no record rather than a refusal.
    parent = "$TTL 300\n@ SOA ns.test. hostmaster.test. 1 3600 600 86400 60\n"
    server = DNSServer({f"{limits_zone.ORIGIN}.": limits_zone.zone_text(), "test.": parent})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def limits_dns(limits_server: DNSServer, settings):
    """Point the resolver at the limits zone; its query log starts empty."""
    with override_settings(
        SMTPRELAY={
            **settings.SMTPRELAY,
            "DNS_NAMESERVERS": [limits_server.address],
            "DNS_TIMEOUT": 2.0,
            "DNS_CACHE_SECONDS": 300,
        }
    ):
        clear_cache()
        limits_server.queries.clear()
        yield limits_server
    clear_cache()
