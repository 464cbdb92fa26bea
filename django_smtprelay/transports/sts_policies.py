"""MTA-STS policies (RFC 8461) of recipient domains, as a sender keeps them.

The ``_mta-sts`` TXT record is read on every look-up (through the resolver's
cache) and the policy is fetched again only when the record's ``id`` changes
or the cached policy's ``max_age`` has run out (section 5.1). When the record
or the fetch fails, an unexpired cached policy still applies (section 3.3 and
5.1), so that an attacker who blocks the fetch cannot switch it off; with
none cached the domain has no policy, as for any sender. The cache is shared
by a worker's threads and bounded in size.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from django.core.signals import setting_changed
from django.dispatch import receiver

from ..domains.mta_sts import Policy, PolicyError, fetch_policy, parse_policy
from ..domains.resolver import DNSMissing, DNSUnavailable, Resolver

# The most domains whose policies are kept; the least recently used goes first.
MAX_POLICIES = 10_000


@dataclass(frozen=True)
class Lookup:
    """A domain's policy (None: it has none that applies) and, when a record
    exists but no policy could be had, why (for the attempt)."""

    policy: Policy | None
    problem: str = ""

    @property
    def mode(self) -> str:
        return self.policy.mode if self.policy is not None else "none"


@dataclass(frozen=True)
class _Cached:
    id: str
    policy: Policy
    expires: float  # time.monotonic()


_cache: OrderedDict[str, _Cached] = OrderedDict()
_lock = threading.Lock()


@receiver(setting_changed)
def _clear_on_settings(*, setting: str, **kwargs: object) -> None:
    if setting == "SMTPRELAY":
        clear_cache()


def clear_cache() -> None:
    with _lock:
        _cache.clear()


def _cached(domain: str, now: float) -> _Cached | None:
    with _lock:
        entry = _cache.get(domain)
        if entry is None:
            return None
        if entry.expires <= now:
            del _cache[domain]
            return None
        _cache.move_to_end(domain)
        return entry


def _store(domain: str, entry: _Cached) -> None:
    with _lock:
        _cache[domain] = entry
        _cache.move_to_end(domain)
        while len(_cache) > MAX_POLICIES:
            _cache.popitem(last=False)


def _record_id(records: list[str]) -> str | None:
    """The ``id`` of the one ``v=STSv1`` record (None: none, several, or malformed)."""
    found = [r for r in records if r.replace(" ", "").startswith("v=STSv1;") or r == "v=STSv1"]
    if len(found) != 1:
        return None
    for part in found[0].split(";"):
        key, _, value = part.strip().partition("=")
        if key.strip() == "id" and value.strip().isalnum() and len(value.strip()) <= 32:
            return value.strip()
    return None


def policy_for(domain: str, resolver: Resolver) -> Lookup:
    """The MTA-STS policy that applies to mail for ``domain`` now."""
    now = time.monotonic()
    cached = _cached(domain, now)
    try:
        policy_id = _record_id(resolver.txt(f"_mta-sts.{domain}"))
    except DNSMissing:
        policy_id = None
    except DNSUnavailable as exc:
        if cached is not None:
            return Lookup(cached.policy)
        return Lookup(None, f"the _mta-sts record of {domain} could not be read ({exc.reason})")
    if policy_id is None:
        # No (valid) record: a policy cached before still applies until it expires.
        return Lookup(cached.policy if cached is not None else None)
    if cached is not None and cached.id == policy_id:
        return Lookup(cached.policy)
    try:
        policy = parse_policy(fetch_policy(domain, resolver))
    except PolicyError as exc:
        if cached is not None:
            return Lookup(cached.policy)
        return Lookup(None, f"the MTA-STS policy of {domain} could not be fetched: {exc}")
    _store(domain, _Cached(policy_id, policy, time.monotonic() + policy.max_age))
    return Lookup(policy)
