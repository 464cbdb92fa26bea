"""The routes list's "last 24 h" column comes from the hourly statistics, not
from a join over every attempt a route ever made."""

from datetime import timedelta

import pytest
from django.core.mail import send_mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.delivery.stats import hour_of
from django_smtprelay.models import DeliveryStat

pytestmark = pytest.mark.django_db

URL = "/admin/django_smtprelay/route/"


def test_the_last_24_hours_of_each_route(admin_client, smtp_server, make_route):
    route = make_route(smtp_server(), name="primary")
    idle = make_route(smtp_server(), name="idle")
    send_mail("Hello", "Body", "from@example.com", ["to@example.com"])
    DeliveryEngine().run()
    now = timezone.now()
    DeliveryStat.objects.create(
        hour=hour_of(now), route_name=route.name, outcome="route_fault", count=1
    )
    # Older than the window: not counted.
    DeliveryStat.objects.create(
        hour=hour_of(now - timedelta(hours=26)), route_name=route.name, outcome="delivered", count=7
    )
    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(URL)
    cells = {
        r.name: response.context["cl"].model_admin.health_24h(r)
        for r in response.context["cl"].result_list
    }
    assert cells == {"primary": "1/2 ok (50%)", idle.name: "-"}
    assert not any("deliveryattempt" in q["sql"] for q in captured.captured_queries)
