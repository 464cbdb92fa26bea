"""Whether an address is one the app may connect to on a DNS zone's say-so.

``ipaddress``'s ``is_global`` judges an IPv6 address by its own prefix, so an
address that carries an IPv4 address inside it (NAT64, 6to4, Teredo, the old
IPv4-compatible form) is "global" even when the IPv4 address it leads to is
10.0.0.1 or 127.0.0.1: on a host behind a NAT64 gateway, an MX or MTA-STS
record of ``64:ff9b::a00:1`` would reach the internal network. Pure: no models.
"""

from __future__ import annotations

import ipaddress

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address leads to, if it carries one."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client's address
    if any(ip in net for net in _NAT64) or ip in _IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for a globally reachable address whose embedded IPv4 address, if
    any, is globally reachable too; False for anything else, or not an address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if not ip.is_global:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None and not inner.is_global:
            return False
    return True
