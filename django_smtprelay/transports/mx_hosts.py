"""Where a recipient domain's mail goes: its MX hosts in the order to try them.

RFC 5321 section 5.1: the MX records by preference, equal preferences in a
random order (so senders spread their load); no MX record at all means the
domain's own A/AAAA records (the "implicit MX"); RFC 7505's null MX
(``0 .``) says the domain takes no mail, which fails its recipients at once.
Lookups go through :class:`~django_smtprelay.domains.resolver.Resolver`:
dnspython with the ``DNS_*`` settings' servers and timeout, answers cached
for their TTL (at most ``DNS_CACHE_SECONDS``) in a cache of bounded size.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import groupby

from ..conf import app_settings
from ..domains.resolver import DNSMissing, DNSUnavailable, Resolver
from ..public_ip import is_public

# The most MX hosts, and addresses in all, tried for one domain (Postfix's
# smtp_mx_address_limit is 5): a domain that lists fifty cannot hold a worker.
MAX_HOSTS = 5
MAX_ADDRESSES = 5

# Equal preferences in a random order; tests replace it to fix the order.
shuffle: Callable[[list[str]], None] = random.shuffle


class NoDestination(Exception):
    """The domain's mail cannot go anywhere: ``permanent`` (it takes none, it does
    not exist) or not (the lookup failed; retry later). ``str()`` says why."""

    def __init__(self, reason: str, *, permanent: bool, enhanced: str) -> None:
        super().__init__(reason)
        self.reason, self.permanent, self.enhanced = reason, permanent, enhanced


@dataclass
class Destination:
    """A domain's MX host names, in the order to try them (``implicit``: no MX record,
    the domain itself)."""

    domain: str
    hosts: list[str]
    implicit: bool = False
    # Host name -> its addresses, or why it has none: resolved on first need.
    _addresses: dict[str, list[str] | str] = field(default_factory=dict, repr=False)

    def addresses(self, host: str, resolver: Resolver) -> list[str] | str:
        """``host``'s usable addresses (IPv4 first), or why there are none."""
        if host not in self._addresses:
            self._addresses[host] = _usable_addresses(host, resolver)
        return self._addresses[host]


def lookup_ascii(domain: str) -> str:
    """The domain as asked of DNS (IDNA for a non-ASCII one); ValueError if invalid."""
    domain = domain.rstrip(".").lower()
    if domain.isascii():
        if not domain or ".." in domain:
            raise ValueError(f"{domain!r} is not a domain name")
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"{domain!r} is not a valid internationalized domain name") from exc


def find_destination(domain: str, resolver: Resolver) -> Destination:
    """The domain's MX hosts in the order to try; raises NoDestination."""
    try:
        name = lookup_ascii(domain)
    except ValueError as exc:
        raise NoDestination(str(exc), permanent=True, enhanced="5.1.2") from exc
    try:
        records = resolver.mx(name)
    except DNSMissing as exc:
        if exc.nxdomain:
            raise NoDestination(
                f"the domain {domain} does not exist (NXDOMAIN)", permanent=True, enhanced="5.1.2"
            ) from exc
        return _implicit(domain, name, resolver)
    except DNSUnavailable as exc:
        raise NoDestination(
            f"the MX lookup for {domain} failed ({exc.reason})", permanent=False, enhanced="4.4.3"
        ) from exc
    hosts = [(pref, host) for pref, host in records if host != "."]
    if not hosts:
        # RFC 7505: "0 ." is the domain saying it takes no mail at all.
        raise NoDestination(
            f"the domain {domain} accepts no mail (null MX, RFC 7505)",
            permanent=True,
            enhanced="5.1.10",
        )
    ordered: list[str] = []
    for _, same in groupby(hosts, key=lambda pair: pair[0]):
        names = list(dict.fromkeys(host for _, host in same))
        shuffle(names)
        ordered += names
    return Destination(domain, ordered[:MAX_HOSTS])


def _implicit(domain: str, name: str, resolver: Resolver) -> Destination:
    """No MX record: the domain's own address records stand for one (RFC 5321 5.1)."""
    try:
        resolver.addresses(name)
    except DNSMissing as exc:
        raise NoDestination(
            f"the domain {domain} has no MX and no A/AAAA record", permanent=True, enhanced="5.1.2"
        ) from exc
    except DNSUnavailable as exc:
        raise NoDestination(
            f"the address lookup for {domain} (it has no MX) failed ({exc.reason})",
            permanent=False,
            enhanced="4.4.3",
        ) from exc
    return Destination(domain, [name], implicit=True)


def _usable_addresses(host: str, resolver: Resolver) -> list[str] | str:
    try:
        found = resolver.addresses(host)
    except DNSMissing as exc:
        return f"does not resolve ({exc.reason})"
    except DNSUnavailable as exc:
        return f"could not be resolved ({exc.reason})"
    usable, refused = [], []
    for address in dict.fromkeys(found):
        try:
            ipaddress.ip_address(address)
        except ValueError:
            continue
        if is_public(address) or app_settings.mx_private_addresses:
            usable.append(address)
        else:
            refused.append(address)
    if not usable:
        return f"{', '.join(refused)} is not a public address" if refused else "has no address"
    return usable[:MAX_ADDRESSES]
