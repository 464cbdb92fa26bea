"""Fixtures: a loopback DNS zone the tests publish DKIM keys into, and a verifier
that checks signatures with dkimpy against what that zone serves."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import dkim
import dns.name
import dns.resolver
import dns.zone
import pytest
from django.test import override_settings

from django_smtprelay.domains.resolver import clear_cache
from django_smtprelay.models import DkimKey, SenderDomain
from django_smtprelay.signing.keys import zone_line
from tests.dnsserver import DNSServer

DOMAIN = "sign.test"
# SPF authorizes no relay of the tests, so DMARC passes only by DKIM.
BASE = """$TTL 300
@ SOA ns.sign.test. hostmaster.sign.test. 1 3600 600 86400 60
@ NS ns.sign.test.
ns A 127.0.0.1
@ TXT "v=spf1 ip4:192.0.2.200 -all"
@ MX 10 mx.sign.test.
mx A 192.0.2.25
_dmarc TXT "v=DMARC1; p=reject; adkim=r; aspf=r"
"""
PARENT = "$TTL 300\n@ SOA ns.test. hostmaster.test. 1 3600 600 86400 60\n"


class Zone:
    """``sign.test`` as the loopback server serves it; :meth:`publish` adds a key's record."""

    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self.lines: list[str] = []
        self.reload()

    def publish(self, key: DkimKey, value: str | None = None) -> None:
        """Publish ``key``'s TXT record as the admin shows it (or ``value`` instead)."""
        self.lines.append(zone_line(key.name, value if value is not None else key.txt_record))
        self.reload()

    def reload(self) -> None:
        text = BASE + "\n".join(self.lines) + "\n"
        origin = dns.name.from_text(f"{DOMAIN}.")
        self.server.zones[origin] = dns.zone.from_text(
            text, origin=origin, relativize=False, check_origin=False
        )
        clear_cache()

    def txt(self, name: bytes, timeout: float = 5) -> bytes | None:
        """dkimpy's ``dnsfunc``: the TXT record at ``name``, from the loopback server."""
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [self.server.host]
        resolver.port = self.server.port
        try:
            answer = resolver.resolve(name.decode().rstrip("."), "TXT", lifetime=timeout)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        return b"".join(b"".join(r.strings) for r in answer)


@pytest.fixture
def zone(settings) -> Iterator[Zone]:
    server = DNSServer({f"{DOMAIN}.": BASE, "test.": PARENT})
    server.start()
    try:
        with override_settings(
            SMTPRELAY={
                **settings.SMTPRELAY,
                "DNS_NAMESERVERS": [server.address],
                "DNS_TIMEOUT": 0.4,
                "DNS_CACHE_SECONDS": 300,
            }
        ):
            yield Zone(server)
    finally:
        server.stop()
        clear_cache()


@pytest.fixture
def sender_domain(db) -> SenderDomain:
    return SenderDomain.objects.create(domain=DOMAIN)


@pytest.fixture
def make_key(sender_domain, zone) -> Callable[..., DkimKey]:
    """``make_key(selector, algorithm, publish=True, activate=True)``."""

    def make(
        selector: str = "s1",
        algorithm: str = DkimKey.Algorithm.RSA_SHA256,
        *,
        publish: bool = True,
        activate: bool = True,
    ) -> DkimKey:
        key = DkimKey.generate(sender_domain, selector, algorithm)
        if publish:
            zone.publish(key)
        if activate:
            key.activate()
        return key

    return make


def signatures(data: bytes) -> list[dict[bytes, bytes]]:
    """The DKIM-Signature headers of ``data``, parsed, top first."""
    from dkim.util import parse_tag_value

    headers, _ = dkim.rfc822_parse(data)
    return [parse_tag_value(v) for n, v in headers if n.lower() == b"dkim-signature"]


def verify_all(data: bytes, zone: Zone) -> list[bool]:
    """dkimpy's verdict on each signature of ``data``, with the zone's keys."""
    checker = dkim.DKIM(data)
    verdicts = []
    for index in range(len(signatures(data))):
        try:
            verdicts.append(checker.verify(idx=index, dnsfunc=zone.txt))
        except dkim.DKIMException:  # a body hash mismatch is raised, not returned
            verdicts.append(False)
    return verdicts
