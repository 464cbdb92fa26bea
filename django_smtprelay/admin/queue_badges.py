"""The cells of the queue's lists: one badge for every state, a short timestamp, wrapped replies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

GREEN, ORANGE, RED, BLUE, GREY = "#2e7d32", "#ef6c00", "#c62828", "#1565c0", "#616161"

COLOURS = {
    "sent": GREEN,
    "delivered": GREEN,
    "deferred": ORANGE,
    "failed": RED,
    "suppressed": RED,
    "sending": BLUE,
    "queued": GREY,
    "pending": GREY,
    "cancelled": GREY,
}


def state_badge(state: str, label: str) -> SafeString:
    """``label`` on the colour of ``state`` (grey for one not listed)."""
    return format_html(
        '<span class="smtprelay-badge" style="background:{};color:#fff;padding:1px 6px;'
        'border-radius:8px;font-size:11px;white-space:nowrap">{}</span>',
        COLOURS.get(state, GREY),
        label,
    )


def short_time(value: datetime) -> SafeString:
    """A timestamp in two short lines (date, then time), so its column stays narrow."""
    local = timezone.localtime(value)
    return format_html(
        '<span style="white-space:nowrap" title="{}">{}<br>{}</span>',
        local.isoformat(),
        local.strftime("%Y-%m-%d"),
        local.strftime("%H:%M:%S"),
    )


# Wrapped at spaces, long words broken only when they must, never squeezed to a
# column one word wide; 10em is what keeps a reply beside the other columns in
# the 630 px a change list has at 1280 px (with the admin's navigation open).
WRAPPED = (
    '<div style="white-space:pre-wrap;overflow-wrap:anywhere;min-width:10em;max-width:40em">'
    "{}</div>"
)


def wrapped(text: str) -> SafeString | str:
    """A server's reply or an error, whole, wrapped to the column; "-" when empty."""
    return format_html(WRAPPED, text) if text else "-"


def address(value: str) -> SafeString:
    """An address that may break before its "@" (long addresses widen a column otherwise)."""
    local, at, domain = value.rpartition("@")
    if not at:
        return format_html("{}", value)
    return format_html("{}<wbr>@{}", local, domain)


def help_line(text: str) -> SafeString:
    """A second, quieter line in a cell."""
    return format_html('<div class="help" style="margin:2px 0 0">{}</div>', text)


def choice_text(choice: object) -> str:
    """An attempt's route choice in words: "for microsoft: relay-a 5%, relay-b 95%"."""
    if not isinstance(choice, dict) or not isinstance(choice.get("routes"), list):
        return ""
    shares = ", ".join(
        f"{r.get('route')} {float(r.get('share') or 0):.0%}"
        for r in choice["routes"]
        if isinstance(r, dict)
    )
    return f"for {choice.get('destination')}: {shares}"


def duration_text(seconds: float) -> str:
    """``40 ms`` below a second, ``2.4 s`` above."""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def route_and_code_cell(recipient: object) -> SafeString | str:
    """A recipient's route, with its SMTP and enhanced codes under it ("-" if neither)."""
    route = getattr(recipient, "route", None)
    code = " ".join(
        str(c)
        for c in (recipient.smtp_code, recipient.enhanced_code)
        if c  # type: ignore[attr-defined]
    )
    if route is None and not code:
        return "-"
    return format_html(
        '<span style="white-space:nowrap">{}</span>{}',
        route.name if route else "-",
        help_line(code) if code else "",
    )


def attempt_outcome_cell(attempt: object) -> SafeString:
    """An attempt's outcome, then where (route, stage, DKIM keys) and the shares
    that chose its route, for the attempts list and a message's attempts."""
    a: Any = attempt
    where = a.route_name + (f", at {a.stage}" if a.stage else "")
    if a.dkim_keys:
        where += _(", DKIM %(keys)s") % {"keys": a.dkim_keys}
    flag = _(" (possible duplicate)") if a.possible_duplicate else ""
    chosen = choice_text(a.route_choice)
    return format_html(
        "{}{}{}{}",
        a.get_outcome_display(),
        flag,
        help_line(where),
        help_line(chosen) if chosen else "",
    )
