"""The resolver tells a missing record from a lookup that could not be made."""

from __future__ import annotations

import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_smtprelay.domains.resolver import (
    DNSMissing,
    DNSUnavailable,
    Resolver,
    parse_nameserver,
)


@pytest.mark.parametrize(
    ("value", "address", "port"),
    [
        ("127.0.0.1", "127.0.0.1", 53),
        ("127.0.0.1:5353", "127.0.0.1", 5353),
        ("[::1]:5300", "::1", 5300),
        ("::1", "::1", 53),
        ("localhost:54", "127.0.0.1", 54),
    ],
)
def test_parse_nameserver(value, address, port):
    server = parse_nameserver(value)
    assert (server.address, server.port) == (address, port)


def test_parse_nameserver_names_the_bad_value():
    with pytest.raises(ImproperlyConfigured, match=r"no-such-host\.invalid"):
        parse_nameserver("no-such-host.invalid:53")


def test_answers_and_nxdomain_and_nodata(dns):
    resolver = Resolver()
    assert resolver.txt("plusall.test") == ["v=spf1 +all"]
    with pytest.raises(DNSMissing) as exc:
        resolver.txt("nothing-here.test")
    assert exc.value.nxdomain
    with pytest.raises(DNSMissing) as exc:
        resolver.query("plusall.test", "MX")
    assert not exc.value.nxdomain
    assert resolver.mx("nullmx.test") == [(0, ".")]
    assert resolver.ptr("192.0.2.1") == ["out1.relay.test"]


def test_servfail_is_unavailable_not_missing(dns):
    with pytest.raises(DNSUnavailable, match="SERVFAIL"):
        Resolver().txt("servfail.test")


def test_timeout_is_unavailable_and_bounded_by_setting(dns):
    start = time.monotonic()
    with pytest.raises(DNSUnavailable, match="timed out"):
        Resolver().txt("timeout.test")
    assert time.monotonic() - start < 2


def test_truncated_udp_answer_is_retried_over_tcp(dns):
    text = Resolver().txt("big.test")[0]
    assert text.startswith("v=spf1 ip4:203.0.113.1 ") and text.endswith("-all")
    assert dns.queries[("big.test", "TXT", "udp")] >= 1
    assert dns.queries[("big.test", "TXT", "tcp")] >= 1


def test_answers_are_cached_for_the_setting(dns):
    Resolver().txt("neutral.test")
    before = sum(n for (name, *_), n in dns.queries.items() if name == "neutral.test")
    Resolver().txt("neutral.test")
    after = sum(n for (name, *_), n in dns.queries.items() if name == "neutral.test")
    assert after == before


def test_cache_can_be_turned_off(dns, settings):
    with override_settings(SMTPRELAY={**settings.SMTPRELAY, "DNS_CACHE_SECONDS": 0}):
        resolver = Resolver()
        resolver.txt("neutral.test")
        resolver.txt("neutral.test")
        assert resolver.queries == 2


def test_nothing_listening_is_unavailable(dns, settings):
    with (
        override_settings(
            SMTPRELAY={**settings.SMTPRELAY, "DNS_NAMESERVERS": ["127.0.0.1:9"], "DNS_TIMEOUT": 0.3}
        ),
        pytest.raises(DNSUnavailable),
    ):
        Resolver().txt("clean.test")
