"""Fixtures for direct-to-MX routes: a loopback DNS server with recipient domains,
aiosmtpd servers standing for their MX hosts, and MTA-STS policies over HTTPS.

Every MX host resolves to 127.0.0.1; each test server listens on its own
ephemeral port, given to the transport through ``SMTPRELAY["MX_PORTS"]``.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

import pytest

from django_smtprelay.models import Route
from tests.dnsserver import DNSServer
from tests.httpsserver import HTTPSTestServer, Page
from tests.smtpserver import SMTPTestServer
from tests.tlscerts import TLSCerts

ZONE = """
$TTL 300
@ SOA ns.test. hostmaster.test. 1 3600 600 86400 60
@ NS ns.test.
ns A 127.0.0.1

; multi.test: three preferences (the first down, the second busy, the third fine).
multi MX 10 mx-down.multi.test.
multi MX 20 mx-busy.multi.test.
multi MX 30 mx-ok.multi.test.
mx-down.multi A 127.0.0.1
mx-busy.multi A 127.0.0.1
mx-ok.multi A 127.0.0.1

; equal.test: two hosts of equal preference.
equal MX 10 mx-a.equal.test.
equal MX 10 mx-b.equal.test.
mx-a.equal A 127.0.0.1
mx-b.equal A 127.0.0.1

; down.test: both hosts down.
down MX 10 mx1.down.test.
down MX 20 mx2.down.test.
mx1.down A 127.0.0.1
mx2.down A 127.0.0.1

; nullmx.test takes no mail (RFC 7505); amx.test has no MX, only an address.
nullmx MX 0 .
amx A 127.0.0.1

; tls.test: one MX host, with STARTTLS.
tls MX 10 mx.tls.test.
mx.tls A 127.0.0.1

; MTA-STS: enforce names only mx.sts-enforce.test (not the preferred host).
sts-enforce MX 10 other.sts-enforce.test.
sts-enforce MX 20 mx.sts-enforce.test.
other.sts-enforce A 127.0.0.1
mx.sts-enforce A 127.0.0.1
_mta-sts.sts-enforce TXT "v=STSv1; id=1"
mta-sts.sts-enforce A 127.0.0.1

; testing mode: the only MX host is not in the policy.
sts-testing MX 10 mx.sts-testing.test.
mx.sts-testing A 127.0.0.1
_mta-sts.sts-testing TXT "v=STSv1; id=7"
mta-sts.sts-testing A 127.0.0.1

; v6.test: its one MX host has only an IPv6 address.
v6 MX 10 mx.v6.test.
mx.v6 AAAA ::1

; The EHLO name check: a name that resolves to the sending IP and back, and others.
good-ehlo A 192.0.2.10
noptr-ehlo A 192.0.2.11
wrongip-ehlo A 192.0.2.99
"""

REVERSE = """
$TTL 300
@ SOA ns.test. hostmaster.test. 1 3600 600 86400 60
10.2.0.192 PTR good-ehlo.test.
11.2.0.192 PTR someone-else.test.
"""


def policy(mode: str, *mx: str, max_age: int = 86400) -> bytes:
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), f"max_age: {max_age}"]
    return ("\r\n".join(lines) + "\r\n").encode()


POLICIES = {
    "mta-sts.sts-enforce.test": Page(policy("enforce", "mx.sts-enforce.test")),
    "mta-sts.sts-testing.test": Page(policy("testing", "mx.elsewhere.test")),
}

# Names the MX test servers' good certificate is for.
MX_TLS_NAMES = ["mx.tls.test", "mx.sts-enforce.test", "mx.sts-testing.test"]


@pytest.fixture(scope="session")
def mx_dns() -> Any:
    server = DNSServer({"test.": ZONE, "in-addr.arpa.": REVERSE})
    server.servfail.add("servfail.test")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sts_server(tls_certs: TLSCerts) -> Any:
    cert, key = tls_certs.issue(list(POLICIES), "mx-sts")
    server = HTTPSTestServer(cert, key, POLICIES).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mx_tls_context(tls_certs: TLSCerts) -> ssl.SSLContext:
    """A server context whose certificate (from the test CA) names the MX test hosts."""
    cert, key = tls_certs.issue(MX_TLS_NAMES, "mx-hosts")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture
def mx_settings(
    mx_dns: DNSServer,
    sts_server: HTTPSTestServer,
    tls_certs: TLSCerts,
    relay_settings: Callable[..., None],
) -> Callable[..., None]:
    """The resolver at the loopback DNS server, policies from the loopback HTTPS
    server, the test CA trusted; call it with ``{mx host: server}`` to route them."""
    base = {
        "DNS_NAMESERVERS": [mx_dns.address],
        "DNS_TIMEOUT": 0.5,
        "MTA_STS_PORT": sts_server.port,
        "MTA_STS_CA_FILE": str(tls_certs.ca_file),
        "TLS_CA_FILE": str(tls_certs.ca_file),
        "MX_PRIVATE_ADDRESSES": True,
        "EHLO_HOSTNAME": "sender.test",
    }
    relay_settings(**base)

    def hosts(servers: dict[str, SMTPTestServer | int], **extra: Any) -> None:
        ports = {h: s if isinstance(s, int) else s.port for h, s in servers.items()}
        relay_settings(**{**base, "MX_PORTS": ports, **extra})

    return hosts


@pytest.fixture
def mx_route(db: None) -> Callable[..., Route]:
    def make(**fields: Any) -> Route:
        values: dict[str, Any] = {"name": "direct", "kind": Route.Kind.MX, "timeout": 3.0}
        values.update(fields)
        route = Route(**values)
        route.full_clean()
        route.save()
        return route

    return make
