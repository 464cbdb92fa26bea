"""The control room's pages cost the same number of queries whatever the history holds,
and their counts stop at a cap (or take PostgreSQL's estimate) instead of counting it all.

The time they take at a million messages is measured by the benchmark
(``bench/run.py --admin-scale``), not here.
"""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_smtprelay.admin.paginator import HistoryPaginator
from django_smtprelay.models import DeliveryAttempt, Message, MessageContent, Recipient

pytestmark = pytest.mark.django_db

ADMIN = "/admin/django_smtprelay/"
STATES = ("sent",) * 7 + ("failed", "deferred", "queued")


def add_history(count: int, routes: list, start: int = 0) -> None:
    """``count`` messages over the last 10 days: recipients, two attempts each, some bytes."""
    now = timezone.now()
    messages = Message.objects.bulk_create(
        Message(
            status=STATES[i % len(STATES)],
            from_email="from@example.com",
            sender_domain=("example.com", "news.example.com")[i % 2],
            subject=f"Message {i}",
            created_at=now - timedelta(hours=i % 240),
            expires_at=now + timedelta(days=3),
        )
        for i in range(start, start + count)
    )
    recipients, attempts = [], []
    for i, message in enumerate(messages, start):
        final = {"sent": "delivered", "queued": "pending"}.get(message.status, message.status)
        for k in range(1 + (i % 3 == 0)):
            recipients.append(
                Recipient(
                    message=message,
                    address=f"user{i}-{k}@{('gmail.com', 'example.org')[k]}",
                    status=final,
                    route=routes[i % len(routes)] if final != "pending" else None,
                    smtp_code={"delivered": 250, "failed": 550, "deferred": 451}.get(final),
                    reply="" if final == "pending" else f"{final} reply {i}",
                    updated_at=None if final == "pending" else message.created_at,
                )
            )
        for k in range(2):
            attempts.append(
                DeliveryAttempt(
                    message=message,
                    route=routes[i % len(routes)],
                    route_name=routes[i % len(routes)].name,
                    started_at=message.created_at + timedelta(minutes=k),
                    outcome="transient" if k == 0 else "delivered",
                    smtp_code=451 if k == 0 else 250,
                    reply=f"reply {i}.{k}",
                )
            )
    Recipient.objects.bulk_create(recipients)
    DeliveryAttempt.objects.bulk_create(attempts)
    MessageContent.objects.bulk_create(
        MessageContent(message=m, raw=f"Subject: {m.subject}\r\n\r\nBody\r\n".encode())
        for m in messages[::5]
    )


def pages(route_pk: int, message_pk: int) -> list[tuple[str, dict]]:
    messages, recipients = ADMIN + "message/", ADMIN + "recipient/"
    return [
        (ADMIN, {}),
        (messages, {}),
        (messages, {"status__exact": "failed"}),
        (messages, {"status__exact": "deferred"}),
        (messages, {"age": "24h"}),
        (messages, {"age": "over-7d"}),
        (messages, {"route": str(route_pk)}),
        (messages, {"sender_domain": "news.example.com"}),
        (messages, {"domain": "gmail.com"}),
        (f"{messages}{message_pk}/change/", {}),
        (recipients, {}),
        (recipients, {"updated": "1h"}),
        (recipients, {"updated": "24h"}),
        (recipients, {"updated": "7d"}),
        (recipients, {"status": "failed"}),
        (ADMIN + "deliveryattempt/", {}),
        (ADMIN + "deliveryattempt/", {"route_name__exact": "primary", "stage__exact": "rcpt"}),
    ]


def query_counts(client, route_pk: int, message_pk: int) -> dict[str, int]:
    counts = {}
    for url, params in pages(route_pk, message_pk):
        client.get(url, params)  # what a first view caches (content types, permissions)
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url, params)
        assert response.status_code == 200, (url, params)
        counts[f"{url} {params}"] = len(queries)
    return counts


def test_no_page_makes_more_queries_with_200_messages_than_with_20(admin_client, make_route):
    routes = [make_route(port=25, name=name) for name in ("primary", "backup")]
    add_history(20, routes)
    shown = Message.objects.filter(status="sent").order_by("pk").first()
    small = query_counts(admin_client, routes[0].pk, shown.pk)
    add_history(180, routes, start=20)
    assert Message.objects.count() == 200 and DeliveryAttempt.objects.count() == 400
    large = query_counts(admin_client, routes[0].pk, shown.pk)
    assert large == small


def test_a_count_past_the_cap_reads_as_the_cap_and_more(admin_client, make_route, monkeypatch):
    routes = [make_route(port=25, name="primary")]
    add_history(30, routes)
    monkeypatch.setattr(HistoryPaginator, "cap", 5)
    page = admin_client.get(ADMIN + "recipient/", {"status": "delivered"})
    assert page.context["cl"].result_count == 5
    assert "5+ recipients" in " ".join(page.content.decode().split())
    few = admin_client.get(ADMIN + "recipient/", {"status": "deferred"})
    deferred = Recipient.objects.filter(status="deferred").count()
    assert 0 < deferred <= 5 and few.context["cl"].result_count == deferred
    text = " ".join(few.content.decode().split())
    assert f"{deferred} recipients" in text
    # The count itself, not any "N+" in the page (a timestamp's "+00:00" has one).
    assert f"{deferred}+ recipients" not in text


def test_the_capped_count_pages_as_far_as_the_cap(make_route):
    routes = [make_route(port=25, name="primary")]
    add_history(30, routes)

    class Small(HistoryPaginator):
        cap = 12

    paginator = Small(Message.objects.order_by("-created_at", "-pk"), 5)
    assert (paginator.count, paginator.capped, paginator.num_pages) == (12, True, 3)
    assert len(paginator.page(3).object_list) == 2


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="the estimate is PostgreSQL's (pg_class.reltuples); SMTPRELAY_TEST_DATABASE=postgres",
)
def test_the_unfiltered_list_on_postgresql_shows_the_estimate(
    admin_client, make_route, monkeypatch
):
    routes = [make_route(port=25, name="primary")]
    add_history(40, routes)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE django_smtprelay_message")
    monkeypatch.setattr(HistoryPaginator, "cap", 5)
    page = admin_client.get(ADMIN + "message/")
    assert page.context["cl"].paginator.estimated
    assert "about 40 messages" in " ".join(page.content.decode().split())
    filtered = admin_client.get(ADMIN + "message/", {"status__exact": "failed"})
    assert not filtered.context["cl"].paginator.estimated
    assert filtered.context["cl"].result_count == 4
