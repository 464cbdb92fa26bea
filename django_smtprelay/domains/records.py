"""MX (and null MX), BIMI and TLS-RPT records of a sending domain (MTA-STS: mta_sts.py).

For a domain that only sends, MTA-STS and TLS-RPT protect mail coming *in*:
they are shown for information. MX matters more than it seems: bounces and
replies go there, and a null MX (RFC 7505) tells receivers the domain sends
no mail either.
"""

from __future__ import annotations

from .findings import CheckResult
from .resolver import DNSMissing, DNSUnavailable, Resolver


def _tags(text: str) -> dict[str, str]:
    tags = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags[name.strip().lower()] = value.strip()
    return tags


def check_mx(domain: str, resolver: Resolver) -> CheckResult:
    result = CheckResult("mx")
    try:
        mx = resolver.mx(domain)
    except DNSMissing:
        result.add("mx.missing", found="no MX record", expected="MX records", domain=domain)
        return result
    except DNSUnavailable as exc:
        result.add("mx.unavailable", found=str(exc))
        return result
    result.records = [f"{pref} {host}" for pref, host in mx]
    if any(host == "." for _, host in mx):
        result.add("mx.null", found=f"MX {result.records[0]}", expected="MX <pref> <host>")
    return result


def single_record(
    result: CheckResult, name: str, prefix: str, resolver: Resolver
) -> dict[str, str] | None:
    """Tags of the one record at ``name`` starting with ``prefix``; None when there is none."""
    try:
        texts = [t for t in resolver.txt(name) if t.lower().startswith(prefix.lower())]
    except DNSMissing:
        return None
    result.records = texts
    if len(texts) != 1:
        return None if not texts else {}
    return _tags(texts[0])


def check_bimi(domain: str, resolver: Resolver, dmarc_enforcing: bool | None) -> CheckResult:
    """``dmarc_enforcing`` is None when DMARC could not be checked."""
    result = CheckResult("bimi")
    try:
        tags = single_record(result, f"default._bimi.{domain}", "v=BIMI1", resolver)
    except DNSUnavailable:
        return result  # informational: no finding for a lookup we could not make
    if tags is None:
        return result
    if not tags or not (tags.get("l") or tags.get("a")):
        result.add("bimi.malformed", found="; ".join(result.records), domain=domain)
    if dmarc_enforcing is False:
        result.add(
            "bimi.dmarc_not_enforcing",
            found="DMARC p=none or pct<100",
            expected="p=quarantine or p=reject, pct=100",
        )
    return result


def check_tls_rpt(domain: str, resolver: Resolver) -> CheckResult:
    result = CheckResult("tls_rpt")
    try:
        tags = single_record(result, f"_smtp._tls.{domain}", "v=TLSRPTv1", resolver)
    except DNSUnavailable:
        return result
    if tags is not None and not tags.get("rua", "").startswith(("mailto:", "https:")):
        result.add("tls_rpt.malformed", found="; ".join(result.records), domain=domain)
    return result
