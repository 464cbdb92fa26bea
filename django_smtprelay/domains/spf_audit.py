"""The SPF record of a sending domain, read the way a reviewer would.

:func:`spf.check_host` answers for one IP; this module looks at the record as a
whole: syntax, duplicates, the ``all`` term, and the worst case of the RFC 7208
limits (10 lookups, 2 void lookups) over every branch of nested includes. A
receiver stops at the first match, so a record over the limit can pass for one
sender and fail for the next; counting every branch finds that before they do.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ..validators import IPNetwork
from .findings import CheckResult
from .resolver import DNSMissing, DNSUnavailable, Resolver
from .spf import LOOKUP_TERMS, MAX_LOOKUPS, MAX_VOID, SPFRecord, parse, select_records


@dataclass
class LookupCount:
    """Worst-case lookups of one record and everything it includes."""

    total: int = 0
    void: int = 0
    breakdown: list[str] = field(default_factory=list)  # "include:x (+n)" lines
    includes: list[str] = field(default_factory=list)  # every include/redirect target
    problems: list[tuple[str, str]] = field(default_factory=list)  # (code, found)


def _spf_of(domain: str, resolver: Resolver) -> list[str]:
    try:
        return select_records(resolver.txt(domain))
    except DNSMissing:
        return []


def count_lookups(
    record: SPFRecord, domain: str, resolver: Resolver, count: LookupCount | None = None
) -> LookupCount:
    """Count every lookup term through nested includes; raises DNSUnavailable."""
    count = count or LookupCount()
    stack = [domain]
    _walk(record, domain, resolver, count, stack)
    return count


def _walk(
    record: SPFRecord, domain: str, resolver: Resolver, count: LookupCount, stack: list[str]
) -> None:
    targets = [(t.mechanism, t.value, t) for t in record.terms if t.mechanism in LOOKUP_TERMS]
    if record.redirect and record.all_term is None:
        targets.append(("redirect", record.redirect, None))
    for mechanism, value, _term in targets:
        count.total += 1
        target = (value or domain).rstrip(".").lower()
        if "%" in target:
            continue  # macros depend on the message; counted, not followed
        if mechanism in ("include", "redirect"):
            count.includes.append(target)
            if target in stack:
                count.problems.append(("spf.loop", f"{' -> '.join([*stack, target])}"))
                continue
            child = _spf_of(target, resolver)
            if not child:
                count.void += 1
                count.problems.append(("spf.include_not_found", f"{mechanism}:{target}"))
                continue
            before = count.total
            stack.append(target)
            _walk(parse(child[0]), target, resolver, count, stack)
            stack.pop()
            count.breakdown.append(f"{mechanism}:{target} (+{count.total - before + 1})")
        elif mechanism in ("a", "mx", "exists"):
            try:
                if mechanism == "mx":
                    resolver.mx(target)
                else:
                    resolver.addresses(target, ipv6=False if mechanism == "exists" else None)
            except DNSMissing:
                count.void += 1
                count.breakdown.append(f"{mechanism}:{target} (void)")


def networks_of(domain: str, resolver: Resolver, depth: int = 0) -> list[IPNetwork]:
    """The networks an SPF record authorizes (ip4, ip6, a, mx; through includes).

    Used to learn a relay's sending IPs from its SPF include domain.
    """
    records = _spf_of(domain, resolver)
    if not records or depth > 5:
        return []
    record = parse(records[0])
    nets: list[IPNetwork] = []
    for term in record.terms:
        if term.qualifier != "+" or "%" in term.value:
            continue
        if term.mechanism in ("ip4", "ip6"):
            nets.append(ipaddress.ip_network(term.value))
        elif term.mechanism == "include":
            nets += networks_of(term.value, resolver, depth + 1)
        elif term.mechanism in ("a", "mx"):
            target = term.value or domain
            try:
                hosts = [h for _, h in resolver.mx(target)] if term.mechanism == "mx" else [target]
                for host in hosts:
                    nets += [ipaddress.ip_network(ip) for ip in resolver.addresses(host)]
            except DNSMissing:
                continue
    if record.redirect and record.all_term is None:
        nets += networks_of(record.redirect, resolver, depth + 1)
    return nets


def audit(domain: str, resolver: Resolver, suggested: str) -> CheckResult:
    """Record-level findings; ``data`` carries the parsed record and the lookup count."""
    result = CheckResult("spf")
    try:
        records = select_records(resolver.txt(domain))
    except DNSMissing:
        records = []
    except DNSUnavailable as exc:
        result.add("spf.unavailable", found=str(exc))
        return result
    result.records = records
    if not records:
        result.add("spf.missing", found="no v=spf1 TXT record", expected=suggested)
        return result
    if len(records) > 1:
        result.add("spf.multiple", found=" | ".join(records), expected="one v=spf1 record")
    record = parse(records[0])
    result.data["record"] = record
    for error in record.errors:
        result.add("spf.syntax", found=error, expected="a valid SPF term")
    if record.errors:
        return result
    all_term = record.all_term
    if all_term and all_term.qualifier == "+":
        result.add("spf.plus_all", found=all_term.text, expected="-all")
    elif all_term and all_term.qualifier == "?":
        result.add("spf.neutral_all", found=all_term.text, expected="-all")
    elif not all_term and not record.redirect:
        result.add("spf.no_all", found=records[0], expected=f"{records[0]} -all")
    for term in record.terms:
        if term.mechanism == "ptr":
            result.add("spf.ptr_used", found=term.text, expected="ip4:/ip6: ranges")
    try:
        count = count_lookups(record, domain, resolver)
    except DNSUnavailable as exc:
        result.add("spf.unavailable", found=f"while counting lookups: {exc}")
        return result
    result.data["lookups"] = count
    for code, found in count.problems:
        result.add(code, found=found, expected="an existing SPF record")
    if count.total > MAX_LOOKUPS:
        detail = ", ".join(count.breakdown)
        result.add(
            "spf.too_many_lookups",
            found=f"{count.total} lookups ({detail})",
            expected=f"at most {MAX_LOOKUPS}",
        )
    if count.void > MAX_VOID:
        result.add(
            "spf.too_many_void_lookups",
            found=f"{count.void} void lookups",
            expected=f"at most {MAX_VOID}",
        )
    return result


def lookups_added_by_include(include: str, resolver: Resolver) -> int:
    """How many lookups ``include:<include>`` would add to a record (itself included)."""
    records = _spf_of(include, resolver)
    if not records:
        return 1
    return 1 + count_lookups(parse(records[0]), include, resolver).total
