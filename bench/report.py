"""The printed table and the issue's targets, each PASS, FAIL or SKIP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LABELS = {
    "baseline": "smtplib, 1 connection (baseline)",
    "smtprelay": "django-smtprelay, engine",
    "celery": "django-smtprelay, celery worker",
    "post_office": "django-post_office",
    "mailer": "django-mailer",
}


@dataclass
class Target:
    name: str
    status: str  # PASS, FAIL or SKIP
    detail: str


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _ratio(value: float | None) -> str:
    return "" if value is None else f" ({value:.2f}x)"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value / 1024:.0f}"


def table(label: str, n: int, runs: int, summary: dict[str, dict[str, Any]], broker: str) -> str:
    """Messages per second (median of ``runs``) and each rate's ratio to the baseline."""
    head = (
        f"{'':34} {'enqueue msg/s':>20} {'drain msg/s':>20} {'end-to-end msg/s':>20} "
        f"{'sessions':>9} {'peak MB enq/drain':>18}"
    )
    lines = [
        "",
        f"{label}, N={n:,} messages, median of {runs} run(s); "
        "(x) = ratio to the smtplib baseline of the same run; "
        f"celery broker: {broker.split('://')[0]}",
        head,
        "-" * len(head),
    ]
    for name, row in summary.items():
        lines.append(
            f"{LABELS[name]:34} "
            f"{_rate(row.get('enqueue_rate')) + _ratio(row.get('enqueue_ratio')):>20} "
            f"{_rate(row.get('drain_rate')) + _ratio(row.get('drain_ratio')):>20} "
            f"{_rate(row.get('e2e_rate')) + _ratio(row.get('e2e_ratio')):>20} "
            f"{row.get('sessions', 0):>9.0f} "
            f"{_mb(row.get('enqueue_rss_kb')) + '/' + _mb(row.get('drain_rss_kb')):>18}"
        )
    return "\n".join(lines)


def speed_targets(
    summary: dict[str, dict[str, Any]],
    *,
    e2e_vs_po: float | None,
    enqueue_vs_po: float | None,
) -> list[Target]:
    drain = summary["smtprelay"]["drain_ratio"]
    out = [
        Target(
            "drain >= 0.8x the smtplib baseline (SQLite, engine)",
            "PASS" if drain >= 0.8 else "FAIL",
            f"{drain:.2f}x",
        )
    ]
    if e2e_vs_po is None:
        out.append(
            Target(
                "end-to-end >= 1.5x django-post_office",
                "SKIP",
                "not measured (not installed, or --skip-others)",
            )
        )
        out.append(
            Target(
                "enqueue >= django-post_office",
                "SKIP",
                "not measured (not installed, or --skip-others)",
            )
        )
        return out
    out.append(
        Target(
            "end-to-end >= 1.5x django-post_office",
            "PASS" if e2e_vs_po >= 1.5 else "FAIL",
            f"{e2e_vs_po:.2f}x",
        )
    )
    out.append(
        Target(
            "enqueue >= django-post_office's send_many",
            "PASS" if enqueue_vs_po is not None and enqueue_vs_po >= 1.0 else "FAIL",
            f"{enqueue_vs_po:.2f}x",
        )
    )
    return out


def esp_table(label: str, n: int, runs: int, summary: dict[str, dict[str, Any]]) -> str:
    """The ESP rows: anymail's backend in a loop, and an ESP route draining the queue."""
    head = f"{'':34} {'drain msg/s':>20} {'connections':>12} {'peak MB drain':>14}"
    lines = [
        "",
        f"{label}, ESP API (Postmark-like, 127.0.0.1), N={n:,}, median of {runs} run(s); "
        "(x) = ratio to anymail's backend of the same run",
        head,
        "-" * len(head),
    ]
    names = {
        "esp_baseline": "anymail backend, in a loop",
        "esp_route": "django-smtprelay, ESP route",
    }
    for name, row in summary.items():
        rate = _rate(row.get("drain_rate")) + _ratio(
            row.get("drain_ratio", 1.0 if name == "esp_baseline" else None)
        )
        lines.append(
            f"{names[name]:34} {rate:>20} {row.get('sessions', 0):>12.0f} "
            f"{_mb(row.get('drain_rss_kb')):>14}"
        )
    return "\n".join(lines)


def esp_target(summary: dict[str, dict[str, Any]]) -> Target:
    ratio = summary["esp_route"]["drain_ratio"]
    return Target(
        "ESP route drain >= 0.9x anymail's own backend in a loop (SQLite)",
        "PASS" if ratio >= 0.9 else "FAIL",
        f"{ratio:.2f}x",
    )


def memory_target(peaks: dict[int, int]) -> Target:
    small, large = min(peaks), max(peaks)
    ratio = peaks[large] / peaks[small]
    return Target(
        f"peak memory draining {large:,} <= 1.2x draining {small:,}",
        "PASS" if ratio <= 1.2 else "FAIL",
        f"{peaks[small] / 1024:.1f} MB -> {peaks[large] / 1024:.1f} MB = {ratio:.2f}x",
    )


def scale_target(rates: dict[int, float], workers: int) -> Target:
    ratio = rates[workers] / rates[1]
    return Target(
        f"{workers} workers >= 3x one worker (PostgreSQL, slow relay)",
        "PASS" if ratio >= 3 else "FAIL",
        f"{rates[1]:.2f} -> {rates[workers]:.2f} msg/s = {ratio:.2f}x",
    )


WEBHOOK_TARGET = 1000  # events/s applied on SQLite, posted one by one


def webhook_line(label: str, hooks: dict[str, Any]) -> str:
    """Webhook events applied per second, next to anymail's own view doing nothing with them."""
    return (
        f"{label}: webhook events, N={hooks['n']:,} posted one by one: "
        f"{hooks['rate']:,.0f}/s applied ({hooks['rate'] / hooks['baseline_rate']:.2f}x "
        f"anymail's view alone, {hooks['baseline_rate']:,.0f}/s); "
        f"CPU-bound rate {hooks['cpu_rate']:,.0f}/s "
        f"(baseline {hooks['baseline_cpu_rate']:,.0f}/s); "
        f"the same events again (duplicates): {hooks['replay_rate']:,.0f}/s"
    )


def webhook_target(hooks: dict[str, Any]) -> Target:
    status = "PASS" if hooks["rate"] >= WEBHOOK_TARGET else "FAIL"
    return Target(
        f"webhook events >= {WEBHOOK_TARGET:,}/s (SQLite)",
        status,
        f"{hooks['rate']:,.0f}/s applied (CPU-bound {hooks['cpu_rate']:,.0f}/s)",
    )


def exact_target(failures: list[str]) -> Target:
    return Target(
        "every message delivered exactly once (smtp-sink and the queue agree)",
        "FAIL" if failures else "PASS",
        "; ".join(failures) or "all runs",
    )


def targets(items: list[Target]) -> str:
    return "\n".join(["", "Targets:"] + [f"  [{t.status}] {t.name}: {t.detail}" for t in items])


def machine_line(info: dict[str, str]) -> str:
    return "\nMachine: " + ", ".join(f"{k} {v}" for k, v in info.items())
