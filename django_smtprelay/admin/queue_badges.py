"""One badge for every queue state, message and recipient alike, and one short timestamp."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

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
