"""The django-health-check plugin, through django-health-check's own view."""

from __future__ import annotations

import importlib
import json
import sys
from datetime import timedelta

import pytest
from django.core.mail import EmailMessage, send_mail
from django.urls import path
from django.utils import timezone

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.health.circuit import close_now
from django_smtprelay.models import Message, RouteHealth

health_check_base = pytest.importorskip(
    "health_check.base",
    reason="needs django-health-check (the test extra installs it): pip install -e '.[test]'",
)
if not hasattr(health_check_base, "HealthCheck"):
    pytest.skip(
        "needs django-health-check 4.0 or later (3.x has another plugin API)",
        allow_module_level=True,
    )

from health_check.views import HealthCheckView  # noqa: E402

from django_smtprelay.contrib.health_check import MailQueue  # noqa: E402

urlpatterns = [
    path(
        "ht/", HealthCheckView.as_view(checks=["django_smtprelay.contrib.health_check.MailQueue"])
    ),
    path(
        "ht-strict/",
        HealthCheckView.as_view(checks=[(MailQueue, {"max_queued_age": timedelta(seconds=30)})]),
    ),
]

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


def check(client, url: str = "/ht/") -> tuple[int, str]:
    response = client.get(url, {"format": "json"})
    (result,) = json.loads(response.content).values()
    return response.status_code, result


def age(message: Message, minutes: int) -> None:
    """As if ``message`` had been queued and due ``minutes`` ago, with no worker since."""
    then = timezone.now() - timedelta(minutes=minutes)
    Message.objects.filter(pk=message.pk).update(created_at=then, next_attempt_at=then)


def test_a_queue_that_is_delivered_is_healthy(client, smtp_server, make_route):
    relay = smtp_server()
    make_route(relay, name="only")
    send_mail("S", "B", "from@example.com", ["a@example.com"])
    DeliveryEngine().run()
    send_mail("S", "B", "from@example.com", ["just-queued@example.com"])
    assert check(client) == (200, "OK")


def test_a_due_message_waiting_past_the_limit_makes_it_unhealthy(client, make_route):
    make_route(port=25, name="only")
    send_mail("S", "B", "from@example.com", ["a@example.com"])
    age(Message.objects.get(), minutes=20)  # the default limit is 15 minutes
    status, text = check(client)
    assert status == 500
    assert "Unavailable: a due message has waited 1200 s for a worker (limit 900 s)" in text
    # The site's own limit, given to the check.
    age(Message.objects.get(), minutes=1)
    assert check(client) == (200, "OK")
    status, text = check(client, "/ht-strict/")
    assert status == 500 and "(limit 30 s)" in text


def test_mail_scheduled_for_later_does_not_count_as_waiting(client, make_route, settings):
    make_route(port=25, name="only")
    message = EmailMessage("S", "B", "from@example.com", ["a@example.com"])
    message.smtprelay_send_at = timezone.now() + timedelta(hours=1)
    message.send()
    # Queued long ago for a time still to come.
    Message.objects.update(created_at=timezone.now() - timedelta(days=1))
    assert check(client) == (200, "OK")


def test_every_enabled_routes_circuit_open_makes_it_unhealthy(
    client, make_route, refused_port, smtp_server, settings
):
    settings.SMTPRELAY = {**settings.SMTPRELAY, "BREAKER_FAILURE_THRESHOLD": 1}
    make_route(port=refused_port, name="relay-a", password="pw-never-shown")
    make_route(port=refused_port, name="relay-b")
    make_route(smtp_server(), name="relay-off", enabled=False)  # takes no traffic
    send_mail("S", "B", "from@example.com", ["a@example.com"])
    DeliveryEngine().run()  # both refuse the connection: both circuits open
    assert set(RouteHealth.objects.values_list("route_name", "state")) == {
        ("relay-a", "open"),
        ("relay-b", "open"),
    }
    status, text = check(client)
    assert status == 500
    assert "every enabled route's circuit is open: relay-a (" in text and "relay-b (" in text
    assert "relay-off" not in text and "pw-never-shown" not in text
    # One route back is enough.
    close_now(["relay-b"], "closed by hand", timezone.now())
    assert check(client) == (200, "OK")


def test_no_enabled_route_makes_it_unhealthy(client, make_route, settings):
    settings.SMTPRELAY = {**settings.SMTPRELAY, "USE_DJANGO_EMAIL_SETTINGS": False}
    make_route(port=25, name="off", enabled=False)
    status, text = check(client)
    assert status == 500 and "no route is enabled" in text


def test_without_routes_the_sites_email_settings_are_the_route(client):
    # tests.settings: EMAIL_HOST is the route while no Route row is enabled.
    assert check(client) == (200, "OK")


def test_without_django_health_check_the_import_says_what_to_install(monkeypatch):
    for name in [m for m in sys.modules if m.split(".")[0] == "health_check"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "django_smtprelay.contrib.health_check")
    with pytest.raises(ImportError, match=r'pip install "django-health-check>=4"'):
        importlib.import_module("django_smtprelay.contrib.health_check")
