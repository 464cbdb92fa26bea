"""The admin at scale, one step per process: ``python -m bench.admin_steps STEP [options]``.

``fill`` writes a history into a migrated PostgreSQL database with a few
server-side ``INSERT ... SELECT generate_series`` statements; ``pages``
requests the admin's pages as a logged-in superuser through Django's test
client and reports each page's median server time and query count. Both
print one ``BENCH-RESULT {json}`` line, as ``bench/scenarios.py`` does.

Run with ``BENCH_ADMIN=1`` and ``BENCH_DATABASE=postgres:NAME`` (``bench/settings.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import timedelta
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

import django

django.setup()

from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

# What is waiting now, not history: the same number of queued and deferred
# messages at every size (the newest ones), so the pages' open-state figures
# measure the history's cost, not a backlog's.
BACKLOG = 500
ATTEMPTS_PER_MESSAGE = 5
DAYS = 30
ROUTES = ("relay-primary", "relay-backup", "esp-bulk", "esp-transactional")
SENDER_DOMAINS = ("example.com", "news.example.com", "shop.example.org")
RECIPIENT_DOMAINS = (
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "hotmail.com",
    "icloud.com",
    "gmx.de",
    "web.de",
    "orange.fr",
    "example.org",
    "example.net",
    "mail.example.edu",
    "corp.example.com",
)
# (outcome, code, enhanced code, normalised text) of the failures in the statistics.
ERRORS = (
    ("transient", 451, "4.7.1", "Greylisted, please try again in <n> seconds"),
    ("transient", 421, "4.7.0", "Too many connections from your IP"),
    ("permanent", 550, "5.1.1", "<addr>: Recipient address rejected: User unknown"),
    ("permanent", 552, "5.2.2", "Mailbox full"),
    ("route_fault", 0, "", "Connection refused"),
    ("uncertain", 0, "", "Connection lost after the data"),
)


def _sql(sql: str, params: dict[str, Any] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or {})


def fill(args: argparse.Namespace) -> dict[str, Any]:
    """A history of ``--n`` messages over 30 days, five attempts each, and its statistics."""
    from django_smtprelay.models import Route, RouteHealth, SenderDomain

    n, now = args.n, timezone.now()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    routes = [
        Route.objects.create(name=name, host="127.0.0.1", port=2525 + i, priority=i)
        for i, name in enumerate(ROUTES)
    ]
    for i, route in enumerate(routes):
        RouteHealth.objects.create(route_name=route.name, score=1.0 - i / 10)
    for i, domain in enumerate(SENDER_DOMAINS):
        verdict = SenderDomain.Verdict.FAILING if i == 2 else SenderDomain.Verdict.OK
        SenderDomain.objects.create(domain=domain, verdict=verdict, checked_at=now)
    params = {
        "n": n,
        "now": now,
        "span": timedelta(days=DAYS),
        "backlog": min(BACKLOG, n // 10),
        "routes": [r.pk for r in routes],
        "route_names": list(ROUTES),
        "senders": list(SENDER_DOMAINS),
        "domains": list(RECIPIENT_DOMAINS),
        "per": ATTEMPTS_PER_MESSAGE,
    }
    # Bulk-load speed: no foreign-key triggers while the rows go in (each
    # would queue a deferred check), and the big tables' secondary indexes
    # built once afterwards instead of updated row by row.
    _sql("SET session_replication_role = replica")
    indexes = _drop_indexes(("message", "recipient", "deliveryattempt"))
    for table, sql in FILL.items():
        t0 = time.perf_counter()
        _sql(sql, params)
        timings[table] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    for definition in indexes:
        _sql(definition)
    timings["indexes"] = round(time.perf_counter() - t0, 1)
    _sql("SET session_replication_role = DEFAULT")
    _stats(params)
    for table in ("message", "recipient", "deliveryattempt"):
        _sql(
            f"SELECT setval(pg_get_serial_sequence('django_smtprelay_{table}', 'id'), "
            f"(SELECT max(id) FROM django_smtprelay_{table}))"
        )
    t0 = time.perf_counter()
    # What autovacuum does on a running site: statistics for the planner, and
    # the visibility map that index-only scans need.
    _sql("VACUUM (ANALYZE)")
    timings["vacuum analyze"] = round(time.perf_counter() - t0, 1)
    counts = {}
    with connection.cursor() as cursor:
        for table in ("message", "recipient", "deliveryattempt", "messagecontent"):
            cursor.execute(f"SELECT count(*) FROM django_smtprelay_{table}")
            counts[table] = cursor.fetchone()[0]
        cursor.execute("SELECT pg_database_size(current_database())")
        size = cursor.fetchone()[0]
    return {
        "seconds": time.perf_counter() - started,
        "timings": timings,
        "counts": counts,
        "mb": round(size / 2**20),
    }


def _drop_indexes(tables: tuple[str, ...]) -> list[str]:
    """Drop the tables' indexes but their primary keys; return how to create them again."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%s) "
            "AND indexname NOT LIKE '%%_pkey'",
            [[f"django_smtprelay_{t}" for t in tables]],
        )
        rows = cursor.fetchall()
        for name, _definition in rows:
            cursor.execute(f'DROP INDEX "{name}"')
    return [definition for _name, definition in rows]


# The history's messages are created evenly over the 30 days, ids growing with
# time as on a real site; the backlog's over the last 50 minutes (what waits is
# recent), so the last hour holds a full page of rows at every size and each
# page compares like with like. h is a fixed pseudo-random number per message.
FILL = {
    "message": """
    INSERT INTO django_smtprelay_message (
        id, status, priority, from_email, sender_domain, from_domain, subject, message_id,
        size, route_hint, retry_route, created_at, next_attempt_at, expires_at, sent_at,
        attempt_count, last_error, lease_token, lease_expires_at, possible_duplicate, deliver_by)
    SELECT i, st, CASE WHEN h < 10 THEN 0 WHEN h < 100 THEN 1 ELSE 2 END,
        'noreply@' || sd, sd, sd,
        (ARRAY['Your order #', 'Password reset for account ', 'Weekly digest ',
               'Invoice ', 'Welcome aboard, member '])[1 + i %% 5] || i,
        '<' || i || '.bench@' || sd || '>', 2000 + i %% 5000, '', '', c,
        CASE WHEN st = 'deferred' THEN %(now)s + make_interval(mins => (i %% 60)::int) ELSE c END,
        c + interval '3 days',
        CASE WHEN st = 'sent' THEN c + interval '17 minutes' END,
        %(per)s,
        CASE st WHEN 'failed' THEN '550 5.1.1 <user' || i || '@gmail.com>: Recipient address '
                                   'rejected: User unknown in virtual mailbox table'
                WHEN 'deferred' THEN '451 4.7.1 Greylisted, please try again in 300 seconds'
                ELSE '' END,
        NULL, NULL, false, NULL
    FROM (
        SELECT i, h, c, (%(senders)s::text[])[1 + i %% 3] AS sd,
            CASE WHEN i > %(n)s - %(backlog)s THEN
                    CASE WHEN i %% 5 < 2 THEN 'queued' ELSE 'deferred' END
                 WHEN h < 30 THEN 'failed' WHEN h < 35 THEN 'cancelled' ELSE 'sent' END AS st
        FROM (
            SELECT i, (i::bigint * 2654435761) %% 1000 AS h,
                CASE WHEN i > %(n)s - %(backlog)s
                     THEN %(now)s - interval '50 minutes' * ((%(n)s - i)::float / %(backlog)s)
                     ELSE %(now)s - interval '50 minutes' - %(span)s
                          * ((%(n)s - %(backlog)s - i)::float / (%(n)s - %(backlog)s)) END AS c
            FROM generate_series(1, %(n)s) AS i
        ) AS base
    ) AS m
    """,
    # One recipient a message, three for every tenth; of those, one in three
    # sent messages has a refused third recipient.
    "recipient": """
    INSERT INTO django_smtprelay_recipient (
        address, domain, status, smtp_code, enhanced_code, reply, updated_at, message_id,
        route_id, provider_message_id)
    SELECT 'user' || ((m.id * 7 + k * 13) %% 250000) || '@'
            || (%(domains)s::text[])[1 + (m.id + k) %% 12],
        lower((%(domains)s::text[])[1 + (m.id + k) %% 12]),
        r.st,
        CASE r.st WHEN 'delivered' THEN 250 WHEN 'failed' THEN 550 WHEN 'deferred' THEN 451 END,
        CASE r.st WHEN 'delivered' THEN '2.0.0' WHEN 'failed' THEN '5.1.1'
                  WHEN 'deferred' THEN '4.7.1' ELSE '' END,
        CASE r.st WHEN 'delivered' THEN '250 2.0.0 Ok: queued as ' || upper(to_hex(m.id * 31 + k))
                  WHEN 'failed' THEN '550 5.1.1 Recipient address rejected: User unknown'
                  WHEN 'deferred' THEN '451 4.7.1 Greylisted, please try again in 300 seconds'
                  ELSE '' END,
        CASE WHEN r.st = 'pending' THEN NULL
             ELSE least(%(now)s, m.created_at + interval '17 minutes') END,
        m.id,
        CASE WHEN r.st = 'pending' THEN NULL ELSE (%(routes)s::bigint[])[1 + (m.id + k) %% 4] END,
        CASE WHEN r.st = 'delivered' THEN upper(to_hex(m.id * 31 + k)) ELSE '' END
    FROM django_smtprelay_message AS m
    CROSS JOIN LATERAL generate_series(1, CASE WHEN m.id %% 10 = 0 THEN 3 ELSE 1 END) AS k
    CROSS JOIN LATERAL (SELECT CASE m.status
        WHEN 'sent' THEN CASE WHEN k = 3 AND m.id %% 30 = 0 THEN 'failed' ELSE 'delivered' END
        WHEN 'failed' THEN 'failed' WHEN 'cancelled' THEN 'cancelled'
        WHEN 'deferred' THEN 'deferred' ELSE 'pending' END AS st) AS r
    ORDER BY m.id, k
    """,
    # Five tries a message: four that failed in different ways, then the last
    # one, whose outcome is the message's.
    "deliveryattempt": """
    INSERT INTO django_smtprelay_deliveryattempt (
        route_name, started_at, duration, outcome, stage, smtp_code, enhanced_code, reply,
        exception, recipients, possible_duplicate, message_id, route_id, dkim_keys)
    SELECT (%(route_names)s::text[])[1 + (m.id + k) %% 4],
        m.created_at + make_interval(mins => 4 * k, secs => 1),
        make_interval(secs => 0.05 + ((m.id * (k + 1)) %% 300) / 100.0),
        a.outcome,
        CASE a.outcome WHEN 'route_fault' THEN 'connect' WHEN 'uncertain' THEN 'data'
                       ELSE 'rcpt' END,
        a.code,
        CASE a.code WHEN 250 THEN '2.0.0' WHEN 550 THEN '5.1.1' WHEN 451 THEN '4.7.1'
                    WHEN 421 THEN '4.7.0' ELSE '' END,
        CASE a.code WHEN 250 THEN '250 2.0.0 Ok: queued as ' || upper(to_hex(m.id * 31))
            WHEN 550 THEN '550 5.1.1 <user' || m.id || '@gmail.com>: Recipient address rejected'
            WHEN 451 THEN '451 4.7.1 Greylisted, please try again in 300 seconds'
            WHEN 421 THEN '421 4.7.0 Too many connections from your IP'
            ELSE '' END,
        CASE a.outcome WHEN 'route_fault' THEN 'ConnectionRefusedError: [Errno 111] refused'
                       WHEN 'uncertain' THEN 'SMTPServerDisconnected: lost after the data'
                       ELSE '' END,
        '[]'::jsonb, a.outcome = 'uncertain',
        m.id, (%(routes)s::bigint[])[1 + (m.id + k) %% 4], ''
    FROM django_smtprelay_message AS m
    CROSS JOIN LATERAL generate_series(0, %(per)s - 1) AS k
    CROSS JOIN LATERAL (SELECT
        CASE WHEN k < %(per)s - 1 THEN
                (ARRAY['transient', 'route_fault', 'transient', 'uncertain'])[1 + (m.id + k) %% 4]
             WHEN m.status = 'sent' THEN 'delivered'
             WHEN m.status = 'failed' THEN 'permanent' ELSE 'transient' END AS outcome,
        CASE WHEN k < %(per)s - 1 THEN (ARRAY[451, NULL, 421, NULL])[1 + (m.id + k) %% 4]
             WHEN m.status = 'sent' THEN 250 WHEN m.status = 'failed' THEN 550
             ELSE 451 END AS code) AS a
    ORDER BY m.id, k
    """,
    # The bytes of a sample: one message in a thousand, and every tenth of the newest.
    "messagecontent": """
    INSERT INTO django_smtprelay_messagecontent (message_id, raw)
    SELECT m.id, convert_to(
        'From: ' || m.from_email || E'\\r\\nTo: user@example.org\\r\\nSubject: ' || m.subject
        || E'\\r\\nMessage-ID: ' || m.message_id
        || E'\\r\\nMIME-Version: 1.0\\r\\nContent-Type: text/plain; charset="utf-8"'
        || E'\\r\\n\\r\\n' || repeat(E'The quick brown fox jumps over the lazy dog.\\r\\n', 45),
        'UTF8')
    FROM django_smtprelay_message AS m
    WHERE m.id %% greatest(%(n)s / 1000, 1) = 0 OR (m.id > %(n)s - 5000 AND m.id %% 10 = 0)
    """,
}


def _stats(params: dict[str, Any]) -> None:
    """Hourly statistics over the 30 days: every hour, route and outcome has a row at
    every size (at least one), with counts in proportion to the history."""
    hours = DAYS * 24
    wave = "(1 + 0.5 * sin(2 * pi() * extract(hour FROM hr) / 24))"
    per_hour = params["n"] / hours
    attempts = per_hour * params["per"] / len(ROUTES)
    base = f"""
        FROM generate_series(0, {hours - 1}) AS hh
        CROSS JOIN LATERAL (SELECT date_trunc('hour', %(now)s) - make_interval(hours => hh) AS hr) t
    """
    delivery = [("delivered", 0.8), ("transient", 0.1), ("route_fault", 0.05), ("uncertain", 0.02)]
    delivery += [("permanent", 0.03)]
    for outcome, share in delivery:
        count = f"(1 + floor({attempts * share} * {wave}))::int"
        _sql(
            f"""INSERT INTO django_smtprelay_deliverystat (hour, route_name, outcome, count,
                duration_total, lat_lt_100ms, lat_lt_500ms, lat_lt_1s, lat_lt_5s, lat_ge_5s)
            SELECT hr, rn, '{outcome}', c, c * 0.4, c / 5, c - c / 5 - c / 4 - c / 10 - c / 50,
                   c / 4, c / 10, c / 50
            FROM (SELECT hr, rn, {count} AS c {base}
                  CROSS JOIN unnest(%(route_names)s::text[]) AS rn) s""",
            params,
        )
    for status, share in (("sent", 0.96), ("failed", 0.03), ("deferred", 0.1)):
        _sql(
            f"""INSERT INTO django_smtprelay_messagestat (hour, status, count)
            SELECT hr, '{status}', (1 + floor({per_hour * share} * {wave}))::int {base}""",
            params,
        )
    for outcome, code, enhanced, text in ERRORS:
        share = 0.03 if outcome == "permanent" else 0.05
        _sql(
            f"""INSERT INTO django_smtprelay_errorstat (hour, route_name, outcome, smtp_code,
                enhanced_code, text, count, last_seen, example_message_id)
            SELECT hr, rn, %(outcome)s, %(code)s, %(enhanced)s, %(text)s,
                   (1 + floor({attempts * share} * {wave}))::int, hr + interval '30 minutes',
                   greatest(1, %(n)s - hh * %(n)s / {hours}) {base}
            CROSS JOIN unnest(%(route_names)s::text[]) AS rn""",
            {**params, "outcome": outcome, "code": code, "enhanced": enhanced, "text": text},
        )


def pages(args: argparse.Namespace) -> dict[str, Any]:
    """Each page ``--repeat`` times (after one unmeasured request): median time and queries."""
    from django.contrib.auth import get_user_model

    from django_smtprelay.models import Message, Route

    user_model = get_user_model()
    user = user_model.objects.filter(username="bench-admin").first()
    if user is None:
        user = user_model.objects.create_superuser("bench-admin", "admin@example.com", "x")
    client = Client()
    client.force_login(user)
    # The newest sent message with its bytes stored: three recipients, five attempts.
    shown = Message.objects.filter(status="sent", content__isnull=False).order_by("-pk").first()
    route = Route.objects.order_by("pk").first()
    results = {}
    for name, url, params in page_list(shown.pk, route.pk):
        times, queries = [], []
        for i in range(args.repeat + 1):
            with CaptureQueriesContext(connection) as captured:
                t0 = time.perf_counter()
                response = client.get(url, params)
                took = time.perf_counter() - t0
            if response.status_code != 200:
                raise RuntimeError(f"{name}: {url}?{params} answered {response.status_code}")
            if i:  # the first request warms caches and imports
                times.append(took)
                queries.append(len(captured))
        results[name] = {
            "ms": statistics.median(times) * 1000,
            "queries": max(queries),
            "bytes": len(response.content),
        }
    return {"pages": results}


def page_list(message_pk: int, route_pk: int) -> list[tuple[str, str, dict]]:
    """(name, URL, query parameters) of every measured page."""
    admin = "/admin/django_smtprelay/"
    messages, recipients = admin + "message/", admin + "recipient/"
    attempts = admin + "deliveryattempt/"
    return [
        ("dashboard", admin, {}),
        ("messages", messages, {}),
        ("messages: failed", messages, {"status__exact": "failed"}),
        ("messages: deferred", messages, {"status__exact": "deferred"}),
        ("messages: last 24 hours", messages, {"age": "24h"}),
        ("messages: route", messages, {"route": str(route_pk)}),
        ("messages: recipient domain", messages, {"domain": "gmail.com"}),
        ("messages: sender domain", messages, {"sender_domain": "news.example.com"}),
        ("messages: over a week old", messages, {"age": "over-7d"}),
        ("message page", f"{messages}{message_pk}/change/", {}),
        ("recipients", recipients, {}),
        ("recipients: last hour", recipients, {"updated": "1h"}),
        ("recipients: last 24 hours", recipients, {"updated": "24h"}),
        ("recipients: last 7 days", recipients, {"updated": "7d"}),
        ("recipients: failed", recipients, {"status": "failed"}),
        ("recipients: recipient domain", recipients, {"domain": "gmail.com"}),
        ("recipients: search @domain", recipients, {"q": "@gmail.com"}),
        ("recipients: search an address", recipients, {"q": "User90@Gmail.com"}),
        ("messages: search @domain", messages, {"q": "@gmail.com"}),
        ("messages: search an address", messages, {"q": "User90@Gmail.com"}),
        ("routes", admin + "route/", {}),
        ("attempts", attempts, {}),
        (
            "attempts: a top error's link",
            attempts,
            {
                # What the dashboard's top errors link to.
                "route_name__exact": ROUTES[0],
                "outcome__exact": "transient",
                "started_at__gte": (timezone.now() - timedelta(hours=24)).isoformat(),
                "smtp_code": "451",
                "enhanced_code": "4.7.1",
            },
        ),
    ]


STEPS = {"fill": fill, "pages": pages}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("step", choices=sorted(STEPS))
    parser.add_argument("--n", type=int, default=10_000, help="messages to fill")
    parser.add_argument("--repeat", type=int, default=5, help="measured requests per page")
    args = parser.parse_args(argv)
    result = STEPS[args.step](args)
    sys.stdout.write("BENCH-RESULT " + json.dumps(result, default=str) + "\n")


if __name__ == "__main__":
    main()
