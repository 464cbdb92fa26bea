"""Run every check for one sending domain, and keep the result on its SenderDomain.

Each area (SPF, DMARC, DKIM, MX, ...) is a small unit returning a
:class:`CheckResult` with its own timing; the report joins them with the
per-route evaluation and the providers' checklist, and gives one verdict.
The admin, the Celery task and the management command all come through here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from . import dmarc, mta_sts, records, spf_audit
from .dkim import MIN_BITS, RECOMMENDED_BITS, DKIMKey, check_selector
from .findings import CheckResult, Finding, finding, status_of
from .providers import ChecklistItem, check_hosts, check_tls, checklist
from .resolver import DNSUnavailable, Resolver
from .routes import RouteResult, evaluate
from .spf_audit import lookups_added_by_include

if TYPE_CHECKING:
    from ..models import Route, SenderDomain

AREAS = ("spf", "dmarc", "dkim", "mx", "bimi", "mta_sts", "tls_rpt", "host", "route")


@dataclass
class DomainReport:
    """Everything known about one sending domain after a check."""

    domain: str
    checked_at: datetime
    verdict: str = "ok"
    duration: float = 0.0
    org_domain: str = ""
    areas: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    records: dict[str, list[str]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    routes: list[RouteResult] = field(default_factory=list)
    dkim_keys: list[dict[str, Any]] = field(default_factory=list)
    checklist: list[ChecklistItem] = field(default_factory=list)

    @property
    def failing(self) -> bool:
        return self.verdict == "failing"

    def to_json(self) -> dict[str, Any]:
        """The documented JSON form (docs/domains.md, "JSON output")."""
        return {
            "domain": self.domain,
            "verdict": self.verdict,
            "checked_at": self.checked_at.isoformat(),
            "duration": round(self.duration, 3),
            "organizational_domain": self.org_domain,
            "areas": self.areas,
            "timings": self.timings,
            "records": self.records,
            "findings": [f.to_dict() for f in self.findings],
            "routes": [r.to_dict() for r in self.routes],
            "dkim_keys": self.dkim_keys,
            "checklist": [c.to_dict() for c in self.checklist],
        }


def _timed(report: DomainReport, run: Callable[[], CheckResult]) -> CheckResult:
    start = time.monotonic()
    result = run()
    result.duration = time.monotonic() - start
    report.timings[result.area] = round(result.duration, 3)
    return result


def _spf_suggestion(routes: list[Route]) -> str:
    terms = [f"include:{r.spf_include}" for r in routes if r.spf_include]
    for route in routes:
        if not route.spf_include:
            terms += [f"ip{n.version}:{n}" for n in route.sending_networks()]
    return " ".join(["v=spf1", *dict.fromkeys(terms), "-all"])


@dataclass
class AppKey:
    """A DKIM key the app holds for the domain (``DkimKey``), as the check needs it."""

    domain: str
    selector: str
    active: bool
    pem: str = field(default="", repr=False)
    unreadable: str = ""  # why the private key cannot be opened

    @property
    def name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"


def app_keys(domain: str) -> list[AppKey]:
    """The keys mail from ``domain`` is signed with: those of the most specific
    sending domain at or above it that has an active key (as the worker picks
    them), or the domain's own keys when none is active."""
    from ..exceptions import SMTPRelayError
    from ..models import DkimKey
    from ..signing.keys import domain_and_parents

    candidates = domain_and_parents(domain)
    rows = list(DkimKey.objects.filter(domain__domain__in=candidates).select_related("domain"))
    active = [r.domain.domain for r in rows if r.active]
    signing = min(active, key=candidates.index) if active else domain
    found = []
    for row in rows:
        if row.domain.domain != signing:
            continue
        key = AppKey(signing, row.selector, row.active)
        try:
            key.pem = row.private_key
        except SMTPRelayError as exc:
            key.unreadable = str(exc)
        found.append(key)
    return found


def _dkim(
    domain: str,
    routes: list[Route],
    selectors: Iterable[str],
    resolver: Resolver,
    own_keys: list[AppKey],
) -> tuple[CheckResult, dict[tuple[str, str], DKIMKey]]:
    """Keys this domain publishes for the app, its routes and its listed selectors."""
    result = CheckResult("dkim")
    keys: dict[tuple[str, str], DKIMKey] = {}
    wanted: dict[tuple[str, str], Route | AppKey | None] = {}
    for own in own_keys:
        wanted[(own.domain, own.selector)] = own
        if own.unreadable and own.active:
            result.add("dkim.key_unreadable", found=f"{own.name}: {own.unreadable}")
    if any(r.dkim_sign for r in routes) and not any(k.active for k in own_keys):
        result.add("dkim.unsigned", domain=domain)
    for route in routes:
        signing = route.signing_domain(domain)
        if signing and (signing == domain or signing.endswith("." + domain)):
            wanted.setdefault((signing, route.dkim_selector.lower()), route)
    for selector in selectors:
        wanted.setdefault((domain, selector), None)
    if not wanted:
        result.add("dkim.no_selector", domain=domain)
    for (signing, selector), source in wanted.items():
        own = source if isinstance(source, AppKey) else None
        route = source if own is None else None
        pem = own.pem if own else (route.dkim_private_key if route else "")
        try:
            key = check_selector(signing, selector, resolver, pem)
        except DNSUnavailable as exc:
            result.add("dkim.unavailable", found=str(exc))
            continue
        keys[(signing, selector)] = key
        if own:
            key.app_key = "active" if own.active else "inactive"
        if key.record:
            result.records.append(f"{key.name}: {key.record}")
        if own and not own.active:
            continue  # not signing: a new key not yet published, or a retired one
        name = route.name if route else ""
        if key.problem:
            found = key.detail or (f"{key.key_type} {key.bits} bits" if key.bits else key.record)
            expected = key.name if key.problem in ("dkim.missing", "dkim.key_mismatch") else ""
            if key.problem == "dkim.key_too_short":
                expected = "2048 bits"
            result.add(key.problem, found=found or "no record", expected=expected, route=name)
        if key.key_type == "rsa" and MIN_BITS <= key.bits < RECOMMENDED_BITS:
            result.add(
                "dkim.key_weak", found=f"rsa {key.bits} bits", expected="2048 bits", route=name
            )
        if key.tags.get("t", "").lower().startswith("y"):
            result.add("dkim.testing", found=f"{key.name}: t=y", route=name)
    return result, keys


def _route_findings(
    domain: str,
    results: list[RouteResult],
    routes: list[Route],
    spf: CheckResult,
    resolver: Resolver,
) -> list[Finding]:
    found: list[Finding] = []
    lookups = spf.data.get("lookups")
    for result, route in zip(results, routes, strict=True):
        if result.spf == "unknown":
            found.append(finding("spf.route_hosts_unknown", route=route.name))
        elif result.spf == "temperror":
            found.append(
                finding("spf.route_unavailable", found=result.spf_detail, route=route.name)
            )
        elif result.spf == "permerror":
            found.append(finding("spf.route_error", found=result.spf_detail, route=route.name))
        elif result.spf != "pass":
            expected = (
                f"include:{route.spf_include}"
                if route.spf_include
                else " ".join(f"ip{n.version}:{n}" for n in route.sending_networks())
            )
            found.append(
                finding(
                    "spf.route_not_authorized",
                    found=f"{result.spf} ({result.spf_detail})",
                    expected=expected,
                    route=route.name,
                    domain=result.envelope_domain,
                )
            )
            if route.spf_include and lookups is not None and result.envelope_domain == domain:
                added = lookups_added_by_include(route.spf_include, resolver)
                if added is not None and lookups.total + added > spf_audit.MAX_LOOKUPS:
                    found.append(
                        finding(
                            "spf.include_would_exceed_limit",
                            found=f"{lookups.total} + {added} lookups",
                            expected=f"at most {spf_audit.MAX_LOOKUPS}",
                            route=route.name,
                        )
                    )
        undecided = result.spf in ("unknown", "temperror") or result.dkim == "unknown"
        if not result.dmarc_pass and not undecided:
            found.append(
                finding(
                    "dmarc.route_fails", found=_why(result), expected=result.fix, route=route.name
                )
            )
    return found


def _why(result: RouteResult) -> str:
    dkim = f"DKIM {result.dkim}" + (
        f" d={result.dkim_domain}" + ("" if result.dkim_aligned else " (not aligned)")
        if result.dkim_domain
        else ""
    )
    spf_note = "" if result.spf_aligned or result.spf != "pass" else " (not aligned)"
    return f"SPF {result.spf} for {result.envelope_domain}{spf_note}; {dkim}"


def check_domain(
    domain: str,
    *,
    routes: Iterable[Route] | None = None,
    selectors: Iterable[str] = (),
    resolver: Resolver | None = None,
    own_keys: list[AppKey] | None = None,
) -> DomainReport:
    """Check one domain against the routes that send for it.

    By default: the enabled routes whose sender rule takes the domain (a route
    with no sender rule sends for every domain). The check spends at most the
    ``DOMAIN_CHECK_MAX_QUERIES`` and ``DOMAIN_CHECK_TIMEOUT`` budget; past it,
    it reports what it found and a ``check.incomplete`` finding. The app's own
    DKIM keys (``own_keys``) are read from the database when the routes are.
    """
    from ..matching import domain_matches, split_patterns
    from ..models import Route

    domain = domain.strip().lower().rstrip(".")
    resolver = resolver or Resolver()
    budget = resolver.start_budget()
    if own_keys is None:  # with the routes, from the database unless given
        own_keys = app_keys(domain) if routes is None else []
    if routes is None:
        routes = [
            r
            for r in Route.objects.filter(enabled=True)
            if domain_matches(domain, split_patterns(r.sender_domains))
        ]
    routes = list(routes)
    signing = [(k.domain, k.selector) for k in own_keys if k.active]
    start = time.monotonic()
    report = DomainReport(domain, timezone.now())
    spf = _timed(report, lambda: spf_audit.audit(domain, resolver, _spf_suggestion(routes)))
    dmarc_result = _timed(report, lambda: dmarc.audit(domain, resolver))
    dkim_start = time.monotonic()
    dkim_result, keys = _dkim(domain, routes, selectors, resolver, own_keys)
    report.timings["dkim"] = round(time.monotonic() - dkim_start, 3)
    policy = dmarc_result.data.get("policy") or dmarc.Policy(domain)
    report.org_domain = dmarc_result.data.get("org_domain", "")
    report.routes = [evaluate(r, domain, resolver, policy, keys, signing) for r in routes]
    unavailable = any(f.code == "dkim.unavailable" for f in dkim_result.findings)
    if routes and not unavailable and not any(r.dkim_aligned for r in report.routes):
        dkim_result.add("dkim.not_signing", domain=domain)
    report.dkim_keys = [k.to_dict() for k in keys.values()]
    hosts = _timed(report, lambda: check_hosts(report.routes, resolver))
    tls = check_tls(routes)
    enforcing = dmarc_result.data.get("enforcing") if "policy" in dmarc_result.data else None
    results = [
        spf,
        dmarc_result,
        dkim_result,
        _timed(report, lambda: records.check_mx(domain, resolver)),
        _timed(report, lambda: records.check_bimi(domain, resolver, enforcing)),
        _timed(report, lambda: mta_sts.check_mta_sts(domain, resolver)),
        _timed(report, lambda: records.check_tls_rpt(domain, resolver)),
        hosts,
        tls,
    ]
    route_findings = _route_findings(domain, report.routes, routes, spf, resolver)
    for result in results:
        result.findings += [f for f in route_findings if f.area == result.area]
        report.records[result.area] = result.records
        report.findings += result.findings
        report.areas[result.area] = result.status if result.records or result.findings else ("none")
    for area in ("spf", "dmarc", "dkim", "mx"):
        report.areas[area] = next(r.status for r in results if r.area == area)
    dmarc_ok = None if "policy" not in dmarc_result.data else dmarc_result.status != "failing"
    if dmarc_ok is not None and not policy.record:
        dmarc_ok = False
    report.checklist = checklist(report.routes, dmarc_ok, hosts, tls)
    if budget.exhausted is not None:
        report.findings.append(finding("check.incomplete", found=str(budget.exhausted)))
        report.areas["check"] = "unknown"
    report.verdict = status_of(report.findings)
    report.duration = time.monotonic() - start
    return report


def save_report(sender_domain: SenderDomain, report: DomainReport) -> None:
    """Store a report on its SenderDomain, touching only the check's fields, and
    on the app's DKIM keys whether each is published as it should be."""
    from ..models import DkimKey

    data = report.to_json()
    for key in report.dkim_keys:
        if key.get("app_key"):
            selector, _, domain = str(key["name"]).partition("._domainkey.")
            DkimKey.objects.filter(domain__domain=domain, selector=selector).update(
                dns_status=key["problem"] or "published", dns_checked_at=report.checked_at
            )
    sender_domain.verdict = report.verdict
    sender_domain.checked_at = report.checked_at
    sender_domain.check_duration = timedelta(seconds=report.duration)
    sender_domain.records = data["records"]
    sender_domain.findings = data["findings"]
    sender_domain.route_results = data["routes"]
    sender_domain.areas = data["areas"]
    sender_domain.checklist = data["checklist"]
    sender_domain.save(
        update_fields=[
            "verdict",
            "checked_at",
            "check_duration",
            "records",
            "findings",
            "route_results",
            "areas",
            "checklist",
        ]
    )


def check_sender_domain(
    sender_domain: SenderDomain, resolver: Resolver | None = None
) -> DomainReport:
    """Check a SenderDomain now and save the result."""
    report = check_domain(
        sender_domain.domain, selectors=sender_domain.selectors, resolver=resolver
    )
    save_report(sender_domain, report)
    return report
