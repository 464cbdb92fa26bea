"""DNS lookups for the domain checks, with a TTL cache.

A check must tell "this record does not exist" (the domain owner must publish
it) from "we could not ask" (a timeout, SERVFAIL: nothing to fix in the zone,
maybe try again). dnspython folds both into several exception types; here they
become exactly two: :class:`DNSMissing` and :class:`DNSUnavailable`.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from dataclasses import dataclass, field

import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
import dns.reversename
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from ..conf import app_settings
from ..exceptions import SMTPRelayError


class DNSError(SMTPRelayError):
    """Base of the two outcomes of a failed lookup."""

    def __init__(self, name: str, rdtype: str, reason: str) -> None:
        self.name, self.rdtype, self.reason = name, rdtype, reason
        super().__init__(f"{rdtype} {name}: {reason}")


class DNSMissing(DNSError):
    """The name does not exist (NXDOMAIN) or has no record of this type (NODATA)."""

    @property
    def nxdomain(self) -> bool:
        return self.reason == "NXDOMAIN"


class DNSUnavailable(DNSError):
    """The answer could not be obtained: timeout, SERVFAIL, refused, no nameserver."""


class DNSBudgetExhausted(DNSUnavailable):
    """The check spent its query or time budget; nothing more is asked."""

    def __init__(self, name: str, rdtype: str, limit: str) -> None:
        self.name, self.rdtype, self.limit = name, rdtype, limit
        self.reason = f"incomplete: {limit} exhausted at {rdtype} {name}"
        Exception.__init__(self, self.reason)


@dataclass
class Budget:
    """What one domain's check may spend on DNS: network queries and wall-clock time.

    A hostile or broken zone can make a check ask without end (wide include
    trees, hundreds of report addresses) or wait on a server that never
    answers; the budget turns both into an "incomplete" result.
    """

    max_queries: int
    seconds: float
    started: float = field(default_factory=time.monotonic)
    queries: int = 0
    exhausted: DNSBudgetExhausted | None = None

    @classmethod
    def from_settings(cls) -> Budget:
        return cls(app_settings.domain_check_max_queries, app_settings.domain_check_timeout)

    def remaining(self) -> float:
        return self.seconds - (time.monotonic() - self.started)

    def spend(self, name: str, rdtype: str) -> float:
        """Account for one query; the seconds it may take. Raises DNSBudgetExhausted."""
        if self.exhausted is not None:
            raise self.run_out(name, rdtype, self.exhausted.limit)
        if self.queries >= self.max_queries:
            raise self.run_out(name, rdtype, f"query budget of {self.max_queries}")
        if self.remaining() <= 0:
            raise self.run_out(name, rdtype, f"time budget of {self.seconds:g}s")
        self.queries += 1
        return self.remaining()

    def run_out(self, name: str, rdtype: str, limit: str) -> DNSBudgetExhausted:
        """Mark the budget spent at ``name`` (the first time only); the error to raise.

        A fresh exception each time: re-raising one instance grows its traceback.
        """
        if self.exhausted is None:
            self.exhausted = DNSBudgetExhausted(name, rdtype, limit)
        return DNSBudgetExhausted(self.exhausted.name, self.exhausted.rdtype, self.exhausted.limit)


@dataclass
class _Entry:
    expires: float
    answer: list[str] | None = None
    missing: DNSMissing | None = None


# Answers kept at most: a worker that delivers to MX hosts looks up every
# recipient domain, so the cache is bounded (expired answers go first, then
# the oldest).
MAX_CACHE_ENTRIES = 20_000

_cache: dict[tuple[str, str], _Entry] = {}
_cache_lock = threading.Lock()


@receiver(setting_changed)
def _clear_cache(*, setting: str, **kwargs: object) -> None:
    if setting == "SMTPRELAY":
        clear_cache()


def clear_cache() -> None:
    """Forget every cached answer (the admin's "check now" starts fresh)."""
    with _cache_lock:
        _cache.clear()


def _make_room(now: float) -> None:
    """Drop expired answers, and the oldest tenth if none had expired (lock held)."""
    expired = [k for k, entry in _cache.items() if entry.expires <= now]
    if not expired:
        expired = list(_cache)[: max(1, MAX_CACHE_ENTRIES // 10)]
    for k in expired:
        del _cache[k]


def parse_nameserver(value: str) -> dns.nameserver.Do53Nameserver:
    """``"host"``, ``"host:port"``, ``"[v6]:port"`` or a bare IPv6 address -> a nameserver."""
    host, port = value.strip(), 53
    if host.startswith("["):
        host, _, rest = host[1:].partition("]")
        if rest.startswith(":"):
            port = rest[1:]
    elif host.count(":") == 1:
        host, port = host.split(":")
    try:
        port = int(port)
        ipaddress.ip_address(host)
    except ValueError:
        try:
            host = socket.gethostbyname(host)
        except (OSError, UnicodeError) as exc:
            raise ImproperlyConfigured(
                f"SMTPRELAY['DNS_NAMESERVERS'] entry {value!r} is not an IP address, "
                f"a resolvable host name or host:port."
            ) from exc
    return dns.nameserver.Do53Nameserver(host, int(port))


def build_resolver() -> dns.resolver.Resolver:
    """A dnspython resolver from settings; the system's configuration when none is set."""
    servers = app_settings.dns_nameservers
    if servers:
        if isinstance(servers, str):
            servers = [servers]
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [parse_nameserver(s) for s in servers]
    else:
        resolver = dns.resolver.Resolver()
    resolver.timeout = resolver.lifetime = app_settings.dns_timeout
    resolver.cache = None
    return resolver


@dataclass
class Resolver:
    """Cached lookups returning text; raises DNSMissing or DNSUnavailable.

    Answers are kept for the smaller of their TTL and ``DNS_CACHE_SECONDS``;
    failures to ask are never cached. ``queries`` counts real network lookups.
    ``budget``, when set (see :meth:`start_budget`), bounds the queries and
    the time of one domain's check.
    """

    resolver: dns.resolver.Resolver = field(default_factory=build_resolver)
    cache_seconds: int = field(default_factory=lambda: app_settings.dns_cache_seconds)
    queries: int = 0
    # Within one check, a name that could not be asked is not asked again.
    _failed: dict[tuple[str, str], DNSUnavailable] = field(default_factory=dict, repr=False)
    budget: Budget | None = None

    def start_budget(self, budget: Budget | None = None) -> Budget:
        """Give the next check a fresh budget (the settings' by default)."""
        self.budget = budget or Budget.from_settings()
        return self.budget

    def query(self, name: str, rdtype: str) -> list[str]:
        name = name.rstrip(".").lower()
        key = (name, rdtype)
        now = time.monotonic()
        with _cache_lock:
            entry = _cache.get(key)
        if entry and entry.expires > now:
            if entry.missing:
                raise entry.missing
            return list(entry.answer or [])
        if key in self._failed:
            raise self._failed[key]
        lifetime = self.resolver.lifetime
        if self.budget is not None:
            lifetime = min(lifetime, self.budget.spend(name, rdtype))
        # A timeout that only the budget cut short says nothing about the name.
        cut_short = lifetime < self.resolver.lifetime
        self.queries += 1
        try:
            answer = self.resolver.resolve(name, rdtype, search=False, lifetime=lifetime)
        except dns.resolver.NXDOMAIN as exc:
            self._store(key, now, 60, missing=DNSMissing(name, rdtype, "NXDOMAIN"))
            raise DNSMissing(name, rdtype, "NXDOMAIN") from exc
        except dns.resolver.NoAnswer as exc:
            self._store(key, now, 60, missing=DNSMissing(name, rdtype, "no record"))
            raise DNSMissing(name, rdtype, "no record") from exc
        except (dns.name.NameTooLong, dns.name.EmptyLabel, dns.name.LabelTooLong) as exc:
            raise DNSMissing(name, rdtype, f"invalid name ({exc})") from exc
        except dns.exception.Timeout as exc:
            if self.budget is not None and cut_short:
                limit = f"time budget of {self.budget.seconds:g}s"
                raise self.budget.run_out(name, rdtype, limit) from exc
            raise self._fail(key, "timed out") from exc
        except dns.resolver.NoNameservers as exc:
            raise self._fail(key, "server failure (SERVFAIL or refused)") from exc
        except dns.exception.DNSException as exc:
            raise self._fail(key, f"{type(exc).__name__}: {exc}") from exc
        values = [_text(rdata) for rdata in answer]
        ttl = answer.rrset.ttl if answer.rrset is not None else 0
        self._store(key, now, ttl, answer=values)
        return values

    def _fail(self, key: tuple[str, str], reason: str) -> DNSUnavailable:
        self._failed[key] = DNSUnavailable(key[0], key[1], reason)
        return self._failed[key]

    def _store(
        self,
        key: tuple[str, str],
        now: float,
        ttl: int,
        answer: list[str] | None = None,
        missing: DNSMissing | None = None,
    ) -> None:
        lifetime = min(ttl, self.cache_seconds)
        if lifetime > 0:
            with _cache_lock:
                if key not in _cache and len(_cache) >= MAX_CACHE_ENTRIES:
                    _make_room(now)
                _cache[key] = _Entry(now + lifetime, answer, missing)

    def txt(self, name: str) -> list[str]:
        """TXT strings of ``name``, each record's character-strings joined."""
        return self.query(name, "TXT")

    def addresses(self, name: str, *, ipv6: bool | None = None) -> list[str]:
        """A and/or AAAA records; missing only when neither type exists."""
        types = {True: ["AAAA"], False: ["A"], None: ["A", "AAAA"]}[ipv6]
        found: list[str] = []
        missing: DNSMissing | None = None
        for rdtype in types:
            try:
                found += self.query(name, rdtype)
            except DNSMissing as exc:
                missing = exc
        if not found and missing:
            raise missing
        return found

    def mx(self, name: str) -> list[tuple[int, str]]:
        """MX records as (preference, host) sorted by preference; ``"."`` is a null MX."""
        pairs = []
        for value in self.query(name, "MX"):
            pref, _, host = value.partition(" ")
            pairs.append((int(pref), host.rstrip(".").lower() or "."))
        return sorted(pairs)

    def ptr(self, ip: str) -> list[str]:
        """Reverse names of ``ip``."""
        name = dns.reversename.from_address(ip).to_text()
        return [v.rstrip(".").lower() for v in self.query(name, "PTR")]


def _text(rdata: object) -> str:
    if rdata.rdtype == dns.rdatatype.TXT:  # type: ignore[attr-defined]
        return b"".join(rdata.strings).decode("utf-8", "replace")  # type: ignore[attr-defined]
    if rdata.rdtype == dns.rdatatype.MX:  # type: ignore[attr-defined]
        return f"{rdata.preference} {rdata.exchange.to_text()}"  # type: ignore[attr-defined]
    return rdata.to_text()  # type: ignore[attr-defined]
