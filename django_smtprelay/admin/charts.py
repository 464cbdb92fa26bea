"""Stacked bar charts drawn as inline SVG on the server: no script, works offline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

# One colour per series, the admin's own status colours.
SERIES = (
    ("sent", "#2e7d32"),
    ("deferred", "#ef6c00"),
    ("failed", "#c62828"),
)
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 160, 40, 22, 10


@dataclass(frozen=True)
class Slot:
    """One bar: its label on the axis, its tooltip, and a count per series."""

    label: str
    title: str
    counts: dict[str, int]


def bar_chart(slots: Sequence[Slot], caption: str, label_every: int = 1) -> SafeString:
    """An SVG stacked bar chart of ``slots``; every ``label_every``-th slot is labelled."""
    peak = max((sum(s.counts.values()) for s in slots), default=0)
    scale = (HEIGHT - BOTTOM - TOP) / peak if peak else 0.0
    step = (WIDTH - LEFT) / max(len(slots), 1)
    bar = max(step * 0.8, 1.0)
    parts: list[str] = []
    for i, slot in enumerate(slots):
        x = LEFT + i * step + (step - bar) / 2
        y = HEIGHT - BOTTOM
        tip = ", ".join(f"{slot.counts.get(name, 0)} {name}" for name, _ in SERIES)
        for name, colour in SERIES:
            h = slot.counts.get(name, 0) * scale
            if h <= 0:
                continue
            y -= h
            parts.append(
                format_html(
                    '<rect class="bar-{}" x="{}" y="{}" width="{}" height="{}" '
                    'fill="{}"><title>{}: {}</title></rect>',
                    name,
                    _n(x),
                    _n(y),
                    _n(bar),
                    _n(h),
                    colour,
                    slot.title,
                    tip,
                )
            )
        if i % label_every == 0:
            parts.append(
                format_html(
                    '<text x="{}" y="{}" text-anchor="middle">{}</text>',
                    _n(x + bar / 2),
                    HEIGHT - 5,
                    slot.label,
                )
            )
    axis = format_html(
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#999"/>'
        '<text x="{}" y="{}" text-anchor="end">{}</text>'
        '<text x="{}" y="{}" text-anchor="end">0</text>',
        LEFT, HEIGHT - BOTTOM, WIDTH, HEIGHT - BOTTOM,
        LEFT - 4, TOP + 8, peak,
        LEFT - 4, HEIGHT - BOTTOM,
    )  # fmt: skip
    legend = format_html_join(
        "",
        '<span class="smtprelay-legend"><i style="background:{}"></i>{}</span>',
        ((colour, name) for name, colour in SERIES),
    )
    return format_html(
        '<figure class="smtprelay-chart"><svg xmlns="http://www.w3.org/2000/svg" role="img" '
        'viewBox="0 0 {} {}" font-size="12" fill="currentColor"><title>{}</title>{}{}</svg>'
        "<figcaption>{} {}</figcaption></figure>",
        WIDTH, HEIGHT, caption, axis, SafeString("".join(parts)), caption, legend,
    )  # fmt: skip


def _n(value: float) -> str:
    """A coordinate, rounded (``format_html`` escapes its arguments to strings first)."""
    return f"{value:.1f}"
