"""The app's admin index is the dashboard: queue, charts, routes, top errors, failing domains."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.cache import caches
from django.core.mail import send_mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.delivery.stats import FlushStats, hour_of, write_stats
from django_smtprelay.health import RouteHealthService
from django_smtprelay.models import DeliveryAttempt, Message, RouteHealth, SenderDomain
from django_smtprelay.templatetags.smtprelay_dashboard import (
    smtprelay_age,
    smtprelay_ago,
    smtprelay_seconds,
)
from tests.test_admin import staff_with

pytestmark = pytest.mark.django_db

URL = "/admin/django_smtprelay/"


def queue(*addresses: str) -> None:
    for address in addresses:
        send_mail("S", "B", "from@example.com", [address])


@pytest.fixture
def drained(smtp_server, make_route, refused_port):
    """Real results: a refused route first, a relay that refuses one user and
    delays another, a disabled route, an open circuit and a failing domain."""
    relay = smtp_server(
        rcpt_replies={
            "gone@example.com": "550 5.1.1 <gone@example.com>: Recipient address rejected",
            "later@example.com": "450 4.2.0 Mailbox busy",
        }
    )
    down = make_route(port=refused_port, name="primary", priority=10)
    up = make_route(relay, name="backup", priority=20)
    make_route(relay, name="spare", priority=30, enabled=False)
    queue("a@example.com", "b@example.com", "gone@example.com", "later@example.com")
    DeliveryEngine().run()
    queue("waiting@example.com")  # stays queued
    health = RouteHealthService()
    while health.breaker(down.name).state().state != RouteHealth.State.OPEN:
        health.after_result(down.name, "route_fault", reason="connection refused")
    SenderDomain.objects.create(domain="broken.example", verdict=SenderDomain.Verdict.FAILING)
    SenderDomain.objects.create(domain="fine.example", verdict=SenderDomain.Verdict.OK)
    return down, up


def card(page: str, status: str) -> int:
    match = re.search(rf'data-status="{status}">\s*<b>(\d+)</b>', page)
    assert match, f"no {status} card"
    return int(match.group(1))


def test_the_dashboard_shows_queue_charts_routes_errors_and_domains(admin_client, drained):
    response = admin_client.get(URL)
    assert response.status_code == 200
    page = response.content.decode()
    assert (card(page, "sent"), card(page, "failed"), card(page, "deferred")) == (2, 1, 1)
    assert card(page, "queued") == 1
    assert re.search(r'id="smtprelay-oldest-queued"><b>\d+ s</b>', page)
    assert re.search(r'id="smtprelay-oldest-deferred"><b>\d+ s</b>', page)
    # Charts: inline SVG with this hour's bars.
    hourly = page.split('id="smtprelay-chart-hourly"')[1].split("</figure>")[0]
    assert "<svg" in hourly and 'class="bar-sent"' in hourly and 'class="bar-failed"' in hourly
    assert "last 24 hours: 2 sent, 1 deferred, 1 failed" in page
    # Routes in failover order, with circuit, success rate and last error.
    routes = page.split('id="smtprelay-routes"')[1].split("</table>")[0]
    assert [m for m in re.findall(r'data-route="([^"]+)"', routes)] == [
        "primary",
        "backup",
        "spare",
    ]
    primary = routes.split('data-route="primary"')[1].split("</tr>")[0]
    assert "Open: not sending" in primary and "connection refused" in primary
    backup = routes.split('data-route="backup"')[1].split("</tr>")[0]
    assert "50%" in backup, backup  # 2 of 4 delivered in the last hour
    assert re.search(
        r"550 5\.1\.1 &lt;addr&gt;: Recipient address rejected|450 4\.2\.0 Mailbox", backup
    )
    assert "disabled" in routes.split('data-route="spare"')[1]
    # Top errors link to the attempts behind them.
    errors = page.split('id="smtprelay-errors"')[1].split("</table>")[0]
    link = re.search(r'href="([^"]*smtp_code=550[^"]*)"', errors)
    assert link, errors
    listing = admin_client.get(link.group(1).replace("&amp;", "&"))
    assert listing.status_code == 200
    assert [a.route_name for a in listing.context["cl"].result_list] == ["backup"]
    assert DeliveryAttempt.objects.filter(smtp_code=550).count() == 1
    # Failing domains only.
    domains = page.split('id="smtprelay-domains"')[1].split("</table>")[0]
    assert "broken.example" in domains and "fine.example" not in domains
    # The model list stays below.
    assert page.index('id="smtprelay-dashboard"') < page.index('class="app-django_smtprelay module')


def test_a_route_fault_error_links_to_attempts_without_a_code(admin_client, drained):
    page = admin_client.get(URL).content.decode()
    errors = page.split('id="smtprelay-errors"')[1].split("</table>")[0]
    link = re.search(r'href="([^"]*route_name__exact=primary[^"]*)"', errors)
    assert link and "smtp_code__isnull=1" in link.group(1)
    listing = admin_client.get(link.group(1).replace("&amp;", "&"))
    faults = DeliveryAttempt.objects.filter(route_name="primary").count()
    assert faults and listing.context["cl"].result_count == faults


def test_without_permission_on_the_app_the_index_is_djangos_404(client):
    client.force_login(staff_with())
    assert client.get(URL).status_code == 404


def test_staff_who_may_not_view_messages_get_the_plain_model_list(client):
    client.force_login(staff_with("view_suppression"))
    response = client.get(URL)
    assert response.status_code == 200
    assert b'id="smtprelay-dashboard"' not in response.content
    assert b"/admin/django_smtprelay/suppression/" in response.content


def test_staff_who_may_view_messages_see_the_dashboard(client):
    client.force_login(staff_with("view_message"))
    response = client.get(URL)
    assert response.status_code == 200 and b'id="smtprelay-dashboard"' in response.content


def test_the_site_index_links_to_the_dashboard(admin_client):
    assert f'href="{URL}"'.encode() in admin_client.get("/admin/").content


def seed_history(count: int, start: int = 0) -> None:
    """``count`` messages with one attempt each, spread over the last 30 days,
    and their statistics as the writer adds them (one flush per hour)."""
    now = timezone.now()
    statuses = ["sent", "failed", "deferred", "queued"]
    messages = Message.objects.bulk_create(
        Message(
            from_email="from@example.com",
            status=statuses[i % 4],
            created_at=now - timedelta(hours=i % 720),
            expires_at=now + timedelta(days=5),
        )
        for i in range(start, start + count)
    )
    attempts, flushes = [], {}
    for i, message in enumerate(messages, start):
        started = now - timedelta(hours=i % 720)
        outcome = "delivered" if message.status == "sent" else "permanent"
        code = 250 if outcome == "delivered" else 550
        attempts.append(
            DeliveryAttempt(
                message=message,
                route_name=f"r{i % 3}",
                started_at=started,
                outcome=outcome,
                smtp_code=code,
                reply=f"user{i} unknown, id {i}",
            )
        )
        stats, finished = flushes.setdefault(hour_of(started), (FlushStats(), {}))
        stats.attempt(started, f"r{i % 3}", outcome, 0.3, code, "", f"user{i} unknown", i)
        finished.setdefault(message.status, []).append(message.pk)
    DeliveryAttempt.objects.bulk_create(attempts)
    for hour, (stats, finished) in flushes.items():
        write_stats(stats, finished, hour)


def dashboard_queries(client) -> int:
    caches["default"].clear()
    with CaptureQueriesContext(connection) as queries:
        response = client.get(URL)
    assert response.status_code == 200 and b'id="smtprelay-dashboard"' in response.content
    return len(queries)


def test_the_dashboard_query_count_does_not_grow_with_the_history(
    admin_client, make_route, django_assert_max_num_queries
):
    for name in ("r0", "r1", "r2"):
        make_route(port=25, name=name)
    seed_history(20)
    small = dashboard_queries(admin_client)
    seed_history(1980, start=20)
    assert DeliveryAttempt.objects.count() == 2000
    large = dashboard_queries(admin_client)
    assert large == small
    with django_assert_max_num_queries(small):
        admin_client.get(URL)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5, "5 s"), (125, "2 min"), (3 * 3600 + 300, "3 h 5 min"), (2 * 86400 + 4 * 3600, "2 d 4 h")],
)
def test_ages_read_short(seconds: int, text: str) -> None:
    assert smtprelay_age(timedelta(seconds=seconds)) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "under a minute ago"),
        (59, "under a minute ago"),
        (3 * 3600 + 300, "3\xa0hours, 5\xa0minutes ago"),
    ],
)
def test_times_ago_never_read_0_minutes(seconds: int, text: str) -> None:
    from django.utils import timezone

    assert smtprelay_ago(timezone.now() - timedelta(seconds=seconds)) == text


def test_a_partial_delivery_error_links_to_its_attempt(admin_client, smtp_server, make_route):
    relay = smtp_server(rcpt_replies={"gone@example.com": "550 5.1.1 no such user"})
    make_route(relay, name="only")
    send_mail("S", "B", "from@example.com", ["ok@example.com", "gone@example.com"])
    DeliveryEngine().run()
    page = admin_client.get(URL).content.decode()
    errors = page.split('id="smtprelay-errors"')[1].split("</table>")[0]
    assert "Partly delivered" in errors and "550" in errors and "no such user" in errors
    link = re.search(r'<a href="([^"]+)">1</a>', errors).group(1).replace("&amp;", "&")
    listing = admin_client.get(link)
    assert [a.outcome for a in listing.context["cl"].result_list] == ["partial"]


def test_latencies_read_in_ms_below_a_second() -> None:
    assert (smtprelay_seconds(0.0042), smtprelay_seconds(0.85), smtprelay_seconds(2.44)) == (
        "4 ms",
        "850 ms",
        "2.4 s",
    )


def test_without_routes_the_sites_email_settings_are_the_route_shown(
    admin_client, smtp_server, settings
):
    relay = smtp_server(rcpt_replies={"gone@example.com": "550 5.1.1 no such user"})
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", relay.port
    queue("gone@example.com")
    DeliveryEngine().run()
    page = admin_client.get(URL).content.decode()
    routes = page.split('id="smtprelay-routes"')[1].split("</table>")[0]
    assert re.findall(r'data-route="([^"]+)"', routes) == ["django-settings"]
    assert "550 5.1.1 no such user" in routes
