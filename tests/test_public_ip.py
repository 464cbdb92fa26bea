"""Addresses a DNS zone may send the app to: IPv6 forms that lead to a private
IPv4 address are not public (NAT64, 6to4, Teredo, IPv4-compatible, mapped)."""

from __future__ import annotations

import pytest

from django_smtprelay.public_ip import embedded_ipv4, is_public


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::a00:1",  # NAT64 -> 10.0.0.1
        "64:ff9b::7f00:1",  # NAT64 -> 127.0.0.1
        "64:ff9b:1::a9fe:a9fe",  # local-use NAT64 -> 169.254.169.254
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
        "::127.0.0.1",  # IPv4-compatible
        "::ffff:10.1.2.3",  # IPv4-mapped
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
        "10.0.0.1",
        "127.0.0.1",
        "::1",
        "fd00::1",
        "not an address",
    ],
)
def test_addresses_that_lead_to_a_private_network_are_not_public(address):
    assert not is_public(address)


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "2606:2800:220:1:248:1893:25c8:1946",
        "64:ff9b::5db8:d822",  # NAT64 -> 93.184.216.34
        "2002:5db8:d822::1",  # 6to4 of 93.184.216.34
    ],
)
def test_public_addresses_and_public_embedded_ones_are_public(address):
    assert is_public(address)


def test_the_embedded_address_is_read_from_each_form():
    import ipaddress

    assert str(embedded_ipv4(ipaddress.IPv6Address("64:ff9b::a00:1"))) == "10.0.0.1"
    assert str(embedded_ipv4(ipaddress.IPv6Address("2002:7f00:1::1"))) == "127.0.0.1"
    assert embedded_ipv4(ipaddress.IPv6Address("2606:2800:220:1::1")) is None
