"""What one metrics scrape costs as the history grows: a day, a month, a year.

    .venv/bin/python bench/scrape.py               # SQLite
    .venv/bin/python bench/scrape.py --postgres    # PostgreSQL (see bench/README.md)

One process, one fresh database. The open queue stays the same (1,000 queued
and 1,000 deferred messages, three routes); the history grows: sent messages
(20 an hour) and their hourly statistics (three routes, four outcomes). Each
size is timed as the median of ``--scrapes`` calls of the collector (the
view's work without HTTP) with the queries counted, and the first scrape of
an hour apart (the older hours' sums are then read again from the database);
the ratios are to the one-day scrape of the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.databases import PostgreSQL, SQLite  # noqa: E402

DAYS = (1, 30, 365)
ROUTES = ("relay-a", "relay-b", "relay-c")
OUTCOMES = ("delivered", "transient", "permanent", "route_fault")
PER_HOUR = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--scrapes", type=int, default=20)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="smtprelay-scrape-"))
    databases = PostgreSQL(workdir) if args.postgres else SQLite(workdir)
    url = databases.create_template("smtprelay")
    os.environ.update(
        DJANGO_SETTINGS_MODULE="bench.settings",
        BENCH_DATABASE=url,
        BENCH_WORKDIR=str(workdir),
    )
    try:
        run(args.scrapes, databases.label)
    finally:
        databases.close()


def run(scrapes: int, label: str) -> None:
    import django

    django.setup()
    from django.core.cache import caches
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from django_smtprelay.delivery.stats import hour_of
    from django_smtprelay.metrics import exposition
    from django_smtprelay.models import DeliveryStat, Message, MessageStat, Route

    call_command("migrate", verbosity=0)
    now = timezone.now()
    for name in ROUTES:
        Route.objects.create(name=name, host="127.0.0.1", port=25)
    Message.objects.bulk_create(
        Message(from_email="f@example.com", status=s, expires_at=now + timedelta(days=5))
        for s in ("queued", "deferred")
        for _ in range(1000)
    )
    seeded_hours = 0
    rows = []
    for days in DAYS:
        hours = [hour_of(now) - timedelta(hours=h) for h in range(seeded_hours, days * 24)]
        seeded_hours = days * 24
        Message.objects.bulk_create(
            (
                Message(
                    from_email="f@example.com",
                    status="sent",
                    created_at=hour,
                    expires_at=hour,
                    sent_at=hour,
                )
                for hour in hours
                for _ in range(PER_HOUR)
            ),
            batch_size=2000,
        )
        DeliveryStat.objects.bulk_create(
            (
                DeliveryStat(hour=hour, route_name=r, outcome=o, count=7, duration_total=1.5)
                for hour in hours
                for r in ROUTES
                for o in OUTCOMES
            ),
            batch_size=2000,
        )
        MessageStat.objects.bulk_create(
            MessageStat(hour=hour, status=s, count=PER_HOUR)
            for hour in hours
            for s in ("sent", "deferred", "failed")
        )
        if label == "PostgreSQL":
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE")
        cold, warm = [], []
        for _ in range(scrapes):
            caches["default"].clear()  # the older hours' sums read again, as once an hour
            start = time.perf_counter()
            exposition(None)
            cold.append(time.perf_counter() - start)
            start = time.perf_counter()
            exposition(None)
            warm.append(time.perf_counter() - start)
        with CaptureQueriesContext(connection) as queries:
            exposition(None)
        rows.append(
            (
                days,
                Message.objects.count(),
                DeliveryStat.objects.count(),
                statistics.median(warm),
                statistics.median(cold),
                len(queries),
            )
        )
    base = rows[0][3]
    print(f"metrics scrape, {label}: median of {scrapes}; ratio to 1 day of history")
    print("| history | messages | hourly rows | ms per scrape | ratio | once an hour | queries |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for days, messages, stat_rows, warm, cold, n in rows:
        print(
            f"| {days} d | {messages:,} | {stat_rows:,} | {warm * 1000:.1f} | "
            f"{warm / base:.2f}x | {cold * 1000:.1f} ms ({cold / base:.2f}x) | {n} |"
        )


if __name__ == "__main__":
    main()
