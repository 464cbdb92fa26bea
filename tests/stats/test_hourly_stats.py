"""Hourly statistics are written with the results and always equal the attempts behind them."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta

import pytest
from django.core.mail import send_mail
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.delivery.stats import FlushStats, hour_of, write_stats
from django_smtprelay.models import DeliveryAttempt, DeliveryStat, ErrorStat, Message, MessageStat
from django_smtprelay.models.stats import LATENCY_COLUMNS

GONE = "550 5.1.1 <{}>: Recipient address rejected: User unknown"


def fixed_hour_clock() -> tuple[datetime, callable]:
    """A clock that runs in real time, half an hour into an hour two hours ahead:
    every result of a test lands in that one hour (and the messages are due)."""
    start = timezone.now()
    hour = hour_of(start) + timedelta(hours=2)
    return hour, lambda: hour + timedelta(minutes=30) + (timezone.now() - start)


def queue(*addresses: str) -> None:
    for address in addresses:
        send_mail("S", "B", "from@example.com", [address])


def attempts_by_route_and_outcome() -> Counter:
    return Counter(DeliveryAttempt.objects.values_list("route_name", "outcome"))


def stats_by_route_and_outcome() -> Counter:
    out: Counter = Counter()
    for route, outcome, count in DeliveryStat.objects.values_list("route_name", "outcome", "count"):
        out[route, outcome] += count
    return out


def relay(smtp_server):
    return smtp_server(
        rcpt_replies={
            "gone1@example.com": GONE.format("gone1@example.com"),
            "gone2@example.com": GONE.format("gone2@example.com"),
            "later@example.com": "450 4.2.0 Mailbox busy, try again in 300 seconds",
        }
    )


@pytest.mark.django_db
def test_after_a_drain_the_statistics_equal_the_attempts_and_messages(
    smtp_server, make_route, refused_port
):
    down = make_route(port=refused_port, priority=10)
    up = make_route(relay(smtp_server), priority=20)
    queue("a@example.com", "b@example.com", "gone1@example.com", "gone2@example.com")
    queue("later@example.com")
    hour, clock = fixed_hour_clock()
    report = DeliveryEngine(clock=clock).run()
    assert (report.sent, report.failed, report.deferred) == (2, 2, 1)

    attempts = attempts_by_route_and_outcome()
    assert attempts[down.name, "route_fault"] >= 1, "the refused route was tried"
    assert attempts[up.name, "delivered"] == 2 and attempts[up.name, "permanent"] == 2
    assert stats_by_route_and_outcome() == attempts
    assert set(DeliveryStat.objects.values_list("hour", flat=True)) == {hour}
    for stat in DeliveryStat.objects.all():
        assert sum(stat.buckets) == stat.count
        took = DeliveryAttempt.objects.filter(route_name=stat.route_name, outcome=stat.outcome)
        total = sum((a.duration for a in took), timedelta()).total_seconds()
        assert stat.duration_total == pytest.approx(total, abs=1e-3)

    assert dict(MessageStat.objects.values_list("status", "count")) == {
        "sent": 2,
        "failed": 2,
        "deferred": 1,
    }
    assert Counter(Message.objects.values_list("status", flat=True)) == {
        "sent": 2,
        "failed": 2,
        "deferred": 1,
    }

    failed = DeliveryAttempt.objects.exclude(outcome="delivered").count()
    assert ErrorStat.objects.aggregate(n=Sum("count"))["n"] == failed
    # The two "user unknown" replies differ only by address: one row.
    unknown = ErrorStat.objects.get(route_name=up.name, smtp_code=550)
    assert (unknown.enhanced_code, unknown.count) == ("5.1.1", 2)
    assert unknown.text == "<addr>: Recipient address rejected: User unknown"
    assert Message.objects.filter(pk=unknown.example_message_id, status="failed").exists()
    refusals = DeliveryAttempt.objects.filter(route_name=up.name, smtp_code=550)
    assert unknown.last_seen == max(refusals.values_list("started_at", flat=True))
    faults = ErrorStat.objects.filter(route_name=down.name)
    assert faults.count() == 1, list(faults.values_list("text", flat=True))
    assert faults.get().count == attempts[down.name, "route_fault"]


@pytest.mark.django_db
def test_flushes_and_drains_add_up_in_one_row_per_hour(smtp_server, make_route, relay_settings):
    relay_settings(FLUSH_EVERY=2)  # several flushes per drain
    route = make_route(smtp_server())
    hour, clock = fixed_hour_clock()
    queue(*(f"m{i}@example.com" for i in range(5)))
    DeliveryEngine(clock=clock).run()
    queue(*(f"n{i}@example.com" for i in range(4)))
    DeliveryEngine(clock=clock).run()
    stat = DeliveryStat.objects.get()
    assert (stat.hour, stat.route_name, stat.outcome, stat.count) == (
        hour,
        route.name,
        "delivered",
        9,
    )
    assert MessageStat.objects.get().count == 9
    assert not ErrorStat.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_engines_in_threads_lose_no_increments(smtp_server, make_route, relay_settings):
    relay_settings(FLUSH_EVERY=3)
    make_route(smtp_server())
    queue(*(f"m{i}@example.com" for i in range(40)))
    queue(*(f"gone{i % 2 + 1}@example.com" for i in range(10)))
    _hour, clock = fixed_hour_clock()
    errors: list[BaseException] = []

    def drain() -> None:
        try:
            DeliveryEngine(clock=clock, batch_size=5).run()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=drain) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert stats_by_route_and_outcome() == attempts_by_route_and_outcome()
    assert MessageStat.objects.aggregate(n=Sum("count"))["n"] == 50


@pytest.mark.django_db(transaction=True)
def test_concurrent_flushes_on_the_same_rows_add_every_increment():
    hour = hour_of(timezone.now())
    rounds, threads_n = 25, 2
    errors: list[BaseException] = []

    def add() -> None:
        from django.db import transaction

        try:
            for _ in range(rounds):
                stats = FlushStats()
                stats.attempt(hour, "r", "delivered", 0.2, 250, "2.0.0", "ok", 1)
                stats.attempt(hour, "r", "transient", 2.0, 451, "4.3.0", "busy 12", 2)
                with transaction.atomic():
                    write_stats(stats, {"sent": [1, 2], "deferred": [3], "failed": []}, hour)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=add) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    total = rounds * threads_n
    assert dict(DeliveryStat.objects.values_list("outcome", "count")) == {
        "delivered": total,
        "transient": total,
    }
    assert DeliveryStat.objects.get(outcome="transient").lat_lt_5s == total
    assert DeliveryStat.objects.get(outcome="delivered").lat_lt_500ms == total
    assert dict(MessageStat.objects.values_list("status", "count")) == {
        "sent": 2 * total,
        "deferred": total,
    }
    assert ErrorStat.objects.get().count == total


def test_latency_buckets_follow_the_bounds() -> None:
    stats = FlushStats()
    now = timezone.now()
    for took in (0.05, 0.1, 0.7, 4.99, 5.0, 30.0):
        stats.attempt(now, "r", "delivered", took, 250, "", "", 1)
    (sums,) = stats.attempts.values()
    assert dict(zip(LATENCY_COLUMNS, sums[2:], strict=True)) == {
        "lat_lt_100ms": 1,
        "lat_lt_500ms": 1,
        "lat_lt_1s": 1,
        "lat_lt_5s": 1,
        "lat_ge_5s": 2,
    }
    assert sums[0] == 6 and sums[1] == pytest.approx(40.84)


@pytest.mark.django_db
def test_a_partial_delivery_counts_the_refusal_not_the_accepted_reply(smtp_server, make_route):
    route = make_route(relay(smtp_server))
    send_mail("S", "B", "from@example.com", ["ok@example.com", "gone1@example.com"])
    DeliveryEngine().run()
    attempt = DeliveryAttempt.objects.get()
    assert (attempt.outcome, attempt.smtp_code) == ("partial", 250)
    error = ErrorStat.objects.get()
    assert (error.route_name, error.outcome, error.smtp_code, error.enhanced_code) == (
        route.name,
        "partial",
        550,
        "5.1.1",
    )
    assert error.text == "<addr>: Recipient address rejected: User unknown"


@pytest.mark.django_db
def test_a_message_deferred_three_times_counts_once_as_deferred_and_once_as_sent(
    smtp_server, make_route
):
    # The relay says "try later" to the first three tries, then accepts.
    server = smtp_server(rcpt_replies={"later@example.com": "450 4.2.0 Mailbox busy"})
    server.options.rcpt_reply_times = 3
    make_route(server, name="only")
    queue("later@example.com", "at-once@example.com")
    start = timezone.now()
    deferrals = []
    for day in range(4):  # retries are due by the next day; the lifetime is 5 days
        report = DeliveryEngine(clock=lambda day=day: start + timedelta(days=day)).run()
        deferrals.append(report.deferred)
    assert deferrals == [1, 1, 1, 0]  # three deferral events ...
    assert Message.objects.get(recipients__address="later@example.com").status == "sent"
    assert server.attempts and len(server.messages) == 2
    counts: Counter = Counter()
    for status, count in MessageStat.objects.values_list("status", "count"):
        counts[status] += count
    # ... one deferred message: the dashboard's and the metrics' "deferred".
    assert counts == {"sent": 2, "deferred": 1}
    # The retries are attempts.
    assert stats_by_route_and_outcome() == {("only", "delivered"): 2, ("only", "transient"): 3}
