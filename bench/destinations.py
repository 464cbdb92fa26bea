"""Destination-aware routing, simulated: ``python -m bench.destinations [--out DIR]``.

Runs ``tests.destination_sim`` (two routes, two destination groups made from
MX records on a loopback DNS server, loopback relays; relay A answers
``421 4.7.0`` to group X 40% of the time until it recovers) on a fresh SQLite
database, and writes the share of each group's mail per route and simulated
minute next to the other results: ``destinations.json``, ``destinations.md``
(the table) and ``destinations.svg`` (the chart). Prints one
``BENCH-RESULT {json}`` line with the figures and the targets.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WARM_UP_MINUTES = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="results folder")
    parser.add_argument("--ticks", type=int, default=40, help="ticks before and after recovery")
    parser.add_argument("--per-tick", type=int, default=20, help="messages queued per tick")
    parser.add_argument("--tick-seconds", type=int, default=15, help="simulated seconds a tick")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="smtprelay-dest-"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    os.environ["BENCH_DATABASE"] = f"sqlite:{workdir / 'destinations.sqlite3'}"
    os.environ["BENCH_WORKDIR"] = str(workdir)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import override_settings

    from tests.destination_sim import simulate

    call_command("migrate", verbosity=0, interactive=False)
    started = time.perf_counter()
    # Room for every health counter: LocMemCache's default of 300 entries
    # culls a third of them at random when full (see README, "Route health").
    cache = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    with override_settings(CACHES={"default": {**cache, "OPTIONS": {"MAX_ENTRIES": 100_000}}}):
        result = simulate(
            throttled_ticks=args.ticks,
            recovered_ticks=args.ticks,
            per_tick=args.per_tick,
            tick_seconds=args.tick_seconds,
        )
    seconds = time.perf_counter() - started
    figures = summarise(result, seconds)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "destinations.json").write_text(json.dumps(figures, indent=2))
    (out / "destinations.md").write_text(table(figures) + "\n")
    (out / "destinations.svg").write_text(chart(figures))
    print(table(figures))
    print("BENCH-RESULT " + json.dumps(figures))
    return 0 if all(t["status"] == "PASS" for t in figures["targets"]) else 1


def summarise(result: Any, seconds: float) -> dict[str, Any]:
    """Per simulated minute: each route's count and share of each group's mail; the targets."""
    per_minute = 60 // result.tick_seconds
    minutes = []
    for start in range(0, len(result.ticks), per_minute):
        ticks = result.ticks[start : start + per_minute]
        row: dict[str, Any] = {"minute": start // per_minute, "throttling": ticks[0].throttling}
        for group in ("X", "Y"):
            a = sum(t.counts[("A", group)] for t in ticks)
            b = sum(t.counts[("B", group)] for t in ticks)
            row[f"{group}_A"], row[f"{group}_B"] = a, b
            row[f"{group}_A_share"] = round(a / (a + b), 3) if a + b else None
        row["throttled_421"] = sum(t.throttled for t in ticks)
        minutes.append(row)
    recovery_tick = int(result.recovery_minute * per_minute)
    warm = WARM_UP_MINUTES * per_minute
    window_ticks = 6 * per_minute  # the five-minute window and the bucket in progress
    x_via_b = result.share("B", "X", warm, recovery_tick - 1)
    y_via_a = result.share("A", "Y", 0, recovery_tick - 1)
    x_back = result.share("A", "X", recovery_tick + window_ticks, len(result.ticks) - 1)
    targets = [
        _target(
            "group X via B after warm-up >= 90%", x_via_b, x_via_b is not None and x_via_b >= 0.9
        ),
        _target(
            "group Y via A keeps the configured 50% (35-65%)",
            y_via_a,
            y_via_a is not None and 0.35 <= y_via_a <= 0.65,
        ),
        _target(
            "A's share of X back after recovery, within the window (>= 35%)",
            x_back,
            x_back is not None and x_back >= 0.35,
        ),
        {
            "name": "every message delivered exactly once (counted at the relays)",
            "status": "PASS" if not result.lost and not result.duplicates else "FAIL",
            "detail": f"{result.delivered} of {result.queued} delivered, "
            f"{len(result.lost)} lost, {len(result.duplicates)} twice",
        },
    ]
    return {
        "queued": result.queued,
        "delivered": result.delivered,
        "lost": len(result.lost),
        "duplicates": len(result.duplicates),
        "recovery_minute": result.recovery_minute,
        "seconds": round(seconds, 1),
        "minutes": minutes,
        "targets": targets,
    }


def _target(name: str, value: float | None, ok: bool) -> dict[str, str]:
    detail = "not measured" if value is None else f"{value:.1%}"
    return {"name": name, "status": "PASS" if ok else "FAIL", "detail": detail}


def table(figures: dict[str, Any]) -> str:
    """The figures as a Markdown table, then the targets."""

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.0%}"

    lines = [
        "Destination-aware routing, simulated: routes A and B (weight 1 each); relay A "
        f"answers 421 4.7.0 to 40% of group X until minute {figures['recovery_minute']:g}.",
        "",
        "| minute | A throttles X | X via A | X via B | A's share of X | Y via A | Y via B "
        "| A's share of Y | 421s |",
        "|---:|:---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in figures["minutes"]:
        lines.append(
            f"| {row['minute']} | {'yes' if row['throttling'] else 'no'} | {row['X_A']} "
            f"| {row['X_B']} | {pct(row['X_A_share'])} | {row['Y_A']} | {row['Y_B']} "
            f"| {pct(row['Y_A_share'])} | {row['throttled_421']} |"
        )
    lines.append("")
    for t in figures["targets"]:
        lines.append(f"- [{t['status']}] {t['name']}: {t['detail']}")
    return "\n".join(lines)


def chart(figures: dict[str, Any], width: int = 720, height: int = 320) -> str:
    """A line chart (SVG) of A's share of X and of Y per simulated minute."""
    left, right, top, bottom = 50, 160, 20, 40
    rows = figures["minutes"]
    span = max(len(rows) - 1, 1)
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(minute: float) -> float:
        return left + plot_w * minute / span

    def y(share: float) -> float:
        return top + plot_h * (1 - share)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="#fff"/>',
    ]
    for share in (0, 0.25, 0.5, 0.75, 1):
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y(share):.1f}" y2="{y(share):.1f}" '
            f'stroke="#ddd"/><text x="{left - 6}" y="{y(share) + 4:.1f}" text-anchor="end">'
            f"{share:.0%}</text>"
        )
    for row in rows[:: max(1, len(rows) // 10)]:
        parts.append(
            f'<text x="{x(row["minute"]):.1f}" y="{top + plot_h + 16}" text-anchor="middle">'
            f"{row['minute']}</text>"
        )
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle">'
        "simulated minute</text>"
    )
    rec = x(figures["recovery_minute"])
    parts.append(
        f'<line x1="{rec:.1f}" x2="{rec:.1f}" y1="{top}" y2="{top + plot_h}" stroke="#888" '
        f'stroke-dasharray="4 3"/><text x="{rec + 4:.1f}" y="{top + 12}">A recovers</text>'
    )
    parts.append(
        f'<line x1="{left}" x2="{left + plot_w}" y1="{y(0.5):.1f}" y2="{y(0.5):.1f}" '
        'stroke="#888" stroke-dasharray="2 2"/>'
    )
    for key, colour in (("X_A_share", "#c62828"), ("Y_A_share", "#1565c0")):
        points = " ".join(
            f"{x(r['minute']):.1f},{y(r[key]):.1f}" for r in rows if r[key] is not None
        )
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>'
        )
    for i, (colour, label) in enumerate(
        (
            ("#c62828", "A's share of X"),
            ("#1565c0", "A's share of Y"),
            ("#888", "configured share (50%)"),
        )
    ):
        ly = top + 10 + i * 18
        parts.append(
            f'<line x1="{left + plot_w + 12}" x2="{left + plot_w + 32}" y1="{ly}" y2="{ly}" '
            f'stroke="{colour}" stroke-width="2"/><text x="{left + plot_w + 36}" y="{ly + 4}">'
            f"{label}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    sys.exit(main())
