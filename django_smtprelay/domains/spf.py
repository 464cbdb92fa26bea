"""SPF (RFC 7208): the record parser, macro expansion and a real check_host().

The evaluator answers the question a receiver asks: is this IP allowed to send
mail with this envelope domain? It follows the RFC's processing limits (10
lookups, 2 void lookups, 10 MX or PTR names), so a record that works in a
hand-written test but fails at a receiver fails here too.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import quote

from .resolver import DNSMissing, DNSUnavailable, Resolver

MECHANISMS = ("all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists")
LOOKUP_TERMS = ("include", "a", "mx", "ptr", "exists", "redirect")
QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
MAX_LOOKUPS, MAX_VOID, MAX_NAMES = 10, 2, 10

_MODIFIER = re.compile(r"^([a-z][a-z0-9_.-]*)=(.*)$", re.IGNORECASE)
_MECH = re.compile(
    r"^([+?~-]?)(all|include|a|mx|ptr|ip4|ip6|exists)(?::([^/]+))?"
    r"(?:/(\d+))?(?://(\d+))?$",
    re.IGNORECASE,
)


@dataclass
class Term:
    """One mechanism: qualifier, name, value (domain-spec or address) and CIDR lengths."""

    text: str
    qualifier: str
    mechanism: str
    value: str = ""
    cidr4: int | None = None
    cidr6: int | None = None

    @property
    def result(self) -> str:
        return QUALIFIERS[self.qualifier]


@dataclass
class SPFRecord:
    text: str
    terms: list[Term] = field(default_factory=list)
    redirect: str = ""
    exp: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def all_term(self) -> Term | None:
        return next((t for t in self.terms if t.mechanism == "all"), None)


def is_spf(text: str) -> bool:
    """True for a TXT string that is an SPF record (``v=spf1`` then a space or the end)."""
    low = text.strip().lower()
    return low == "v=spf1" or low.startswith("v=spf1 ")


def select_records(txts: list[str]) -> list[str]:
    return [t.strip() for t in txts if is_spf(t)]


def parse(text: str) -> SPFRecord:
    """Parse an SPF record; problems go to ``errors`` rather than raising."""
    record = SPFRecord(text)
    words = text.split()
    if not words or words[0].lower() != "v=spf1":
        record.errors.append(f"{text!r} does not start with v=spf1")
        return record
    for word in words[1:]:
        mech = _MECH.match(word)
        modifier = _MODIFIER.match(word) if not mech else None
        if modifier:
            name, value = modifier.group(1).lower(), modifier.group(2)
            # Every modifier's value is a macro-string, known or not (RFC 7208 section 6).
            error = macro_error(value)
            if error:
                record.errors.append(f"{word!r}: {error}")
                continue
            if name in ("redirect", "exp"):
                if getattr(record, name):
                    record.errors.append(f"{name}= appears twice")
                if not value:
                    record.errors.append(f"{word!r} has no domain")
                setattr(record, name, value)
            continue
        if not mech:
            record.errors.append(f"unknown term {word!r}")
            continue
        qualifier, name, value, c4, c6 = mech.groups()
        term = Term(word, qualifier or "+", name.lower(), value or "")
        term.cidr4 = int(c4) if c4 else None
        term.cidr6 = int(c6) if c6 else None
        error = _validate(term)
        if error:
            record.errors.append(f"{word!r}: {error}")
        else:
            record.terms.append(term)
    return record


def _validate(term: Term) -> str:
    m = term.mechanism
    if m in ("include", "exists") and not term.value:
        return f"{m} needs a domain ({m}:example.com)"
    if m in ("include", "exists", "a", "mx", "ptr") and term.value:
        error = macro_error(term.value)
        if error:
            return error
    if m == "all" and (term.value or term.cidr4 is not None or term.cidr6 is not None):
        return "all takes no value"
    if m in ("ip4", "ip6"):
        cidr = term.cidr4 if term.cidr4 is not None else term.cidr6
        if term.cidr6 is not None and term.cidr4 is not None:
            return "one prefix length only"
        try:
            net = ipaddress.ip_network(
                f"{term.value}/{cidr}" if cidr is not None else term.value, strict=False
            )
        except ValueError:
            return f"{term.value!r} is not an {m} address"
        if net.version != int(m[-1]):
            return f"{term.value!r} is not an {m} address"
        term.value = str(net)
        term.cidr4 = term.cidr6 = None
    if (term.cidr4 or 0) > 32 or (term.cidr6 or 0) > 128:
        return "prefix length out of range"
    return ""


_ESCAPES = {"%%": "%", "%_": " ", "%-": "%20"}
# A macro (%{letter digits r delimiters}) or an escape, matched where a "%" is.
_MACRO = re.compile(r"%(?:\{([a-zA-Z])(\d*)(r?)([.\-+,/_=]*)\}|[%_-])")
# c, r and t are for explanation strings (the TXT record exp= names), never a record.
MACRO_LETTERS = frozenset("slodiphv")
MAX_DOMAIN = 253


def macro_error(spec: str) -> str:
    """Why ``spec`` is not a valid macro-string of a record (RFC 7208 section 7.1), or "".

    Receivers treat such a record as a syntax error (permerror), not as text.
    """
    at = spec.find("%")
    while at != -1:
        m = _MACRO.match(spec, at)
        if not m:
            found = spec[at : at + 8]
            return (
                f"malformed macro {found!r} in {spec!r}: a '%' starts a macro (%{{d}}) "
                "or an escape (%%, %_, %-)"
            )
        letter, digits = m.group(1), m.group(2)
        if letter and letter.lower() not in MACRO_LETTERS:
            return (
                f"unknown macro letter {letter!r} in {m.group(0)!r} (in {spec!r}); "
                f"a record may use {', '.join(sorted(MACRO_LETTERS))}"
            )
        if digits and not digits.strip("0"):
            return f"{m.group(0)!r} keeps 0 labels (in {spec!r}); the count must be 1 or more"
        at = spec.find("%", m.end())
    return ""


def expand(spec: str, *, ip: str, sender: str, domain: str) -> str:
    """Expand SPF macros (RFC 7208 section 7) in a domain-spec.

    Raises ``ValueError`` for a malformed macro or an unknown letter. An
    uppercase letter's value is URL-escaped, and a result longer than 253
    characters loses labels on the left, as receivers do (section 7.3).
    """
    error = macro_error(spec)
    if error:
        raise ValueError(error)
    local, _, sender_domain = sender.rpartition("@")
    addr = ipaddress.ip_address(ip)
    dotted = str(addr) if addr.version == 4 else ".".join(addr.exploded.replace(":", ""))
    values = {
        "s": sender,
        "l": local or "postmaster",
        "o": sender_domain,
        "d": domain,
        "i": dotted,
        "p": "unknown",
        "v": "in-addr" if addr.version == 4 else "ip6",
        "h": domain,
    }

    def one(m: re.Match[str]) -> str:
        if m.group(0) in _ESCAPES:
            return _ESCAPES[m.group(0)]
        letter, digits, reverse, delims = m.group(1), m.group(2), m.group(3), m.group(4)
        parts = re.split("[" + re.escape(delims or ".") + "]", values[letter.lower()])
        if reverse:
            parts.reverse()
        # More labels asked for than there are: all of them (section 7.3).
        if digits and len(digits.lstrip("0")) <= 3:
            parts = parts[-int(digits) :]
        value = ".".join(parts)
        return quote(value, safe="-._~") if letter.isupper() else value

    expanded = _MACRO.sub(one, spec)
    while len(expanded) > MAX_DOMAIN and "." in expanded:
        expanded = expanded.split(".", 1)[1]
    return expanded


class _PermError(Exception):
    pass


class _TempError(Exception):
    pass


@dataclass
class SPFResult:
    """The outcome of check_host() and why: the matching term and the lookups it took."""

    result: str
    domain: str
    ip: str
    term: str = ""
    reason: str = ""
    lookups: int = 0


@dataclass
class _Evaluator:
    ip: str
    sender: str
    resolver: Resolver
    lookups: int = 0
    void: int = 0
    seen: list[str] = field(default_factory=list)

    @property
    def addr(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_address(self.ip)

    def count(self, term: str, domain: str) -> None:
        self.lookups += 1
        if self.lookups > MAX_LOOKUPS:
            raise _PermError(
                f"more than {MAX_LOOKUPS} DNS lookups: lookup {self.lookups} is {term} "
                f"in the SPF record of {domain}"
            )

    def voided(self, term: str, domain: str) -> None:
        self.void += 1
        if self.void > MAX_VOID:
            raise _PermError(
                f"more than {MAX_VOID} void lookups: void lookup {self.void} is {term} "
                f"in the SPF record of {domain}"
            )

    def check_host(self, domain: str) -> tuple[str, str]:
        domain = domain.rstrip(".").lower()
        if domain in self.seen:
            raise _PermError(f"loop through {domain}")
        self.seen.append(domain)
        try:
            records = select_records(self.resolver.txt(domain))
        except DNSMissing:
            records = []
        except DNSUnavailable as exc:
            raise _TempError(str(exc)) from exc
        finally:
            self.seen.pop()
        if not records:
            return "none", f"no SPF record at {domain}"
        if len(records) > 1:
            raise _PermError(f"{len(records)} SPF records at {domain}")
        record = parse(records[0])
        if record.errors:
            raise _PermError(f"{domain}: {record.errors[0]}")
        self.seen.append(domain)
        try:
            for term in record.terms:
                if term.mechanism in LOOKUP_TERMS:
                    self.count(term.text, domain)
                if self.matches(term, domain):
                    return term.result, f"{domain}: {term.text}"
            if record.redirect and record.all_term is None:
                self.count(f"redirect={record.redirect}", domain)
                target = self.target(record.redirect, domain)
                result, why = self.check_host(target)
                if result == "none":
                    raise _PermError(f"redirect={target} has no SPF record")
                return result, why
        finally:
            self.seen.pop()
        return "neutral", f"{domain}: no term matched"

    def target(self, spec: str, domain: str) -> str:
        try:
            return expand(spec, ip=self.ip, sender=self.sender, domain=domain).rstrip(".")
        except ValueError as exc:  # parse() refuses these; a hand-made Term may not
            raise _PermError(f"{domain}: {exc}") from exc

    def lookup(self, name: str, rdtype: str, term: Term, domain: str) -> list[str]:
        try:
            return self.resolver.query(name, rdtype)
        except DNSMissing:
            self.voided(term.text, domain)
            return []
        except DNSUnavailable as exc:
            raise _TempError(str(exc)) from exc

    def in_hosts(self, addresses: list[str], term: Term) -> bool:
        prefix = term.cidr4 if self.addr.version == 4 else term.cidr6
        for value in addresses:
            net = ipaddress.ip_network(
                f"{value}/{prefix}" if prefix is not None else value, strict=False
            )
            if self.addr in net:
                return True
        return False

    def matches(self, term: Term, domain: str) -> bool:
        m = term.mechanism
        family = "A" if self.addr.version == 4 else "AAAA"
        if m == "all":
            return True
        if m in ("ip4", "ip6"):
            net = ipaddress.ip_network(term.value)
            return net.version == self.addr.version and self.addr in net
        target = self.target(term.value, domain) if term.value else domain
        if m == "include":
            # A permerror inside the included record propagates as this one's.
            result, _ = self.check_host(target)
            if result == "none":
                raise _PermError(f"include:{target} has no SPF record")
            return result == "pass"
        if m == "a":
            return self.in_hosts(self.lookup(target, family, term, domain), term)
        if m == "mx":
            answer = self.lookup(target, "MX", term, domain)
            hosts = [v.split()[-1].rstrip(".") for v in answer]
            if len(hosts) > MAX_NAMES:
                raise _PermError(
                    f"{term.text} in the SPF record of {domain}: mx:{target} has "
                    f"{len(hosts)} MX names, more than {MAX_NAMES}"
                )
            return any(self.in_hosts(self.quiet(h, family), term) for h in hosts if h)
        if m == "exists":
            return bool(self.lookup(target, "A", term, domain))
        if m == "ptr":
            try:
                names = self.resolver.ptr(self.ip)[:MAX_NAMES]
            except (DNSMissing, DNSUnavailable):
                return False
            for name in names:
                if (name == target or name.endswith("." + target)) and self.ip in self.quiet(
                    name, family
                ):
                    return True
        return False

    def quiet(self, name: str, rdtype: str) -> list[str]:
        """Lookups that count toward neither limit (MX hosts, PTR names)."""
        try:
            return [str(ipaddress.ip_address(v)) for v in self.resolver.query(name, rdtype)]
        except DNSMissing:
            return []
        except DNSUnavailable as exc:
            raise _TempError(str(exc)) from exc


def check_host(ip: str, domain: str, sender: str, resolver: Resolver) -> SPFResult:
    """Evaluate SPF for mail from ``sender`` (envelope) at ``domain`` sent by ``ip``."""
    evaluator = _Evaluator(str(ipaddress.ip_address(ip)), sender, resolver)
    try:
        result, why = evaluator.check_host(domain)
    except _PermError as exc:
        result, why = "permerror", str(exc)
    except _TempError as exc:
        result, why = "temperror", str(exc)
    term = why.partition(": ")[2] if result in QUALIFIERS.values() else ""
    return SPFResult(result, domain, evaluator.ip, term, why, evaluator.lookups)
