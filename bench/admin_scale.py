"""The admin at scale: the same pages over a small and a large history, side by side.

For each size a fresh PostgreSQL database is migrated (with Django's admin) and
filled by ``bench/admin_steps.py fill``; then ``pages`` runs against each size
in turn, ``rounds`` times, so a change in the machine's load falls on both
sizes alike. The figure of a page is the median of its requests over the
rounds; the ratio is large / small, for server time and for queries.
"""

from __future__ import annotations

import statistics
import sys
from typing import Any

from bench.report import Target

# Known scans, reported but outside the 2x target (see the README's Performance
# section). None at present: the recipient-domain filter, the last one, now
# reads an index range of Recipient.domain.
UNBOUNDED: set[str] = set()
LIMIT = 2.0


def run(bench: Any, db: Any, sizes: list[int], repeat: int, rounds: int) -> dict[str, Any]:
    databases = {}
    fills = {}
    try:
        for n in sizes:
            url = db.fresh_empty(f"admin_{n}")
            databases[n] = url
            env = bench.env("smtprelay", url, BENCH_ADMIN="1")
            bench.step_module("bench.scenarios", "migrate", env)
            print(f"PostgreSQL: admin at scale, filling {n:,} messages", file=sys.stderr)
            # nice: the machine may be shared; the fill is not what is measured.
            fills[n] = bench.step_module("bench.admin_steps", "fill", env, "--n", str(n), nice=True)
            print(
                f"  filled in {fills[n]['seconds']:.0f} s: {fills[n]['counts']}, "
                f"{fills[n]['mb']:,} MB",
                file=sys.stderr,
            )
        samples: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
        for i in range(rounds):
            for n in sizes:
                print(f"  pages at {n:,} messages, round {i + 1} of {rounds}", file=sys.stderr)
                env = bench.env("smtprelay", databases[n], BENCH_ADMIN="1")
                result = bench.step_module(
                    "bench.admin_steps", "pages", env, "--repeat", str(repeat)
                )
                samples[n].append(result["pages"])
    finally:
        for url in databases.values():
            db.drop(url)
    pages = {}
    for name in samples[sizes[0]][0]:
        row = {}
        for n in sizes:
            row[n] = {
                "ms": statistics.median(s[name]["ms"] for s in samples[n]),
                "queries": max(s[name]["queries"] for s in samples[n]),
            }
        small, large = row[sizes[0]], row[sizes[-1]]
        row["time_ratio"] = large["ms"] / small["ms"]
        row["query_ratio"] = large["queries"] / small["queries"]
        pages[name] = row
    return {"sizes": sizes, "fills": fills, "pages": pages, "repeat": repeat, "rounds": rounds}


def table(result: dict[str, Any]) -> str:
    small, large = result["sizes"][0], result["sizes"][-1]
    fills = result["fills"]
    attempts = {n: fills[n]["counts"]["deliveryattempt"] for n in (small, large)}
    head = (
        f"Admin at scale (PostgreSQL): {small:,} messages / {attempts[small]:,} attempts vs "
        f"{large:,} / {attempts[large]:,}; median of {result['repeat']} x {result['rounds']} "
        "requests\n"
        f"{'':30} {f'at {small:,}':>17} {f'at {large:,}':>18} {'large / small':>16}\n"
        f"{'page':30} {'ms':>8} {'queries':>8} {'ms':>9} {'queries':>8} {'time':>7} {'queries':>8}"
    )
    lines = [head]
    for name, row in result["pages"].items():
        note = "  (a scan: outside the target)" if name in UNBOUNDED else ""
        lines.append(
            f"{name:30} {row[small]['ms']:8.0f} {row[small]['queries']:8} "
            f"{row[large]['ms']:9.0f} {row[large]['queries']:8} "
            f"{row['time_ratio']:6.2f}x {row['query_ratio']:7.2f}x{note}"
        )
    fill = fills[large]
    lines.append(f"fill of {large:,} messages: {fill['seconds']:.0f} s ({fill['timings']})")
    return "\n".join(lines)


def target(result: dict[str, Any]) -> Target:
    small, large = result["sizes"][0], result["sizes"][-1]
    name = f"admin pages at {large:,} messages within {LIMIT:g}x of {small:,} (time, queries)"
    rows = {k: v for k, v in result["pages"].items() if k not in UNBOUNDED}
    worst_time = max(rows, key=lambda k: rows[k]["time_ratio"])
    worst_queries = max(rows, key=lambda k: rows[k]["query_ratio"])
    ok = rows[worst_time]["time_ratio"] <= LIMIT and rows[worst_queries]["query_ratio"] <= LIMIT
    detail = (
        f"worst time {rows[worst_time]['time_ratio']:.2f}x ({worst_time}), "
        f"worst queries {rows[worst_queries]['query_ratio']:.2f}x ({worst_queries})"
    )
    return Target(name, "PASS" if ok else "FAIL", detail)


def skipped(reason: str) -> Target:
    return Target("admin pages at scale within 2x", "SKIP", reason)
