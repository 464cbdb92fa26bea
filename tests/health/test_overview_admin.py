"""The Route health page: every route, its circuit, score and rate limits; it writes nothing."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.cache.backends.locmem import LocMemCache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_smtprelay.health import BreakerPolicy, CircuitBreaker, RateLimits, RouteHealthService
from django_smtprelay.models import Route, RouteHealth

pytestmark = pytest.mark.django_db

URL = "/admin/django_smtprelay/routehealth/"


def route(name: str, **fields: object) -> Route:
    values = {"host": "127.0.0.1", "port": 2525, "priority": 10, **fields}
    return Route.objects.create(name=name, **values)


def row_of(page: str, name: str) -> str:
    """The text of the table row of route ``name``, tags stripped."""
    rows = re.findall(r"<tr class=\"row[12][^\"]*\">(.*?)</tr>", page, re.S)
    (found,) = [r for r in rows if f">{name}<" in r]
    return " ".join(re.sub(r"<[^>]+>", " ", found).split())


def get_page(admin_client) -> str:
    response = admin_client.get(URL)
    assert response.status_code == 200
    return response.content.decode()


def test_every_route_is_listed_before_anything_happened(admin_client, health_cache):
    route("relay-a", priority=1)
    route("relay-b", priority=2, enabled=False)
    page = get_page(admin_client)
    assert not RouteHealth.objects.exists()
    a, b = row_of(page, "relay-a"), row_of(page, "relay-b")
    assert "enabled, priority 1" in a and "Closed" in a and "sending" in a
    assert "too few to judge" in a and "no limit" in a
    assert "disabled, priority 2" in b and "the route is disabled" in b
    assert page.index(">relay-a<") < page.index(">relay-b<")
    # A per-process cache cannot show the workers' counts: the page says so.
    assert ("LocMemCache" in page) == isinstance(health_cache, LocMemCache)


def test_an_open_circuit_shows_why_and_until_when(admin_client, health_cache):
    route("relay-a")
    route("relay-b")
    now = timezone.now()
    health = RouteHealthService(policy=BreakerPolicy(failure_threshold=2))
    for _ in range(2):
        health.after_result("relay-a", "route_fault", reason="535 5.7.8 bad credentials", now=now)
    page = get_page(admin_client)
    a, b = row_of(page, "relay-a"), row_of(page, "relay-b")
    until = timezone.localtime(now + timedelta(minutes=2))
    assert "Open: not sending" in a
    assert f"not sending until {until:%H:%M:%S}" in a
    assert "2 route faults in a row; last: 535 5.7.8 bad credentials" in a
    assert "Close circuit now" in a and "Close circuit now" not in b
    assert "Closed" in b


def test_a_closed_circuit_counts_the_faults_so_far(admin_client, health_cache):
    route("relay-a")
    CircuitBreaker("relay-a").record_fault("timed out", timezone.now())
    assert "1 route fault in a row so far" in row_of(get_page(admin_client), "relay-a")


def test_the_score_says_why_against_the_peers(admin_client, health_cache):
    route("relay-a", priority=1)
    route("relay-b", priority=1)
    route("relay-c", priority=2)
    now = timezone.now()
    scores = RouteHealthService().scores
    scores.record_many("relay-a", 100, 62, 100 * 0.02, now)
    scores.record_many("relay-b", 100, 99, 100 * 0.02, now)
    scores.record_many("relay-c", 100, 10, 100 * 0.02, now)
    page = get_page(admin_client)
    a, b, c = (row_of(page, n) for n in ("relay-a", "relay-b", "relay-c"))
    assert "0.39" in a and "success 62% vs peers 99%" in a
    assert "1.00" in b and "on par with peers" in b
    # relay-c is alone at its priority: nothing to compare with.
    assert "no peer to compare with" in c
    assert not RouteHealth.objects.exists()  # scores are shown, not saved, by a page view


def test_rate_limits_show_what_is_used_and_a_slow_down(admin_client, health_cache, relay_settings):
    relay_settings(THROTTLE_FACTOR=0.5, THROTTLE_SECONDS=300)
    route("relay-a", max_per_minute=10, max_connections=2)
    now = timezone.now().replace(second=1)
    health = RouteHealthService()
    limits = RateLimits(per_minute=10, max_connections=2)
    for _ in range(3):
        assert health.before_send("relay-a", limits, now) == 0
    slot = health.open_session("relay-a", limits, now)
    health.after_result(
        "relay-a", "route_fault", True, reason="421 4.7.0 slow down", now=now, limits=limits
    )
    try:
        a = row_of(get_page(admin_client), "relay-a")
    finally:
        health.close_session(slot)
    assert "10/min, 2 connections" in a
    assert "1/2 connections open" in a
    assert "slowed x0.5 (5/min, 1 connections) until" in a and "421 4.7.0 slow down" in a


def test_the_django_settings_route_is_listed_while_no_route_is_enabled(
    admin_client, health_cache, relay_settings
):
    route("relay-b", enabled=False)
    page = get_page(admin_client)
    assert "Django&#x27;s EMAIL_* settings: used while no route is enabled" in page
    assert "Closed" in row_of(page, "django-settings")
    relay_settings(USE_DJANGO_EMAIL_SETTINGS=False)
    assert ">django-settings<" not in get_page(admin_client)


def test_a_page_view_writes_no_row(admin_client, health_cache):
    route("relay-a")
    route("relay-b")
    now = timezone.now()
    health = RouteHealthService(policy=BreakerPolicy(failure_threshold=1))
    health.after_result("relay-a", "route_fault", reason="timed out", now=now)
    scores = health.scores
    scores.record_many("relay-a", 20, 10, 1.0, now)
    scores.record_many("relay-b", 20, 20, 1.0, now)
    before = list(RouteHealth.objects.values())
    with CaptureQueriesContext(connection) as queries:
        get_page(admin_client)
    writes = [
        q["sql"]
        for q in queries
        if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
        and "smtprelay" in q["sql"]
    ]
    assert writes == []
    assert list(RouteHealth.objects.values()) == before
