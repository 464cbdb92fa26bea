"""The big mailbox providers' sender requirements, as a checklist.

Gmail, Yahoo and Microsoft publish similar rules for bulk senders: SPF and
DKIM, a DMARC record (p=none is enough) with alignment, reverse DNS that
matches forward DNS for sending IPs, TLS, and one-click unsubscribe. Most can
be checked from DNS and route settings; unsubscribe headers cannot, and say so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from .findings import CheckResult
from .resolver import DNSMissing, DNSUnavailable, Resolver
from .routes import RouteResult

if TYPE_CHECKING:
    from ..models import Route

MET, NOT_MET, UNKNOWN, MANUAL = "met", "not_met", "unknown", "manual"


@dataclass
class ChecklistItem:
    key: str
    requirement: str
    status: str
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def check_hosts(results: list[RouteResult], resolver: Resolver) -> CheckResult:
    """Reverse DNS of each sending IP, confirmed by a forward lookup (FCrDNS)."""
    result = CheckResult("host")
    result.data["unknown"] = []
    seen: set[str] = set()
    for route in results:
        for ip in route.hosts:
            if ip in seen:
                continue
            seen.add(ip)
            try:
                names = resolver.ptr(ip)
            except DNSMissing:
                result.add("host.ptr_missing", found=ip, expected="a PTR record", route=route.route)
                continue
            except DNSUnavailable:
                result.data["unknown"].append(ip)
                continue
            result.records.append(f"{ip} -> {', '.join(names)}")
            if not any(_resolves_to(name, ip, resolver) for name in names):
                result.add(
                    "host.ptr_mismatch",
                    found=f"{ip} -> {', '.join(names)}",
                    expected=f"{names[0]} A/AAAA {ip}",
                    route=route.route,
                )
    return result


def _resolves_to(name: str, ip: str, resolver: Resolver) -> bool:
    try:
        return ip in resolver.addresses(name)
    except (DNSMissing, DNSUnavailable):
        return False


def check_tls(routes: list[Route]) -> CheckResult:
    result = CheckResult("route")
    for route in routes:
        if route.security == "none":
            result.add("route.no_tls", found="security=none", expected="starttls", route=route.name)
    return result


def _all(values: list[bool | None]) -> str:
    if not values:
        return UNKNOWN
    if any(v is False for v in values):
        return NOT_MET
    return UNKNOWN if any(v is None for v in values) else MET


def checklist(
    results: list[RouteResult],
    dmarc_record_ok: bool | None,
    hosts: CheckResult,
    tls: CheckResult,
) -> list[ChecklistItem]:
    """One line per requirement: met, not met, unknown (could not tell), manual."""

    def spf_ok(r: RouteResult) -> bool | None:
        return None if r.spf in ("unknown", "temperror") else r.spf == "pass"

    def dkim_ok(r: RouteResult) -> bool | None:
        return None if r.dkim == "unknown" else r.dkim == "pass"

    spf_routes = [spf_ok(r) for r in results]
    dmarc_status = {True: MET, False: NOT_MET, None: UNKNOWN}[dmarc_record_ok]
    host_status = (
        NOT_MET
        if hosts.findings
        else UNKNOWN
        if hosts.data.get("unknown") or not hosts.records
        else MET
    )
    return [
        ChecklistItem("spf", "SPF authorizes every route's sending hosts", _all(spf_routes)),
        ChecklistItem(
            "dkim",
            "Every route signs with a published DKIM key",
            _all([dkim_ok(r) for r in results]),
        ),
        ChecklistItem("dmarc", "A DMARC record (p=none at least)", dmarc_status),
        ChecklistItem(
            "alignment",
            "DMARC alignment (SPF or DKIM) through every route",
            _all(
                [r.dmarc_pass if spf_ok(r) is not None or r.dkim_aligned else None for r in results]
            ),
        ),
        ChecklistItem(
            "ptr",
            "Sending IPs have reverse DNS matching forward DNS",
            host_status,
            "Only routes with known sending IPs are checked.",
        ),
        ChecklistItem(
            "tls",
            "Routes send with TLS",
            NOT_MET if tls.findings else MET if results else UNKNOWN,
        ),
        ChecklistItem(
            "unsubscribe",
            "One-click unsubscribe (RFC 8058) in bulk mail",
            MANUAL,
            "Not visible in DNS: bulk messages need List-Unsubscribe and "
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click headers.",
        ),
    ]
