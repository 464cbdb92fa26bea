"""The SPF record of a sending domain, read the way a reviewer would.

:func:`spf.check_host` answers for one IP; this module looks at the record as a
whole: syntax, duplicates, the ``all`` term, and the worst case of the RFC 7208
limits (10 lookups, 2 void lookups, 10 MX names) over every branch of nested
includes. A receiver stops at the first match, so a record over the limit can
pass for one sender and fail for the next; counting every branch finds that
before they do. The walk itself stops where the first limit is crossed: the
zones it reads are the sender's, and may be built to make it run forever.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ..validators import IPNetwork
from .findings import CheckResult
from .resolver import DNSMissing, DNSUnavailable, Resolver
from .spf import (
    LOOKUP_TERMS,
    MAX_LOOKUPS,
    MAX_NAMES,
    MAX_VOID,
    SPFRecord,
    Term,
    parse,
    select_records,
)


@dataclass
class LookupCount:
    """Lookups of one record and everything it includes, up to the first limit crossed."""

    total: int = 0
    void: int = 0
    breakdown: list[str] = field(default_factory=list)  # "include:x (+n)" lines
    problems: list[tuple[str, str]] = field(default_factory=list)  # (code, found)
    stopped: str = ""  # the finding code of the limit that ended the walk
    unavailable: str = ""  # the lookup that could not be made, when one ended the walk


@dataclass
class _Frame:
    """One record being walked: its lookup terms and where the walk is in them."""

    domain: str
    terms: list[tuple[str, str]]  # (mechanism, value) of each lookup term, redirect last
    label: str = ""  # "include:x" / "redirect:x"; "" for the top record
    before: int = 0  # count.total after the include itself was counted
    index: int = 0


def _lookup_terms(record: SPFRecord) -> list[tuple[str, str]]:
    terms = [(t.mechanism, t.value) for t in record.terms if t.mechanism in LOOKUP_TERMS]
    if record.redirect and record.all_term is None:
        terms.append(("redirect", record.redirect))
    return terms


def _spf_of(domain: str, resolver: Resolver) -> list[str]:
    try:
        return select_records(resolver.txt(domain))
    except DNSMissing:
        return []


def count_lookups(
    record: SPFRecord, domain: str, resolver: Resolver, count: LookupCount | None = None
) -> LookupCount:
    """Count every lookup term through nested includes, as receivers count them.

    The walk is iterative and stops where a receiver would return permerror:
    the 11th DNS-querying term, the 3rd void lookup, an mx term with more than
    10 names. Includes already on the path are loops and are not followed, so
    the work is bounded whatever the zones say. A lookup that cannot be made
    ends the walk too (``unavailable``); what was found until then is kept.
    """
    count = count or LookupCount()
    frames = [_Frame(domain, _lookup_terms(record), before=count.total)]
    while frames:
        frame = frames[-1]
        if frame.index == len(frame.terms):
            _close(frames.pop(), count)
            continue
        mechanism, value = frame.terms[frame.index]
        frame.index += 1
        try:
            child = _step(mechanism, value, frame, frames, resolver, count)
        except DNSUnavailable as exc:
            count.unavailable, child = str(exc), None
        if count.stopped or count.unavailable:
            while frames:
                _close(frames.pop(), count)
        elif child is not None:
            frames.append(child)
    return count


def _close(frame: _Frame, count: LookupCount) -> None:
    if frame.label:
        count.breakdown.append(f"{frame.label} (+{count.total - frame.before + 1})")


def _stop(count: LookupCount, code: str, found: str) -> None:
    count.problems.append((code, found))
    count.stopped = code


def _step(
    mechanism: str,
    value: str,
    frame: _Frame,
    frames: list[_Frame],
    resolver: Resolver,
    count: LookupCount,
) -> _Frame | None:
    """Count one lookup term; the frame of the record it leads to, if any."""
    count.total += 1
    term = f"{mechanism}{'=' if mechanism == 'redirect' else ':'}{value}" if value else mechanism
    where = f"{term} in the SPF record of {frame.domain}"
    if count.total > MAX_LOOKUPS:
        found = f"{count.total} lookups: the limit of {MAX_LOOKUPS} is crossed by {where}"
        _stop(count, "spf.too_many_lookups", found)
        return None
    target = (value or frame.domain).rstrip(".").lower()
    if "%" in target:
        return None  # macros depend on the message; counted, not followed
    if mechanism in ("include", "redirect"):
        return _follow(mechanism, target, where, frames, resolver, count)
    try:
        if mechanism == "mx":
            names = resolver.mx(target)
            if len(names) > MAX_NAMES:
                found = f"{len(names)} MX names: the limit of {MAX_NAMES} is crossed by {where}"
                _stop(count, "spf.too_many_names", found)
        else:
            resolver.addresses(target, ipv6=False if mechanism == "exists" else None)
    except DNSMissing:
        _void(count, where)
        count.breakdown.append(f"{term} (void)")
    return None


def _void(count: LookupCount, where: str) -> None:
    count.void += 1
    if count.void > MAX_VOID:
        found = f"{count.void} void lookups: the limit of {MAX_VOID} is crossed by {where}"
        _stop(count, "spf.too_many_void_lookups", found)


def _follow(
    mechanism: str,
    target: str,
    where: str,
    frames: list[_Frame],
    resolver: Resolver,
    count: LookupCount,
) -> _Frame | None:
    path = [f.domain for f in frames]
    if target in path:
        count.problems.append(("spf.loop", " -> ".join([*path, target])))
        return None
    try:
        records = select_records(resolver.txt(target))
    except DNSMissing:
        records = []
        _void(count, where)
    if not records:
        count.problems.append(("spf.include_not_found", f"{mechanism}:{target}"))
        return None
    # An included record that is itself a permerror makes the whole record one.
    if len(records) > 1:
        count.problems.append(("spf.include_error", f"{where}: {len(records)} SPF records"))
        return None
    child = parse(records[0])
    if child.errors:
        count.problems.append(("spf.include_error", f"{where}: {child.errors[0]}"))
        return None
    return _Frame(target, _lookup_terms(child), f"{mechanism}:{target}", count.total)


def networks_of(domain: str, resolver: Resolver) -> list[IPNetwork]:
    """The networks an SPF record authorizes (ip4, ip6, a, mx; through includes).

    Used to learn a relay's sending IPs from its SPF include domain. Bounded as
    a receiver is: at most 10 DNS-querying terms, each record read once.
    """
    nets: list[IPNetwork] = []
    seen: set[str] = set()
    lookups = 0
    stack: list[tuple[str, list[Term]]] = []

    def enter(name: str) -> None:
        name = name.rstrip(".").lower()
        if name in seen:
            return
        seen.add(name)
        records = _spf_of(name, resolver)
        if records:
            record = parse(records[0])
            terms = [t for t in record.terms if t.qualifier == "+" and "%" not in t.value]
            if record.redirect and record.all_term is None and "%" not in record.redirect:
                terms.append(Term(f"redirect={record.redirect}", "+", "include", record.redirect))
            stack.append((name, terms[::-1]))

    enter(domain)
    while stack:
        name, terms = stack[-1]
        if not terms:
            stack.pop()
            continue
        term = terms.pop()
        if term.mechanism in ("ip4", "ip6"):
            nets.append(ipaddress.ip_network(term.value))
            continue
        if term.mechanism not in LOOKUP_TERMS:
            continue
        lookups += 1
        if lookups > MAX_LOOKUPS:
            break
        if term.mechanism == "include":
            enter(term.value)
        elif term.mechanism in ("a", "mx"):
            target = term.value or name
            try:
                if term.mechanism == "mx":
                    hosts = [h for _, h in resolver.mx(target)][:MAX_NAMES]
                else:
                    hosts = [target]
                for host in hosts:
                    nets += [ipaddress.ip_network(ip) for ip in resolver.addresses(host)]
            except DNSMissing:
                continue
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
    count = count_lookups(record, domain, resolver)
    result.data["lookups"] = count
    for code, found in count.problems:
        if code == "spf.too_many_lookups" and count.breakdown:
            found = f"{found} ({', '.join(count.breakdown)})"
        result.add(code, found=found, expected=_EXPECTED.get(code, "an existing SPF record"))
    if count.unavailable:
        result.add("spf.unavailable", found=f"while counting lookups: {count.unavailable}")
    return result


_EXPECTED = {
    "spf.too_many_lookups": f"at most {MAX_LOOKUPS}",
    "spf.too_many_void_lookups": f"at most {MAX_VOID}",
    "spf.too_many_names": f"at most {MAX_NAMES} MX names",
    "spf.include_error": "a valid SPF record",
    "spf.loop": "no include or redirect back to an earlier record",
}


def lookups_added_by_include(include: str, resolver: Resolver) -> int | None:
    """How many lookups ``include:<include>`` would add to a record (itself included).

    None when that cannot be told (a lookup could not be made).
    """
    try:
        records = _spf_of(include, resolver)
    except DNSUnavailable:
        return None
    if not records:
        return 1
    count = count_lookups(parse(records[0]), include, resolver)
    return None if count.unavailable else 1 + count.total
