"""Server replies reduced to their kind: the same error from many messages reads the same.

``550 5.1.1 <ann@example.com>: Recipient address rejected`` and the same reply
for bob group together once the address, numbers, IP addresses and queue or
session ids are masked. Pure: no models, no settings.
"""

from __future__ import annotations

import re

MAX_LENGTH = 255

_TOKEN = re.compile(
    r"""
      (?P<addr><?[^\s<>@"'(),;\[\]]+@[^\s<>@"'(),;\[\]]+>?)   # an address, with or without <>
    | (?P<ip>\b\d{1,3}(?:\.\d{1,3}){3}\b                      # IPv4
        | (?<![\w:])[0-9a-fA-F]{0,4}(?::[0-9a-fA-F]{0,4}){2,7}(?![\w:]))  # IPv6
    | (?P<enhanced>\b[245]\.\d{1,3}\.\d{1,3}\b)               # kept: it is the kind
    | (?P<id>\b(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{6,}\b      # ids: letters with digits
        | \b[0-9a-fA-F]{8,}\b)                                # long hex
    | (?P<n>\d+)
    """,
    re.VERBOSE,
)
_MASKS = {"addr": "<addr>", "ip": "<ip>", "id": "<id>", "n": "<n>"}
_SPACE = re.compile(r"\s+")


def _mask(match: re.Match[str]) -> str:
    kind = match.lastgroup or ""
    return _MASKS.get(kind, match.group())


def normalise_reply(text: str) -> str:
    """``text`` with addresses, IPs, ids and numbers masked, whitespace collapsed,
    at most :data:`MAX_LENGTH` characters."""
    masked = _TOKEN.sub(_mask, text[: MAX_LENGTH * 8])
    return _SPACE.sub(" ", masked).strip()[:MAX_LENGTH]
