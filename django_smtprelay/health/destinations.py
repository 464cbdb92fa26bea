"""Destination groups: who receives a recipient domain's mail, from its MX host names.

Receivers judge senders one by one, and one receiver serves many domains:
every Google Workspace domain's mail is Google's to accept or throttle. So
health is kept per route and *group*, where a group is the provider named by
the domain's MX hosts (a suffix in :data:`PROVIDERS`, which
``SMTPRELAY["DESTINATION_PROVIDERS"]`` extends) or, for a server no table
knows, the domain itself.

A look-up is bounded by ``DESTINATION_MX_TIMEOUT`` and cached (in the process
and in the health cache, for ``DESTINATION_CACHE_SECONDS``). A look-up that
fails (timeout, SERVFAIL, no resolver) makes the domain its own group for at
most :data:`FAILED_SECONDS`: a worker never waits on DNS more than once per
domain in that time, and never fails a message over it; and one batch spends at most
:data:`LOOKUP_BUDGET` seconds on look-ups in all.
"""

from __future__ import annotations

import logging
import threading
import time

from django.core.cache import BaseCache
from django.core.signals import setting_changed
from django.dispatch import receiver

from ..conf import app_settings
from . import store

logger = logging.getLogger("django_smtprelay.health")

# MX host suffix -> group. The big receivers; a site adds its own with
# SMTPRELAY["DESTINATION_PROVIDERS"].
PROVIDERS: dict[str, str] = {
    "google.com": "google",
    "googlemail.com": "google",
    "outlook.com": "microsoft",
    "hotmail.com": "microsoft",
    "yahoodns.net": "yahoo",
    "yahoo.com": "yahoo",
    "icloud.com": "apple",
    "me.com": "apple",
    "protonmail.ch": "proton",
    "proton.me": "proton",
    "messagingengine.com": "fastmail",
    "zoho.com": "zoho",
    "zoho.eu": "zoho",
    "yandex.net": "yandex",
    "mail.ru": "mail.ru",
    "gmx.net": "gmx",
    "web.de": "gmx",
    "pphosted.com": "proofpoint",
    "mimecast.com": "mimecast",
    "barracudanetworks.com": "barracuda",
}
# How long a domain whose MX look-up failed stays its own group before it is asked again.
FAILED_SECONDS = 300
# The most seconds one DestinationGroups (one batch) spends on look-ups; past
# them, domains not yet known are their own group for this batch only.
LOOKUP_BUDGET = 5.0
# The most domains one process remembers (a bulk send to many small domains).
MEMO_LIMIT = 50_000

_memo: dict[str, tuple[str, float]] = {}
_lock = threading.Lock()


def provider_for(mx_hosts: list[str], table: dict[str, str] | None = None) -> str | None:
    """The group of the first MX host (by preference) whose name ends in a known suffix."""
    table = table if table is not None else providers()
    for host in mx_hosts:
        labels = host.rstrip(".").lower().split(".")
        for start in range(len(labels)):
            group = table.get(".".join(labels[start:]))
            if group:
                return group
    return None


def providers() -> dict[str, str]:
    """The built-in table with the site's entries over it."""
    return {**PROVIDERS, **app_settings.destination_providers}


def forget() -> None:
    """Drop this process's memo (tests; a changed provider table)."""
    with _lock:
        _memo.clear()


class DestinationGroups:
    """Recipient domain -> group, for the engine; cheap to create, state is shared."""

    def __init__(self, cache: BaseCache | None = None) -> None:
        self._cache = cache
        self._table: dict[str, str] | None = None
        self._spent = 0.0  # seconds of look-ups so far

    def group(self, domain: str) -> str:
        """The domain's group: a provider's name, or the domain itself. Never raises."""
        domain = domain.rstrip(".").lower()
        if not domain:
            return ""
        now = time.monotonic()
        hit = _memo.get(domain)
        if hit is not None and hit[1] > now:
            return hit[0]
        key = store.key("dg", domain)
        try:
            cache = self._cache or store.get_cache()
            cached = cache.get(key)
        except Exception:  # the cache is advice: ask DNS
            cache, cached = None, None
        if isinstance(cached, str):
            self._remember(domain, cached, app_settings.destination_cache_seconds, now)
            return cached
        if self._spent >= LOOKUP_BUDGET:
            return domain  # asked again by a later batch
        group, seconds = self._look_up(domain)
        self._spent += time.monotonic() - now
        self._remember(domain, group, seconds, now)
        if cache is not None:
            try:
                cache.set(key, group, timeout=seconds)
            except Exception:
                logger.warning("Could not cache the destination group of %s", domain)
        return group

    def _look_up(self, domain: str) -> tuple[str, int]:
        """(group, seconds to keep it), from the domain's MX hosts."""
        from ..domains.resolver import DNSMissing, Resolver, build_resolver

        seconds = app_settings.destination_cache_seconds
        try:
            resolver = build_resolver()
            resolver.timeout = resolver.lifetime = min(
                resolver.lifetime, app_settings.destination_mx_timeout
            )
            hosts = [host for _, host in Resolver(resolver).mx(domain) if host != "."]
        except DNSMissing:
            return domain, seconds  # no MX: the domain's own address takes its mail
        except Exception as exc:  # timeout, SERVFAIL, no resolver: never stall a worker
            logger.info("MX look-up of %s failed (%s); it is its own group for now", domain, exc)
            return domain, min(FAILED_SECONDS, seconds)
        if self._table is None:
            self._table = providers()
        return provider_for(hosts, self._table) or domain, seconds

    @staticmethod
    def _remember(domain: str, group: str, seconds: int, now: float) -> None:
        with _lock:
            if len(_memo) >= MEMO_LIMIT:
                _memo.clear()
            _memo[domain] = (group, now + seconds)


@receiver(setting_changed)
def _forget_on_change(*, setting: str, **kwargs: object) -> None:
    if setting == "SMTPRELAY":
        forget()
