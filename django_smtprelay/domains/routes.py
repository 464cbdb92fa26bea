"""Per route: does mail from the domain pass SPF, DKIM and DMARC through it?

A route sends from its own hosts, with its own envelope domain if it rewrites
the return path, and signs (or not) with its own d=. The same sending domain
can therefore pass DMARC through one relay and fail through the next; the
admin's per-route table comes from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from ..validators import IPNetwork
from . import dmarc, spf
from .dkim import DKIMKey, check_selector
from .resolver import DNSUnavailable, Resolver
from .spf_audit import networks_of

if TYPE_CHECKING:
    from ..models import Route

MAX_HOSTS = 8
_SPF_ORDER = ("temperror", "permerror", "fail", "softfail", "neutral", "none", "pass")


@dataclass
class RouteResult:
    """What a receiver concludes about mail from the domain sent through one route."""

    route: str
    envelope_domain: str
    hosts: list[str] = field(default_factory=list)
    hosts_source: str = ""  # "sending_ips", "spf_include:<domain>" or "" when unknown
    spf: str = "unknown"  # an RFC 7208 result, or "unknown" when hosts are unknown
    spf_detail: str = ""
    spf_aligned: bool = False
    dkim_domain: str = ""
    dkim_selector: str = ""
    dkim: str = "none"  # pass (usable key), fail, none (not signing), unknown
    dkim_aligned: bool = False
    aligned_by: list[str] = field(default_factory=list)
    dmarc_pass: bool = False
    fix: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def sample_hosts(networks: list[IPNetwork]) -> list[str]:
    """A few IPs to test per network: the first and last usable address."""
    hosts: list[str] = []
    for net in networks:
        if net.num_addresses <= 2:
            picks = [net.network_address]
        else:
            picks = [net.network_address + 1, net.broadcast_address - 1]
        hosts += [str(ip) for ip in picks if str(ip) not in hosts]
    return hosts[:MAX_HOSTS]


def route_hosts(route: Route, resolver: Resolver) -> tuple[list[str], str]:
    """The IPs to test for a route and where they came from; raises DNSUnavailable."""
    networks = route.sending_networks()
    if networks:
        return sample_hosts(networks), "sending_ips"
    if route.spf_include:
        return sample_hosts(networks_of(route.spf_include, resolver)), (
            f"spf_include:{route.spf_include}"
        )
    return [], ""


def evaluate(
    route: Route,
    domain: str,
    resolver: Resolver,
    policy: dmarc.Policy,
    keys: dict[tuple[str, str], DKIMKey],
    app_signing: Sequence[tuple[str, str]] = (),
) -> RouteResult:
    """Evaluate one route for mail with From: ``...@domain``."""
    envelope = route.envelope_domain(domain)
    result = RouteResult(route.name, envelope)
    record = policy.record
    aspf = record.alignment("aspf") if record else "r"
    adkim = record.alignment("adkim") if record else "r"
    try:
        result.hosts, result.hosts_source = route_hosts(route, resolver)
    except DNSUnavailable as exc:
        result.spf, result.spf_detail = "temperror", str(exc)
    if result.hosts:
        outcomes = [
            spf.check_host(ip, envelope, f"postmaster@{envelope}", resolver) for ip in result.hosts
        ]
        worst = min(outcomes, key=lambda o: _SPF_ORDER.index(o.result))
        result.spf = worst.result
        result.spf_detail = f"{worst.ip}: {worst.reason}"
    try:
        result.spf_aligned = result.spf == "pass" and dmarc.aligned(
            envelope, domain, aspf, resolver
        )
        if not (
            route.dkim_sign
            and _evaluate_app_dkim(domain, resolver, adkim, keys, app_signing, result)
        ):
            _evaluate_dkim(route, domain, resolver, adkim, keys, result)
    except DNSUnavailable as exc:
        result.dkim, result.fix = "unknown", str(exc)
    result.aligned_by = [
        name for name, ok in (("spf", result.spf_aligned), ("dkim", result.dkim_aligned)) if ok
    ]
    result.dmarc_pass = bool(result.aligned_by)
    if not result.dmarc_pass and not result.fix:
        result.fix = _fix(result, domain, aspf, adkim, app_signs=route.dkim_sign)
    return result


def _evaluate_dkim(
    route: Route,
    domain: str,
    resolver: Resolver,
    adkim: str,
    keys: dict[tuple[str, str], DKIMKey],
    result: RouteResult,
) -> None:
    signing = route.signing_domain(domain)
    if not signing:
        return
    result.dkim_domain, result.dkim_selector = signing, route.dkim_selector
    key = keys.get((signing, route.dkim_selector))
    if key is None:
        key = check_selector(signing, route.dkim_selector, resolver, route.dkim_private_key)
        keys[(signing, route.dkim_selector)] = key
    result.dkim = "pass" if key.usable else "fail"
    result.dkim_aligned = key.usable and dmarc.aligned(signing, domain, adkim, resolver)


def _evaluate_app_dkim(
    domain: str,
    resolver: Resolver,
    adkim: str,
    keys: dict[tuple[str, str], DKIMKey],
    app_signing: Sequence[tuple[str, str]],
    result: RouteResult,
) -> bool:
    """The route signs in the app, with the domain's active keys: True if it has any.

    Dual signing passes when either signature verifies: a receiver that does
    not know Ed25519 still verifies the RSA one.
    """
    checked = [keys[pair] for pair in app_signing if pair in keys]
    if not checked:
        return False
    usable = [k for k in checked if k.usable]
    first = (usable or checked)[0]
    result.dkim_domain = first.domain
    result.dkim_selector = ", ".join(k.selector for k in checked)
    result.dkim = "pass" if usable else "fail"
    result.dkim_aligned = bool(usable) and dmarc.aligned(first.domain, domain, adkim, resolver)
    return True


def _fix(
    result: RouteResult, domain: str, aspf: str, adkim: str, *, app_signs: bool = False
) -> str:
    steps = []
    if result.spf == "unknown":
        steps.append("fill in the route's sending IPs or SPF include")
    elif result.spf != "pass":
        steps.append(f"authorize the route in the SPF record of {result.envelope_domain}")
    elif not result.spf_aligned:
        steps.append(
            f"use a return-path domain {'equal to' if aspf == 's' else 'under'} {domain} "
            f"(aspf={aspf}; now {result.envelope_domain})"
        )
    if not result.dkim_domain and app_signs:
        steps.append(f"generate a DKIM key for {domain}, publish it and activate it")
    elif not result.dkim_domain:
        steps.append(f"have the route sign with d={domain}")
    elif result.dkim != "pass":
        selector = result.dkim_selector.split(",")[0]
        steps.append(f"publish the key at {selector}._domainkey.{result.dkim_domain}")
    elif not result.dkim_aligned:
        steps.append(f"sign with d={domain} instead of d={result.dkim_domain} (adkim={adkim})")
    text = "; or ".join(steps)
    return text[:1].upper() + text[1:] + "."
