"""Domain patterns for route match rules: ``example.com``, ``*.example.org``."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from functools import lru_cache

from django.core.exceptions import ValidationError

_PATTERN = re.compile(r"^[a-z0-9*?.\-_]+$")


def split_patterns(value: str) -> tuple[str, ...]:
    """Patterns from a text of lines or commas, lower-cased, blanks dropped."""
    return tuple(p.strip().lower() for p in re.split(r"[,\s]+", value or "") if p.strip())


def validate_domain_patterns(value: str) -> None:
    bad = [p for p in split_patterns(value) if not _PATTERN.match(p)]
    if bad:
        raise ValidationError(
            f"Not a domain or pattern: {', '.join(repr(b) for b in bad)}. "
            "Use names like example.com or *.example.com, separated by commas or lines."
        )


@lru_cache(maxsize=4096)
def domain_matches(domain: str, patterns: tuple[str, ...]) -> bool:
    """True when ``domain`` matches one of ``patterns`` (empty patterns match everything).

    ``*.example.com`` also matches ``example.com`` itself, as relay admins expect.
    """
    if not patterns:
        return True
    domain = domain.lower().rstrip(".")
    for pattern in patterns:
        if fnmatchcase(domain, pattern):
            return True
        if pattern.startswith("*.") and domain == pattern[2:]:
            return True
    return False
