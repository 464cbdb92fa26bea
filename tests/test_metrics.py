"""The Prometheus metrics view: real deliveries in, the dashboard's figures out, behind a token."""

from __future__ import annotations

import logging
import re
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.cache import caches
from django.core.mail import send_mail
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from django_smtprelay.admin.dashboard import build_dashboard
from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.delivery.stats import FlushStats, hour_of, write_stats
from django_smtprelay.health import RouteHealthService
from django_smtprelay.health.overview import route_overview
from django_smtprelay.metrics import exposition
from django_smtprelay.models import DeliveryAttempt, Message, RouteHealth
from tests.health.conftest import LOCMEM, REDIS, require_redis, use_health_cache
from tests.stats.test_dashboard import seed_history
from tests.test_admin import staff_with

pytestmark = pytest.mark.django_db

URL = "/smtprelay/metrics/"
TOKEN = "s3cret-metrics-token-0123456789abcdef"


@pytest.fixture
def token(settings):
    settings.SMTPRELAY = {**settings.SMTPRELAY, "METRICS_TOKEN": TOKEN}
    return TOKEN


def scrape(client, token: str = TOKEN) -> dict[tuple[str, frozenset], float]:
    """The metrics as the Prometheus parser reads them: (sample name, labels) -> value."""
    response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for s in family.samples:
            samples[s.name, frozenset(s.labels.items())] = s.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples[name, frozenset(labels.items())]


def by_label(samples, name: str, label: str) -> dict[str, float]:
    return {dict(k)[label]: v for (n, k), v in samples.items() if n == name}


@pytest.fixture
def delivered(smtp_server, make_route, refused_port):
    """Real results: a refused route first, a relay that refuses one user and
    delays another, a disabled route, an open circuit, one message waiting."""
    relay = smtp_server(
        rcpt_replies={
            "gone@example.com": "550 5.1.1 <gone@example.com>: Recipient address rejected",
            "later@example.com": "450 4.2.0 Mailbox busy",
        }
    )
    make_route(port=refused_port, name="primary", priority=10)
    make_route(relay, name="backup", priority=20)
    make_route(relay, name="spare", priority=30, enabled=False)
    for address in ("a@example.com", "b@example.com", "gone@example.com", "later@example.com"):
        send_mail("S", "B", "from@example.com", [address])
    DeliveryEngine().run()
    send_mail("S", "B", "from@example.com", ["waiting@example.com"])  # stays queued
    health = RouteHealthService()
    while health.breaker("primary").state().state != RouteHealth.State.OPEN:
        health.after_result("primary", "route_fault", reason="connection refused")
    return relay


def test_after_real_deliveries_the_metrics_are_the_dashboards_figures(client, token, delivered):
    samples = scrape(client)
    dash = build_dashboard()
    # The queue: every open state, zeros included, as the dashboard counts it.
    queue = by_label(samples, "smtprelay_queue_messages", "status")
    assert queue == {"queued": 1, "sending": 0, "deferred": 1}
    assert queue == {status: n for status, _label, n in dash.queue if status in queue}
    assert 0 <= value(samples, "smtprelay_oldest_queued_seconds") < 60
    assert 0 < value(samples, "smtprelay_oldest_deferred_seconds") < 60
    assert value(samples, "smtprelay_oldest_deferred_seconds") == pytest.approx(
        dash.oldest_deferred.total_seconds(), abs=5
    )
    # Attempts: the attempts the engine recorded, route by route and outcome by outcome.
    attempts = {
        (dict(k)["route"], dict(k)["outcome"]): v
        for (n, k), v in samples.items()
        if n == "smtprelay_attempts_total"
    }
    recorded = Counter(DeliveryAttempt.objects.values_list("route_name", "outcome"))
    assert attempts == recorded
    assert attempts[("backup", "delivered")] == 2 and attempts[("primary", "route_fault")] == 4
    # ... and the dashboard's per-route figures (all of this hour).
    for row in dash.routes:
        mine = {o: n for (r, o), n in attempts.items() if r == row.name}
        assert sum(mine.values()) == row.attempts
        if row.attempts:
            ok = mine.get("delivered", 0) + mine.get("partial", 0)
            assert ok / row.attempts == pytest.approx(row.success_rate)
    # A histogram per route whose count is its attempts.
    for route in ("primary", "backup"):
        total = sum(n for (r, _o), n in attempts.items() if r == route)
        assert value(samples, "smtprelay_attempt_duration_seconds_count", route=route) == total
        assert value(samples, "smtprelay_attempt_duration_seconds_bucket", route=route, le="+Inf")
    # Messages: what the dashboard shows for the last 24 hours.
    messages = by_label(samples, "smtprelay_messages_total", "status")
    assert messages == {"sent": 2, "failed": 1, "deferred": 1}
    assert messages == {s: dash.totals_24h.get(s, 0) for s in messages}
    # Routes: the admin's Route health figures.
    circuits = by_label(samples, "smtprelay_route_circuit_open", "route")
    assert circuits == {"primary": 1, "backup": 0, "spare": 0}
    scores = by_label(samples, "smtprelay_route_score", "route")
    assert scores == {r.name: pytest.approx(r.score.score) for r in route_overview()}
    assert by_label(samples, "smtprelay_route_enabled", "route") == {
        "primary": 1,
        "backup": 1,
        "spare": 0,
    }


def test_attempts_total_survives_a_restart_and_the_purge_of_attempts(
    client, token, smtp_server, make_route, settings
):
    relay = smtp_server()
    make_route(relay, name="only")
    send_mail("S", "B", "from@example.com", ["a@example.com", "b@example.com"])
    send_mail("S", "B", "from@example.com", ["c@example.com"])
    DeliveryEngine().run()
    before = value(scrape(client), "smtprelay_attempts_total", route="only", outcome="delivered")
    assert before == 2
    # A restart: nothing of this process is left (caches cleared, a new
    # registry per scrape), and the attempts themselves purged by retention.
    for cache in caches.all():
        cache.clear()
    month_ago = timezone.now() - timedelta(days=31)
    Message.objects.update(created_at=month_ago, next_attempt_at=month_ago, sent_at=month_ago)
    call_command("smtprelay_purge", verbosity=0)
    assert not DeliveryAttempt.objects.exists()
    after = scrape(client)
    assert value(after, "smtprelay_attempts_total", route="only", outcome="delivered") == before
    assert value(after, "smtprelay_messages_total", status="sent") == 2
    # It only goes up.
    send_mail("S", "B", "from@example.com", ["d@example.com"])
    DeliveryEngine().run()
    later = scrape(client)
    assert value(later, "smtprelay_attempts_total", route="only", outcome="delivered") == 3


def test_without_a_token_or_a_login_the_answer_is_401_and_says_what_to_send(client, token):
    response = client.get(URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer ")
    assert b"Authorization: Bearer" in response.content and b"staff" in response.content
    assert TOKEN.encode() not in response.content


def test_a_wrong_token_is_refused_without_repeating_either_token(client, token, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = TOKEN[:-1] + "X"
    response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {wrong}")
    assert response.status_code == 401
    assert 'error="invalid_token"' in response["WWW-Authenticate"]
    assert b"does not match" in response.content
    for secret in (TOKEN, wrong):
        assert secret.encode() not in response.content
        assert secret not in caplog.text
        assert secret not in str(response.headers)


def test_the_right_token_is_let_in_and_never_appears_in_the_output(client, token, caplog):
    caplog.set_level(logging.DEBUG)
    response = client.get(URL, HTTP_AUTHORIZATION=f"bearer {TOKEN}")
    assert response.status_code == 200
    assert b"# TYPE smtprelay_queue_messages gauge" in response.content
    assert TOKEN.encode() not in response.content and TOKEN not in caplog.text
    assert response["Cache-Control"].startswith("max-age=0")


def test_a_token_sent_to_a_site_without_one_is_refused(client):
    response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 401
    assert b"METRICS_TOKEN'] is not set" in response.content


def test_a_logged_in_staff_user_may_read_the_metrics(client):
    client.force_login(staff_with())
    response = client.get(URL)
    assert response.status_code == 200
    assert b"smtprelay_attempts_total" in response.content or b"smtprelay_attempts" in (
        response.content
    )


def test_a_logged_in_user_who_is_not_staff_gets_403(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("someone", password="pw"))
    response = client.get(URL)
    assert response.status_code == 403
    assert b"not staff" in response.content


def test_openmetrics_is_served_when_the_scraper_asks_for_it(client, token):
    response = client.get(
        URL,
        HTTP_AUTHORIZATION=f"Bearer {TOKEN}",
        HTTP_ACCEPT="application/openmetrics-text; version=1.0.0",
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.rstrip().endswith(b"# EOF")


def test_without_prometheus_client_the_view_says_which_extra_to_install(client, token, monkeypatch):
    # The package made unimportable, as on a site without the extra.
    for name in [m for m in sys.modules if m.split(".")[0] == "prometheus_client"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "django_smtprelay.metrics", raising=False)
    response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 503
    assert b'pip install "django-smtprelay[metrics]"' in response.content
    # Authentication still comes first: nothing is said to a stranger.
    assert client.get(URL).status_code == 401


def metrics_queries(client) -> int:
    caches["default"].clear()
    with CaptureQueriesContext(connection) as queries:
        scrape(client)
    return len(queries)


def test_the_number_of_queries_does_not_grow_with_the_history(client, token, make_route):
    for name in ("r0", "r1", "r2"):
        make_route(port=25, name=name)
    seed_history(20)
    small = metrics_queries(client)
    seed_history(1980, start=20)
    assert DeliveryAttempt.objects.count() == 2000
    assert metrics_queries(client) == small
    assert small <= 9  # 7, and one per non-empty queued and deferred state
    # Within the hour, the older hours' sums come from the cache.
    with CaptureQueriesContext(connection) as queries:
        scrape(client)
    assert len(queries) == small - 2


def test_the_readme_lists_every_metric_the_view_serves(client, token):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.partition("\n## Monitoring\n")[2].partition("\n## ")[0]
    documented = set(re.findall(r"^\| `(smtprelay_\w+)[{`]", section, re.MULTILINE))
    response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    served = {
        f.name + ("_total" if f.type == "counter" else "")
        for f in text_string_to_metric_families(response.content.decode())
    }
    assert documented == served


def delivered_total(now) -> float:
    body, _type = exposition(None, now=now)
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.name == "smtprelay_attempts_total" and s.labels["route"] == "r":
                return s.value
    return 0


@pytest.fixture(params=["locmem", "redis"])
def totals_cache(request, settings):
    """The cache the older hours' sums are kept in: per process, or shared by processes."""
    if request.param == "redis":
        require_redis()
    cache = use_health_cache(settings, LOCMEM if request.param == "locmem" else REDIS)
    yield cache
    cache.clear()


def test_a_late_write_to_an_old_hour_is_counted_by_the_next_hour_and_never_lost(totals_cache):
    now = timezone.now()
    five_hours_ago = now - timedelta(hours=5)

    def flush(n: int) -> None:
        stats = FlushStats()
        for i in range(n):
            stats.attempt(five_hours_ago, "r", "delivered", 0.2, 250, "", "", i)
        write_stats(stats, {}, now)

    flush(3)
    assert delivered_total(now) == 3
    flush(2)  # a worker that stalled for hours writes at last
    assert 3 <= delivered_total(now) <= 5  # the old hours' sum may be kept for the hour
    # ... in the cache that SMTPRELAY["CACHE_ALIAS"] names, which the workers share.
    sealed = f"smtprelay:totals:attempts:{hour_of(now - timedelta(hours=2)):%Y%m%d%H}"
    assert totals_cache.get(sealed)[("r", "delivered")][0] == 3  # count, seconds, buckets
    assert delivered_total(now + timedelta(hours=1)) == 5
    assert delivered_total(now + timedelta(hours=1, minutes=30)) == 5
