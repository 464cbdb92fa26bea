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
        f"{'':34} {'enqueue msg/s':>20} {'send_mail msg/s':>16} {'drain msg/s':>20} "
        f"{'end-to-end msg/s':>20} "
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
            f"{_rate(row.get('send_one_rate')):>16} "
            f"{_rate(row.get('drain_rate')) + _ratio(row.get('drain_ratio')):>20} "
            f"{_rate(row.get('e2e_rate')) + _ratio(row.get('e2e_ratio')):>20} "
            f"{row.get('sessions', 0):>9.0f} "
            f"{_mb(row.get('enqueue_rss_kb')) + '/' + _mb(row.get('drain_rss_kb')):>18}"
        )
    return "\n".join(lines)


# What django-smtprelay must reach against django-post_office, per database:
# (key of the rate, target ratio) for enqueue and for one message per call.
ENQUEUE_VS_PO = {"SQLite": 2.0, "PostgreSQL": 1.5}
SEND_ONE_VS_PO = 1.2
E2E_VS_PO = 1.5
DRAIN_VS_BASELINE = 0.8  # SQLite, engine


def _vs(name: str, ratio: float | None, minimum: float) -> Target:
    if ratio is None:
        return Target(name, "SKIP", "not measured (post_office not installed, or --skip-others)")
    return Target(name, "PASS" if ratio >= minimum else "FAIL", f"{ratio:.2f}x")


def speed_targets(
    label: str, summary: dict[str, dict[str, Any]], vs_po: dict[str, Any]
) -> list[Target]:
    """The issue's targets for one database; ``vs_po``: median ratios to post_office."""
    out = []
    if label == "SQLite":
        drain = summary["smtprelay"]["drain_ratio"]
        out.append(
            Target(
                f"drain >= {DRAIN_VS_BASELINE}x the smtplib baseline (SQLite, engine)",
                "PASS" if drain >= DRAIN_VS_BASELINE else "FAIL",
                f"{drain:.2f}x",
            )
        )
    out.append(
        _vs(
            f"end-to-end >= {E2E_VS_PO}x django-post_office ({label})",
            vs_po.get("e2e_rate"),
            E2E_VS_PO,
        )
    )
    need = ENQUEUE_VS_PO.get(label, 1.0)
    out.append(
        _vs(
            f"enqueue >= {need}x django-post_office's send_many ({label})",
            vs_po.get("enqueue_rate"),
            need,
        )
    )
    if "send_one_rate" in summary["smtprelay"]:
        out.append(
            _vs(
                f"send_mail() of one message >= {SEND_ONE_VS_PO}x post_office's mail.send "
                f"({label})",
                vs_po.get("send_one_rate"),
                SEND_ONE_VS_PO,
            )
        )
    return out


def esp_table(label: str, n: int, runs: int, summary: dict[str, dict[str, Any]]) -> str:
    """The ESP rows: anymail's backend in a loop, and an ESP route draining the queue."""
    head = (
        f"{'':34} {'drain msg/s':>20} {'CPU ms/msg':>11} {'connections':>12} {'peak MB drain':>14}"
    )
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
        cpu = f"{row['cpu_ms']:.3f}" if row.get("cpu_ms") else "-"
        lines.append(
            f"{names[name]:34} {rate:>20} {cpu:>11} {row.get('sessions', 0):>12.0f} "
            f"{_mb(row.get('drain_rss_kb')):>14}"
        )
    return "\n".join(lines)


def esp_target(summary: dict[str, dict[str, Any]]) -> Target:
    ratio = summary["esp_route"]["drain_ratio"]
    route, base = summary["esp_route"], summary["esp_baseline"]
    return Target(
        "ESP route drain >= 0.9x anymail's own backend in a loop (SQLite)",
        "PASS" if ratio >= 0.9 else "FAIL",
        f"{ratio:.2f}x"
        + (
            f" (CPU per message {route['cpu_ms'] / base['cpu_ms']:.2f}x anymail's)"
            if route.get("cpu_ms") and base.get("cpu_ms")
            else ""
        ),
    )


SIDE_ROWS = (
    ("enqueue, send_mass_mail: x django-post_office's send_many", "vs_po", "enqueue_rate"),
    ("send_mail() of one message: x post_office's mail.send", "vs_po", "send_one_rate"),
    ("end-to-end: x django-post_office", "vs_po", "e2e_rate"),
    ("drain, engine: x smtplib baseline", "smtprelay", "drain_ratio"),
    ("drain, celery worker: x smtplib baseline", "celery", "drain_ratio"),
    ("enqueue msg/s", "smtprelay", "enqueue_rate"),
    ("send_mail() msg/s", "smtprelay", "send_one_rate"),
    ("  a bare one-row INSERT and commit per call, msg/s", "baseline", "send_one_rate"),
    ("drain msg/s, engine", "smtprelay", "drain_rate"),
    ("large messages: peak MB draining them", "large", "drain_rss_kb"),
    ("large messages: peak / one message's size", "large", "peak_per_message"),
)


def side_by_side(databases: dict[str, dict[str, Any]]) -> str:
    """django-smtprelay on each database, one column each (medians; ratios within a run)."""
    labels = list(databases)
    head = f"{'django-smtprelay, side by side':58}" + "".join(f"{x:>14}" for x in labels)
    lines = ["", head, "-" * len(head)]
    for title, source, key in SIDE_ROWS:
        cells = []
        for label in labels:
            value = databases[label].get(source, {}).get(key)
            if key == "drain_rss_kb" and value is not None:
                value = value / 1024
            if key == "peak_per_message" and databases[label].get("large"):
                big = databases[label]["large"]
                value = big["drain_rss_kb"] * 1024 / (big["message_bytes"] or 1)
            if value is None:
                cells.append(f"{'-':>14}")
            elif key == "drain_rss_kb" or (key.endswith("_rate") and source != "vs_po"):
                cells.append(f"{value:>14,.0f}")
            else:
                cells.append(f"{value:>13.2f}x")
        lines.append(f"{title:58}" + "".join(cells))
    return "\n".join(lines)


# Draining large messages must peak at most at this share of their sum.
LARGE_SHARE_OF_SUM = 0.1


def large_target(label: str, big: dict[str, Any]) -> Target:
    peak = big["drain_rss_kb"] * 1024
    size = big["message_bytes"] or 1
    total = big["total_bytes"] or 1
    return Target(
        f"peak memory draining {big['n']} large messages <= "
        f"{LARGE_SHARE_OF_SUM:.0%} of their sum ({label})",
        "PASS" if peak <= LARGE_SHARE_OF_SUM * total else "FAIL",
        f"peak {peak / 2**20:.0f} MB = {peak / size:.1f}x one message of "
        f"{size / 2**20:.1f} MB, {peak / total:.1%} of their {total / 2**20:,.0f} MB",
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
    line = (
        f"{label}: webhook events, N={hooks['n']:,} posted one by one: "
        f"{hooks['rate']:,.0f}/s applied ({hooks['rate'] / hooks['baseline_rate']:.2f}x "
        f"anymail's view alone, {hooks['baseline_rate']:,.0f}/s); "
        f"CPU-bound rate {hooks['cpu_rate']:,.0f}/s "
        f"(baseline {hooks['baseline_cpu_rate']:,.0f}/s); "
        f"the same events again (duplicates): {hooks['replay_rate']:,.0f}/s; "
        f"{BATCH_NOTE}: {hooks['batched_rate']:,.0f}/s "
        f"(CPU-bound {hooks['batched_cpu_rate']:,.0f}/s)"
    )
    if "concurrent_rate" in hooks:
        line += (
            f"\n{label}: webhook events posted one by one by {hooks['clients']} concurrent "
            f"connections (threaded server on 127.0.0.1): {hooks['concurrent_rate']:,.0f}/s "
            f"applied ({hooks['concurrent_rate'] / hooks['concurrent_baseline_rate']:.2f}x "
            f"anymail's view alone, {hooks['concurrent_baseline_rate']:,.0f}/s); "
            f"CPU-bound rate {hooks['concurrent_cpu_rate']:,.0f}/s "
            f"(baseline {hooks['concurrent_baseline_cpu_rate']:,.0f}/s; the server's CPU, "
            "the clients post from a process of their own)"
        )
    normal = hooks.get("normal")
    if normal:
        line += (
            f"\n{label}, synchronous=NORMAL (a commit waits for no fsync): one by one "
            f"{normal['rate']:,.0f}/s (CPU-bound {normal['cpu_rate']:,.0f}/s), "
            f"one by one over {hooks.get('clients', CLIENTS)} connections "
            f"{normal.get('concurrent_rate', 0):,.0f}/s, "
            f"{BATCH_NOTE} {normal['batched_rate']:,.0f}/s"
        )
    return line


BATCH_NOTE = "SendGrid-style posts of 100 events"
CLIENTS = 16


def webhook_target(hooks: dict[str, Any]) -> Target:
    """Judged on the concurrent pass: one event a post, posted one by one by many
    connections at once, as ESPs post them; the sequential rate is shown beside it."""
    rate = hooks["concurrent_rate"]
    status = "PASS" if rate >= WEBHOOK_TARGET else "FAIL"
    detail = (
        f"{rate:,.0f}/s applied over {hooks['clients']} connections "
        f"(one connection posting one at a time: {hooks['rate']:,.0f}/s)"
    )
    if hooks.get("normal"):
        detail += f"; with synchronous=NORMAL {hooks['normal']['concurrent_rate']:,.0f}/s"
    name = (
        f"webhook events >= {WEBHOOK_TARGET:,}/s (SQLite, one event a post, "
        f"posted one by one by {hooks['clients']} concurrent connections, as ESPs do)"
    )
    return Target(name, status, detail)


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
