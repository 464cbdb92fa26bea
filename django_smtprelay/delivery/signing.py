"""DKIM signing in the worker, just before a route sends a message.

A route that signs (``Route.dkim_sign``) sends each message with a
signature per active key of its From domain (the most specific sending
domain above it that has keys: mail from ``news.example.com`` is signed
with ``example.com``'s keys, which DMARC's relaxed alignment accepts).
Mail from a domain with no key goes unsigned, and the domain page says so.

A key that cannot be opened (its secret unreadable, or sealed to another
name) is a route fault with the reason, for that message only: the route
says it signs, so sending unsigned would break DMARC silently; the next
route takes the message, or it waits for the key to be fixed.
"""

from __future__ import annotations

import logging

from ..exceptions import SMTPRelayError
from ..models import DkimKey
from ..replies import Outcome, Stage, Verdict
from ..signing.keys import domain_and_parents, load_private_key
from ..signing.signer import SigningError, SigningKey, sign_message
from ..transports.base import Content, Reply
from .state import _Msg

logger = logging.getLogger("django_smtprelay.delivery")


class Signatures:
    """The DKIM keys of a batch's From domains, read once per domain and batch."""

    def __init__(self) -> None:
        self._keys: dict[str, list[SigningKey] | SigningError] = {}

    def keys_for(self, from_domain: str) -> list[SigningKey]:
        """The keys to sign mail from ``from_domain`` with; raises SigningError."""
        found = self._keys.get(from_domain)
        if found is None:
            found = self._keys[from_domain] = self._load(from_domain)
        if isinstance(found, SigningError):
            raise found
        return found

    def sign(self, msg: _Msg) -> tuple[bytes | Content, str]:
        """The message's bytes to send, signed, and the keys used (space-separated names)."""
        keys = self.keys_for(msg.from_domain) if msg.from_domain else []
        if not keys:
            return msg.data, ""
        return sign_message(msg.data, keys), " ".join(k.name for k in keys)

    @staticmethod
    def _load(from_domain: str) -> list[SigningKey] | SigningError:
        candidates = domain_and_parents(from_domain)
        rows = list(
            DkimKey.objects.filter(active=True, domain__domain__in=candidates).select_related(
                "domain"
            )
        )
        if not rows:
            return []
        domain = min({r.domain.domain for r in rows}, key=candidates.index)
        # RSA first: the signature every receiver verifies sits on top.
        rows = sorted(
            (r for r in rows if r.domain.domain == domain),
            key=lambda r: r.algorithm != DkimKey.Algorithm.RSA_SHA256,
        )
        opened = []
        for row in rows:
            try:
                private = load_private_key(row.private_key)
            except (SMTPRelayError, ValueError, TypeError) as exc:
                logger.error("DKIM key %s cannot be opened: %s", row.name, exc)
                return SigningError(f"the DKIM key {row.name} cannot be opened: {exc}")
            opened.append(SigningKey(domain, row.selector, row.algorithm, private))
        return opened


def signing_fault(exc: SigningError) -> tuple[Verdict, Reply]:
    """The route fault for a message that cannot be signed: the next route takes
    it, or it waits; the route goes on with the other messages."""
    reason = f"DKIM signing failed: {exc}"
    return Verdict(Outcome.ROUTE_FAULT, reason), Reply(
        stage=Stage.MAIL, text=reason, exception=type(exc).__name__
    )
