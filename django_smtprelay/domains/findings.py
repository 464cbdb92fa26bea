"""Findings: one problem or piece of advice about a sending domain, and their catalogue.

Codes are stable (the admin, the JSON output and monitoring rely on them) and
each is documented in docs/domains.md. The catalogue holds what does not change
from one domain to the next: area, severity, whether the problem blocks
delivery, and a one-line fix in plain words.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

ERROR, WARNING, INFO, UNKNOWN = "error", "warning", "info", "unknown"

# Overall verdicts, shared with SenderDomain.Verdict.
OK, VERDICT_WARNING, FAILING, VERDICT_UNKNOWN = "ok", "warning", "failing", "unknown"


@dataclass(frozen=True)
class Spec:
    area: str
    severity: str
    blocking: bool
    title: str
    hint: str


def _s(severity: str, blocking: bool, title: str, hint: str) -> tuple:
    return severity, blocking, title, hint


_CATALOGUE: dict[str, tuple] = {
    # SPF (RFC 7208)
    "spf.missing": _s(ERROR, True, "No SPF record.", 'Publish a TXT record "{expected}".'),
    "spf.multiple": _s(
        ERROR,
        True,
        "More than one SPF record (receivers return permerror).",
        "Merge them into one TXT record starting with v=spf1.",
    ),
    "spf.syntax": _s(
        ERROR,
        True,
        "The SPF record has a syntax error (permerror).",
        "Fix the term shown; mechanisms are all, include, a, mx, ptr, ip4, ip6, exists.",
    ),
    "spf.too_many_lookups": _s(
        ERROR,
        True,
        "SPF needs more than 10 DNS lookups (permerror).",
        "Remove unused includes, or replace a, mx and nested includes with ip4/ip6 ranges.",
    ),
    "spf.too_many_void_lookups": _s(
        ERROR,
        True,
        "More than 2 SPF lookups find nothing (permerror).",
        "Remove the terms that point at names without records.",
    ),
    "spf.too_many_names": _s(
        ERROR,
        True,
        "An mx term names more than 10 mail hosts (permerror).",
        "Point the mx term at a domain with at most 10 MX hosts, or use ip4/ip6 ranges.",
    ),
    "spf.include_error": _s(
        ERROR,
        True,
        "An included or redirected SPF record is itself an error (permerror).",
        "Remove the include, or have its owner fix the record shown.",
    ),
    "spf.include_not_found": _s(
        ERROR,
        True,
        "An include or redirect points at a domain without an SPF record.",
        "Correct the domain name or remove the term.",
    ),
    "spf.loop": _s(
        ERROR,
        True,
        "SPF includes or redirects loop back on themselves.",
        "Remove the include or redirect that points back to an earlier record.",
    ),
    "spf.plus_all": _s(
        ERROR,
        False,
        "+all lets any host on the internet send as this domain.",
        "End the record with -all (or ~all while testing).",
    ),
    "spf.neutral_all": _s(
        WARNING,
        False,
        "?all gives unlisted hosts a neutral result: no protection.",
        "End the record with -all (or ~all) once every sender is listed.",
    ),
    "spf.no_all": _s(
        WARNING,
        False,
        "The record has no all term and no redirect: neutral by default.",
        "Add -all (or ~all) at the end of the record.",
    ),
    "spf.ptr_used": _s(
        WARNING,
        False,
        "The ptr mechanism is slow, unreliable and discouraged (RFC 7208 5.5).",
        "Replace ptr with ip4/ip6 ranges or a.",
    ),
    "spf.route_not_authorized": _s(
        ERROR,
        True,
        "A route's sending hosts are not authorized by SPF.",
        'Add "{expected}" to the SPF record of {domain}.',
    ),
    "spf.route_error": _s(
        ERROR,
        True,
        "SPF evaluation for a route ends in a permanent error at the receiver.",
        "Fix the SPF findings above; receivers treat errors as not authorized.",
    ),
    "spf.route_unavailable": _s(
        UNKNOWN,
        False,
        "SPF for a route could not be evaluated (DNS timeout or server failure).",
        "Check again later; receivers defer or treat such mail as unauthenticated.",
    ),
    "spf.route_hosts_unknown": _s(
        INFO,
        False,
        "A route's sending hosts are unknown, so SPF cannot be evaluated for it.",
        "Fill in the route's sending IPs or its relay's SPF include.",
    ),
    "spf.include_would_exceed_limit": _s(
        WARNING,
        False,
        "Adding the relay's include would push SPF past 10 DNS lookups.",
        "Flatten other includes to ip4/ip6 first, or use the relay's own return-path domain.",
    ),
    "spf.unavailable": _s(
        UNKNOWN,
        False,
        "SPF could not be checked (DNS timeout or server failure).",
        "Nothing to change in the zone yet; check again later or check the nameservers.",
    ),
    # The check itself
    "check.incomplete": _s(
        UNKNOWN,
        False,
        "The check stopped early: its DNS query or time budget ran out.",
        "Findings shown are those made before it stopped. Check the zone for very "
        "wide or slow records; raise DOMAIN_CHECK_MAX_QUERIES or DOMAIN_CHECK_TIMEOUT "
        "if they are legitimate.",
    ),
    "check.error": _s(
        UNKNOWN,
        False,
        "The check failed with an unexpected error; the other domains were checked.",
        "The error is logged with its traceback; report it with the domain's records.",
    ),
    # DMARC (RFC 7489; DMARCbis tree walk)
    "dmarc.missing": _s(
        ERROR,
        True,
        "No DMARC record; large mailbox providers reject bulk mail without one.",
        'Publish a TXT record at _dmarc.{org_domain}: "v=DMARC1; p=none; rua=mailto:…".',
    ),
    "dmarc.multiple": _s(
        ERROR,
        True,
        "More than one DMARC record: receivers apply none of them.",
        "Keep exactly one TXT record starting with v=DMARC1 at the name shown.",
    ),
    "dmarc.malformed": _s(
        ERROR,
        True,
        "The DMARC record cannot be parsed.",
        'Start the record with "v=DMARC1;" and write tags as name=value separated by ";".',
    ),
    "dmarc.invalid_policy": _s(
        ERROR,
        True,
        "The DMARC policy tag p is missing or invalid.",
        "Set p=none, p=quarantine or p=reject.",
    ),
    "dmarc.invalid_tag": _s(
        WARNING,
        False,
        "A DMARC tag has an invalid value and is ignored by receivers.",
        "Correct the tag shown to one of the expected values.",
    ),
    "dmarc.policy_none": _s(
        INFO,
        False,
        "The DMARC policy is p=none: reports only, no protection.",
        "Once reports show all mail aligned, move to p=quarantine, then p=reject.",
    ),
    "dmarc.pct_partial": _s(
        WARNING,
        False,
        "pct below 100 applies the policy to part of the mail only.",
        "Raise pct to 100 (or remove it) once reports are clean.",
    ),
    "dmarc.testing": _s(
        INFO,
        False,
        "t=y: receivers apply the next-lower policy (testing mode).",
        "Remove t=y when the policy is meant to apply.",
    ),
    "dmarc.no_reports": _s(
        INFO,
        False,
        "No rua address: you get no aggregate reports about your mail.",
        "Add rua=mailto:dmarc-reports@{org_domain} (or a report service's address).",
    ),
    "dmarc.report_not_authorized": _s(
        WARNING,
        False,
        "A report address in another domain has not authorized these reports.",
        'The other domain must publish "v=DMARC1" at {expected}.',
    ),
    "dmarc.inherited": _s(
        INFO,
        False,
        "The policy comes from the organizational domain's record.",
        "Publish _dmarc.{domain} if this domain needs a policy of its own.",
    ),
    "dmarc.route_fails": _s(
        ERROR,
        True,
        "Mail through a route passes neither SPF nor DKIM alignment: DMARC fails.",
        "{expected}",
    ),
    "dmarc.unavailable": _s(
        UNKNOWN,
        False,
        "DMARC could not be checked (DNS timeout or server failure).",
        "Nothing to change in the zone yet; check again later or check the nameservers.",
    ),
    # DKIM (RFC 6376, RFC 8301, RFC 8463)
    "dkim.no_selector": _s(
        INFO,
        False,
        "No DKIM selector is known for this domain, so keys cannot be checked.",
        "Set the routes' DKIM domain and selector, or list selectors on the domain.",
    ),
    "dkim.not_signing": _s(
        WARNING,
        False,
        "No route signs mail from this domain with an aligned DKIM key.",
        "Have the relay sign with d={domain} (or a subdomain), and publish its key.",
    ),
    "dkim.missing": _s(
        ERROR,
        True,
        "No DKIM key is published at the selector.",
        "Publish the relay's public key as a TXT record at {expected}.",
    ),
    "dkim.revoked": _s(
        ERROR,
        True,
        "The DKIM key at the selector is revoked (empty p=).",
        "Publish the current key, or stop signing with this selector.",
    ),
    "dkim.malformed": _s(
        ERROR,
        True,
        "The DKIM key record cannot be parsed.",
        'Publish "v=DKIM1; k=rsa; p=<base64 public key>" as one TXT record.',
    ),
    "dkim.key_too_short": _s(
        ERROR,
        True,
        "RSA keys under 1024 bits are not verified (RFC 8301).",
        "Generate a 2048-bit key, publish it under a new selector, and sign with it.",
    ),
    "dkim.key_weak": _s(
        WARNING,
        False,
        "RSA keys under 2048 bits are discouraged (RFC 8301).",
        "Rotate to a 2048-bit key under a new selector.",
    ),
    "dkim.key_mismatch": _s(
        ERROR,
        True,
        "The published key does not match the private key the route signs with.",
        "Publish the public half of the route's signing key at {expected}.",
    ),
    "dkim.unsigned": _s(
        WARNING,
        False,
        "Routes here sign, but the domain has no active DKIM key: its mail goes out unsigned.",
        "Generate a key on the domain's page, publish its TXT record, and activate it.",
    ),
    "dkim.key_unreadable": _s(
        ERROR,
        True,
        "A DKIM key of this domain cannot be opened: signing routes hold its mail back.",
        "Generate a new key and activate it (was the encryption key changed?): {found}",
    ),
    "dkim.testing": _s(
        INFO,
        False,
        "t=y: the key is in testing mode.",
        "Remove t=y once signatures verify.",
    ),
    "dkim.unavailable": _s(
        UNKNOWN,
        False,
        "DKIM could not be checked (DNS timeout or server failure).",
        "Nothing to change in the zone yet; check again later or check the nameservers.",
    ),
    # MX (RFC 5321, RFC 7505)
    "mx.missing": _s(
        WARNING,
        False,
        "No MX record: bounces and replies fall back to the A record.",
        "Publish MX records for the hosts that receive this domain's mail.",
    ),
    "mx.null": _s(
        ERROR,
        True,
        "Null MX: the domain says it accepts no mail; receivers may reject it.",
        "Remove the null MX and publish real MX records to send from this domain.",
    ),
    "mx.unavailable": _s(
        UNKNOWN,
        False,
        "MX could not be checked (DNS timeout or server failure).",
        "Nothing to change in the zone yet; check again later or check the nameservers.",
    ),
    # BIMI, MTA-STS, TLS-RPT
    "bimi.dmarc_not_enforcing": _s(
        WARNING,
        False,
        "BIMI logos are shown only with DMARC at quarantine or reject.",
        "Move DMARC to p=quarantine or p=reject with pct=100.",
    ),
    "bimi.malformed": _s(
        WARNING,
        False,
        "The BIMI record cannot be parsed.",
        'Publish "v=BIMI1; l=https://…/logo.svg" at default._bimi.{domain}.',
    ),
    "mta_sts.malformed": _s(
        INFO,
        False,
        "The MTA-STS record cannot be parsed.",
        'Publish "v=STSv1; id=<version>" at _mta-sts.{domain}.',
    ),
    "mta_sts.policy_unreachable": _s(
        WARNING,
        False,
        "The MTA-STS record announces a policy that cannot be fetched.",
        "Serve the policy at https://mta-sts.{domain}/.well-known/mta-sts.txt (a valid "
        "certificate, HTTP 200, text/plain), or remove the _mta-sts record.",
    ),
    "mta_sts.policy_malformed": _s(
        WARNING,
        False,
        "The MTA-STS policy cannot be parsed.",
        'Serve "version: STSv1", "mode: enforce|testing|none", "max_age: <seconds>" and '
        'one "mx: <host>" line per MX host.',
    ),
    "mta_sts.mx_mismatch": _s(
        WARNING,
        False,
        "MX hosts of the domain are not named in its MTA-STS policy.",
        "Add the missing mx lines to the policy (and change the record's id), or fix the MX.",
    ),
    "tls_rpt.malformed": _s(
        INFO,
        False,
        "The TLS-RPT record cannot be parsed.",
        'Publish "v=TLSRPTv1; rua=mailto:…" at _smtp._tls.{domain}.',
    ),
    # Sending hosts and routes
    "host.ptr_missing": _s(
        WARNING,
        False,
        "A sending IP has no reverse DNS (PTR); large providers require it.",
        "Ask the relay's provider to set a PTR record for the IP.",
    ),
    "host.ptr_mismatch": _s(
        WARNING,
        False,
        "A sending IP's PTR name does not resolve back to the IP.",
        "Make the PTR name's A/AAAA record point to the sending IP.",
    ),
    "route.no_tls": _s(
        WARNING,
        False,
        "A route sends without TLS; providers expect TLS on every hop.",
        "Set the route's security to STARTTLS or implicit TLS.",
    ),
}

CATALOGUE: dict[str, Spec] = {
    code: Spec(code.split(".")[0], *values) for code, values in _CATALOGUE.items()
}


@dataclass
class Finding:
    """One problem or piece of advice, with what was found and what is expected."""

    code: str
    severity: str
    blocking: bool
    area: str
    title: str
    found: str = ""
    expected: str = ""
    hint: str = ""
    route: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class _Context(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def finding(
    code: str, *, found: str = "", expected: str = "", route: str = "", **context: str
) -> Finding:
    """Build a finding from the catalogue; ``context`` fills the hint's placeholders."""
    spec = CATALOGUE[code]
    values = _Context(found=found, expected=expected, route=route, **context)
    hint = spec.hint.format_map(values)
    return Finding(
        code=code,
        severity=spec.severity,
        blocking=spec.blocking,
        area=spec.area,
        title=spec.title,
        found=found,
        expected=expected,
        hint=hint,
        route=route,
    )


def status_of(findings: list[Finding]) -> str:
    """Worst-first: failing (a blocking error), unknown, warning (any error or warning), ok."""
    if any(f.blocking for f in findings):
        return FAILING
    if any(f.severity == UNKNOWN for f in findings):
        return VERDICT_UNKNOWN
    if any(f.severity in (ERROR, WARNING) for f in findings):
        return VERDICT_WARNING
    return OK


@dataclass
class CheckResult:
    """One area's result: the records found, its findings, and how long it took."""

    area: str
    records: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    duration: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return status_of(self.findings)

    def add(self, code: str, **kwargs: str) -> Finding:
        item = finding(code, **kwargs)
        self.findings.append(item)
        return item
