"""A clean demo state at the start of every run, so each ``make demo`` tells the same story.

What an earlier run (or a visit to the site) leaves behind changes the next
one: suppressed ``nobody@`` addresses are no longer tried, a route's circuit
may be open, and old mail sits in the queue and the mailbox. The demo owns
all of it, so it deletes it; the admin login and the database's schema stay.
"""

from __future__ import annotations

from pathlib import Path

DEMO_ROUTES = ("relay-down", "relay-up")


def reset_demo_state(mailbox: Path, worker_log: Path) -> str:
    """Delete the queue, its statistics, suppressions, route health and mailbox; return
    one line saying so."""
    from django.core.management.color import no_style
    from django.db import connection, transaction
    from django.utils import timezone

    from django_smtprelay.health.circuit import close_now
    from django_smtprelay.models import (
        DeliveryAttempt,
        DeliveryStat,
        ErrorStat,
        Message,
        MessageStat,
        Recipient,
        Route,
        RouteHealth,
        Suppression,
    )

    with transaction.atomic():
        messages = Message.objects.count()
        Message.objects.all().delete()  # with their content, recipients and attempts
        suppressions, _ = Suppression.objects.all().delete()
        for stat in (DeliveryStat, MessageStat, ErrorStat):  # the dashboard's figures
            stat.objects.all().delete()
        health_routes = {*DEMO_ROUTES, *RouteHealth.objects.values_list("route_name", flat=True)}
        # Drops the circuit state and counters a shared cache may hold, then the rows.
        close_now(sorted(health_routes), "demo reset", timezone.now())
        RouteHealth.objects.all().delete()
        # The demo's routes are recreated with every other field at its default.
        Route.objects.filter(name__in=DEMO_ROUTES).delete()
        others = list(
            Route.objects.filter(enabled=True).order_by("name").values_list("name", flat=True)
        )
        Route.objects.filter(name__in=others).update(enabled=False)
        # Numbering starts at #1 again, so two runs print the same report.
        models = (Message, Recipient, DeliveryAttempt, Suppression)
        sequences = [{"table": m._meta.db_table, "column": m._meta.pk.column} for m in models]
        with connection.cursor() as cursor:
            for sql in connection.ops.sequence_reset_by_name_sql(no_style(), sequences):
                cursor.execute(sql)

    mails = list(mailbox.glob("*.eml")) if mailbox.is_dir() else []
    for path in mails:
        path.unlink()
    if worker_log.exists():
        worker_log.write_bytes(b"")

    line = (
        f"Started from a clean demo state: deleted {messages} messages, {suppressions} "
        f"suppressions and {len(mails)} mailbox files, and cleared the route health "
        f"(circuit state) of {' and '.join(sorted(health_routes))}"
    )
    if others:
        line += f"; disabled the other routes ({', '.join(others)})"
    return line + "."
