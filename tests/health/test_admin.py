"""Route health in the admin: state with its reason, score with its reason, close now."""

from datetime import timedelta

import pytest

from django_smtprelay.health import BreakerPolicy, CircuitBreaker
from django_smtprelay.models import RouteHealth
from tests.health.conftest import T0

pytestmark = pytest.mark.django_db

URL = "/admin/django_smtprelay/routehealth/"


def test_the_list_shows_state_reason_and_score(admin_client, health_cache):
    breaker = CircuitBreaker("relay-a", BreakerPolicy(failure_threshold=1))
    breaker.record_fault("535 5.7.8 authentication failed", T0)
    RouteHealth.objects.create(route_name="relay-b", score=0.39, score_reason="success 62% vs 99%")
    page = admin_client.get(URL).content.decode()
    assert "Open: not sending" in page and "535 5.7.8 authentication failed" in page
    assert "0.39" in page and "success 62% vs 99%" in page
    row = RouteHealth.objects.get(route_name="relay-a")
    detail = admin_client.get(f"{URL}{row.pk}/change/")
    assert detail.status_code == 200 and b"authentication failed" in detail.content
    assert admin_client.get(f"{URL}add/").status_code == 403


def test_close_circuit_now(admin_client, admin_user, health_cache):
    breaker = CircuitBreaker("relay-a", BreakerPolicy(failure_threshold=1))
    breaker.record_fault("timed out", T0)
    assert not breaker.allow(T0 + timedelta(seconds=1))
    row = RouteHealth.objects.get()
    response = admin_client.post(
        URL, {"action": "close_circuits", "_selected_action": [row.pk]}, follow=True
    )
    assert b"1 circuit closed." in response.content
    row.refresh_from_db()
    assert row.state == "closed" and row.reason == f"closed in the admin by {admin_user.username}"
    assert breaker.allow(T0 + timedelta(seconds=2))
