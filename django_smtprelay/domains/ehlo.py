"""Does a route's EHLO name match its sending IP, both ways (forward-confirmed rDNS)?

Receivers that see mail straight from the site (a direct-to-MX route) look
at the name it gives in EHLO and at the reverse DNS of the address it
connects from: the name should resolve (A/AAAA) to that address, and the
address's PTR record should give the name back. Many refuse or score down
mail that fails either. The check says what it found and what to change.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field

from ..conf import app_settings
from .resolver import Budget, DNSMissing, DNSUnavailable, Resolver

# A page view asks at most this much of DNS.
_QUERIES, _SECONDS = 12, 5.0


@dataclass
class EHLOCheck:
    """``status``: "ok", "warning" (something to fix) or "unknown" (not checkable now)."""

    name: str
    status: str = "ok"
    found: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)

    def fix(self, text: str) -> None:
        self.status = "warning"
        self.fixes.append(text)

    def unknown(self, text: str) -> None:
        if self.status == "ok":
            self.status = "unknown"
        self.fixes.append(text)


def effective_ehlo_name(route_name: str = "") -> str:
    """The name a route says in EHLO: its own, the EHLO_HOSTNAME setting, or the machine's."""
    return route_name or app_settings.ehlo_hostname or socket.getfqdn()


def check_ehlo(name: str, sending_ips: list[str], resolver: Resolver | None = None) -> EHLOCheck:
    """Whether ``name`` resolves to each of ``sending_ips`` and each gives ``name`` back."""
    resolver = resolver or Resolver()
    resolver.start_budget(Budget(_QUERIES, _SECONDS))
    name = name.rstrip(".").lower()
    result = EHLOCheck(name)
    if "." not in name:
        result.fix(
            f"{name!r} is not a fully qualified domain name: set the route's EHLO name "
            "(or SMTPRELAY['EHLO_HOSTNAME']) to a name in DNS, such as mail.example.com."
        )
        return result
    try:
        forward = set(resolver.addresses(name))
        result.found.append(f"{name} resolves to {', '.join(sorted(forward))}")
    except DNSMissing:
        forward = set()
        result.found.append(f"{name} has no A or AAAA record")
    except DNSUnavailable as exc:
        result.unknown(f"{name} could not be resolved now ({exc.reason}); check again later.")
        return result
    if not sending_ips:
        result.unknown(
            "The route's sending IPs name no single address: give the address it "
            "connects from (\u201cSending IPs\u201d) to check both directions."
        )
        return result
    for ip in sending_ips:
        if ip not in forward:
            result.fix(
                f"Publish {name} {'AAAA' if ':' in ip else 'A'} {ip} (the name does not "
                f"resolve to the sending IP {ip})."
            )
        _check_ptr(result, name, ip, resolver)
    return result


def _check_ptr(result: EHLOCheck, name: str, ip: str, resolver: Resolver) -> None:
    try:
        names = resolver.ptr(ip)
    except DNSMissing:
        names = []
    except DNSUnavailable as exc:
        result.unknown(f"The reverse DNS of {ip} could not be read now ({exc.reason}).")
        return
    result.found.append(f"{ip} reverses to {', '.join(names) if names else 'nothing (no PTR)'}")
    if name not in names:
        result.fix(
            f"Ask whoever owns {ip} (the hosting provider) to set its reverse DNS (PTR) to "
            f"{name}; it is {', '.join(names) if names else 'unset'} now."
        )


def single_addresses(networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> list[str]:
    """The single addresses among a route's sending networks (a /24 names no one host)."""
    return [str(net.network_address) for net in networks if net.num_addresses == 1]
