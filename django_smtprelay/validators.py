"""Field validators shared by the models: domain names, DKIM selectors, IP lists.

Each error names the offending value, so an admin form tells the user exactly
which line to fix.
"""

from __future__ import annotations

import ipaddress
import re

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$", re.IGNORECASE)


def split_list(value: str) -> list[str]:
    """Split a text field holding items one per line or separated by commas or spaces."""
    return [item for item in re.split(r"[\s,]+", value or "") if item]


def parse_networks(value: str) -> list[IPNetwork]:
    """Parse IPs and CIDRs (one per line or comma-separated); ValueError names a bad item."""
    networks = []
    for item in split_list(value):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise ValueError(f"{item!r} is not an IP address or network (CIDR)") from exc
    return networks


def validate_ip_list(value: str) -> None:
    """Accept IPv4/IPv6 addresses and networks, one per line or comma-separated."""
    try:
        parse_networks(value)
    except ValueError as exc:
        raise ValidationError(
            _("%(error)s; write addresses like 192.0.2.10 or 2001:db8::/48."),
            code="invalid_ip",
            params={"error": str(exc)},
        ) from exc


def is_domain_name(value: str) -> bool:
    """True for a syntactically valid DNS name with at least two labels."""
    name = value.rstrip(".")
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    return len(labels) >= 2 and all(_LABEL.match(label) for label in labels)


def validate_domain_name(value: str) -> None:
    """Accept a fully qualified domain name such as ``spf.relay.example``."""
    if value and not is_domain_name(value):
        raise ValidationError(
            _("%(value)r is not a domain name; write it like mail.example.com."),
            code="invalid_domain",
            params={"value": value},
        )


def validate_dkim_selector(value: str) -> None:
    """Accept a DKIM selector: one or more DNS labels (``s1``, ``2024.mail``)."""
    if value and not all(_LABEL.match(label) for label in value.split(".")):
        raise ValidationError(
            _("%(value)r is not a DKIM selector; use letters, digits, '-' and '_'."),
            code="invalid_selector",
            params={"value": value},
        )


def validate_selector_list(value: str) -> None:
    """Accept several DKIM selectors separated by commas or spaces."""
    for item in split_list(value):
        validate_dkim_selector(item)
