"""DMARC (RFC 7489) records, policy discovery and the organizational domain.

Both follow the DNS tree walk of DMARCbis (RFC 9989): instead of a public
suffix list, the organizational domain is found by walking up the name and
reading the records (and their ``psd`` tag) that are published there. That is
what receivers implementing DMARCbis do, and it needs nothing but DNS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .findings import CheckResult
from .resolver import DNSMissing, DNSUnavailable, Resolver

POLICIES = ("none", "quarantine", "reject")
_TAG = re.compile(r"^([a-z]+)\s*=\s*(.*)$", re.IGNORECASE | re.DOTALL)
# A report destination (RFC 7489 6.2 dmarc-uri): one mailto address, an optional size
# limit. An "@" in the local part must be percent-encoded (RFC 6068), so one "@" only.
_MAILTO = re.compile(r"^\s*mailto:[^@\s]+@[^@\s!]+(![0-9]+[kmgt]?)?\s*$", re.IGNORECASE)


@dataclass
class DMARCRecord:
    """A parsed DMARC record: its tags, and the problems found while reading them."""

    text: str
    tags: dict[str, str] = field(default_factory=dict)
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # (code, found, expected)
    malformed: bool = False

    @property
    def policy(self) -> str:
        return self.tags.get("p", "").lower()

    def alignment(self, tag: str) -> str:
        """``"s"`` (strict) or ``"r"`` (relaxed, the default) for adkim or aspf."""
        return "s" if self.tags.get(tag, "r").lower() == "s" else "r"

    @property
    def pct(self) -> int:
        try:
            return int(self.tags.get("pct", "100"))
        except ValueError:
            return 100

    def report_uris(self, tag: str) -> list[str]:
        return [u.strip() for u in self.tags.get(tag, "").split(",") if u.strip()]


def is_dmarc(text: str) -> bool:
    """True for a TXT string that claims to be DMARC; a broken one is then reported malformed."""
    return re.match(r"^\s*v\s*=\s*DMARC1", text, re.IGNORECASE) is not None


def parse(text: str) -> DMARCRecord:
    """Parse and validate every tag the RFCs define; unknown tags are ignored, as receivers do."""
    record = DMARCRecord(text)
    parts = [p.strip() for p in text.split(";")]
    for index, part in enumerate(p for p in parts if p):
        match = _TAG.match(part)
        if not match:
            record.malformed = True
            record.errors.append(("dmarc.malformed", part, "name=value"))
            continue
        name, value = match.group(1).lower(), match.group(2).strip()
        if index == 0 and (name != "v" or value != "DMARC1"):
            record.malformed = True
            record.errors.append(("dmarc.malformed", part, "v=DMARC1 first"))
        record.tags.setdefault(name, value)
    if record.malformed:
        return record
    for name, value in record.tags.items():
        expected = _check_tag(name, value)
        if expected and name == "p":
            record.errors.append(("dmarc.invalid_policy", f"p={value}", expected))
        elif expected:
            record.errors.append(("dmarc.invalid_tag", f"{name}={value}", expected))
    if "p" not in record.tags:
        record.errors.append(("dmarc.invalid_policy", "no p tag", "p=none|quarantine|reject"))
    return record


def _check_tag(name: str, value: str) -> str:
    """'' if the value is valid, else a description of what is expected."""
    low = value.lower()
    if name in ("p", "sp", "np"):
        return "" if low in POLICIES else f"{name}=none|quarantine|reject"
    if name in ("adkim", "aspf"):
        return "" if low in ("r", "s") else f"{name}=r|s"
    if name == "pct":
        return "" if value.isdigit() and 0 <= int(value) <= 100 else "pct=0..100"
    if name in ("t", "psd"):
        return "" if low in ("y", "n", "u") else f"{name}=y|n"
    if name == "fo":
        return (
            "" if all(o.strip() in ("0", "1", "d", "s") for o in low.split(":")) else "fo=0|1|d|s"
        )
    if name == "ri":
        return "" if value.isdigit() else "ri=<seconds>"
    if name in ("rua", "ruf"):
        bad = [u for u in value.split(",") if not _MAILTO.match(u)]
        return f"{name}=mailto:address[,mailto:address]" if bad else ""
    return ""


def walk_targets(domain: str) -> list[str]:
    """The names the DMARCbis tree walk queries, most specific first, TLD last."""
    labels = domain.rstrip(".").lower().split(".")
    targets = [".".join(labels)]
    while len(labels) > 1:
        labels = labels[-4:] if len(labels) >= 5 else labels[1:]
        targets.append(".".join(labels))
    return targets


def lookup(domain: str, resolver: Resolver) -> list[str]:
    """DMARC records at ``_dmarc.<domain>``; raises DNSUnavailable, never DNSMissing."""
    try:
        return [t for t in resolver.txt(f"_dmarc.{domain}") if is_dmarc(t)]
    except DNSMissing:
        return []


@dataclass
class Policy:
    """The record that applies to a domain and where it was found."""

    domain: str  # the From domain
    found_at: str = ""  # the domain whose _dmarc record applies ('' when none)
    records: list[str] = field(default_factory=list)  # what was published at found_at
    record: DMARCRecord | None = None

    @property
    def inherited(self) -> bool:
        return bool(self.found_at) and self.found_at != self.domain

    def effective_policy(self, exists: bool = True) -> str:
        """p for the domain itself; sp (or np for a non-existent one) for a subdomain."""
        if self.record is None:
            return ""
        tags = self.record.tags
        if not self.inherited:
            return self.record.policy
        if not exists and tags.get("np", "").lower() in POLICIES:
            return tags["np"].lower()
        sp = tags.get("sp", "").lower()
        return sp if sp in POLICIES else self.record.policy


def discover(domain: str, resolver: Resolver) -> Policy:
    """Policy discovery: the first name of the tree walk with exactly one DMARC record."""
    policy = Policy(domain)
    for target in walk_targets(domain):
        records = lookup(target, resolver)
        if target == domain and len(records) > 1:
            policy.found_at, policy.records = target, records
            return policy
        if len(records) == 1:
            policy.found_at, policy.records = target, records
            policy.record = parse(records[0])
            return policy
    return policy


def organizational_domain(domain: str, resolver: Resolver) -> str:
    """The organizational domain by the DMARCbis tree walk (psd=n / psd=y / fewest labels)."""
    domain = domain.rstrip(".").lower()
    shortest = ""
    for target in walk_targets(domain):
        records = lookup(target, resolver)
        if len(records) == 1:
            psd = parse(records[0]).tags.get("psd", "").lower()
            if psd == "n":
                return target
            if psd == "y":
                # The organization is the name one label below the public suffix domain.
                keep = min(len(target.split(".")) + 1, len(domain.split(".")))
                return ".".join(domain.split(".")[-keep:])
            shortest = target
    return shortest or domain


def aligned(identifier: str, from_domain: str, mode: str, resolver: Resolver) -> bool:
    """Identifier alignment: equal names (strict) or the same organizational domain."""
    a, b = identifier.rstrip(".").lower(), from_domain.rstrip(".").lower()
    if not a or not b:
        return False
    if a == b:
        return True
    if mode == "s":
        return False
    return organizational_domain(a, resolver) == organizational_domain(b, resolver)


def report_authorization_name(domain: str, uri: str) -> str:
    """Where a report destination outside the domain must authorize it (RFC 7489 7.1)."""
    target = uri.split("!")[0].partition("@")[2].strip().rstrip(".").lower()
    return f"{domain}._report._dmarc.{target}"


def _exists(domain: str, resolver: Resolver) -> bool:
    """False only for NXDOMAIN: np= applies to names that do not exist at all."""
    try:
        resolver.query(domain, "SOA")
    except DNSMissing as exc:
        return not exc.nxdomain
    return True


def audit(domain: str, resolver: Resolver) -> CheckResult:
    """Record, tags, report destinations; ``data`` holds the Policy and the org domain."""
    result = CheckResult("dmarc")
    try:
        policy = discover(domain, resolver)
        org = organizational_domain(domain, resolver)
        exists = _exists(domain, resolver)
    except DNSUnavailable as exc:
        result.add("dmarc.unavailable", found=str(exc))
        return result
    result.data.update(policy=policy, org_domain=org)
    result.records = [f"_dmarc.{policy.found_at}: {r}" for r in policy.records]
    suggestion = f"_dmarc.{org}: v=DMARC1; p=none; rua=mailto:dmarc-reports@{org}"
    if not policy.found_at:
        result.add("dmarc.missing", found="no v=DMARC1 record", expected=suggestion, org_domain=org)
        return result
    if len(policy.records) > 1:
        result.add("dmarc.multiple", found=" | ".join(policy.records), expected="one record")
        return result
    record = policy.record
    assert record is not None
    for code, found, expected in record.errors:
        result.add(code, found=found, expected=expected)
    if record.malformed or any(code == "dmarc.invalid_policy" for code, *_ in record.errors):
        return result
    effective = policy.effective_policy(exists)
    result.data["effective_policy"] = effective
    result.data["enforcing"] = effective in ("quarantine", "reject") and record.pct == 100
    if policy.inherited:
        tag = "sp" if exists else "np"
        result.add(
            "dmarc.inherited",
            found=f"_dmarc.{policy.found_at} ({tag} applies: {effective})",
            domain=domain,
        )
    if effective == "none":
        result.add("dmarc.policy_none", found="p=none", expected="p=quarantine or p=reject")
    if record.pct < 100 and "pct" not in {f.found.split("=")[0] for f in result.findings}:
        result.add("dmarc.pct_partial", found=f"pct={record.pct}", expected="pct=100")
    if record.tags.get("t", "").lower() == "y":
        result.add("dmarc.testing", found="t=y", expected="t=n or no t tag")
    if not record.report_uris("rua"):
        result.add("dmarc.no_reports", found="no rua", expected="rua=mailto:…", org_domain=org)
    try:
        _check_destinations(policy.found_at, record, resolver, result)
    except DNSUnavailable as exc:
        result.add("dmarc.unavailable", found=f"while checking report destinations: {exc}")
    return result


def _check_destinations(
    domain: str, record: DMARCRecord, resolver: Resolver, result: CheckResult
) -> None:
    """External report addresses must be authorized by their domain (RFC 7489 7.1)."""
    own = organizational_domain(domain, resolver)
    for tag in ("rua", "ruf"):
        for uri in record.report_uris(tag):
            if not _MAILTO.match(uri):
                continue  # reported as dmarc.invalid_tag: no address to authorize
            target = uri.split("!")[0].partition("@")[2].strip().lower()
            if not target or organizational_domain(target, resolver) == own:
                continue
            name = report_authorization_name(domain, uri)
            try:
                ok = any(is_dmarc(t) for t in resolver.txt(name))
            except DNSMissing:
                ok = False
            if not ok:
                result.add(
                    "dmarc.report_not_authorized",
                    found=f"{tag}={uri}",
                    expected=name,
                )
