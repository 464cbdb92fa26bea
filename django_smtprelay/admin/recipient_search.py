"""Finding recipients by domain or by address through an index, whatever the size of the queue.

An address's end fits no index: ``iendswith`` and Django's ``icontains``
search read every recipient, 5 s at a million messages. A domain is read
from ``Recipient.domain`` (lower case, IDNA-encoded, indexed) and an address
from the index on its lower-case form, so both are index ranges.

Internationalised domains: the queue stores the envelope's form
(``xn--bcher-kva.example``); a domain typed either way (``Bücher.example`` or
its ``xn--`` form) is encoded the same before it is looked up.
"""

from __future__ import annotations

from django.db.models import Q
from django.db.models.functions import Lower
from django.db.models.lookups import Exact

from ..envelope import address_domain

# Characters that do not occur in an address as the search box is used.
_NOT_IN_ADDRESS = frozenset(" \t\r\n<>()[],;:\\")


def domain_key(value: str) -> str:
    """``@Example.COM``, ``example.com`` or ``Bücher.example``: the stored form."""
    return address_domain(value.strip())


def recipient_condition(term: str) -> Q | Exact | None:
    """The recipients a search term names, as a condition on ``Recipient``:
    ``@domain`` every recipient at the domain, ``user@domain`` that address
    (any case); ``None`` for any other term (the admin's own search)."""
    term = term.strip()
    if "@" not in term or _NOT_IN_ADDRESS.intersection(term) or term.count('"') % 2:
        return None
    local, _at, domain = term.rpartition("@")
    if not domain:
        return None
    if not local:
        return Q(domain=domain_key(domain))
    return Exact(Lower("address"), f"{local.lower()}@{domain_key(domain)}")


def domain_label(domain: str) -> str:
    """A stored domain as a filter offers it: an IDNA domain with its Unicode form."""
    if "xn--" not in domain:
        return domain
    try:
        shown = domain.encode("ascii").decode("idna")
    except UnicodeError:
        return domain
    return f"{shown} ({domain})" if shown != domain else domain
