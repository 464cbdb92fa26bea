"""The app's own URLs, outside the admin. A site includes them under a prefix:

path("smtprelay/", include("django_smtprelay.urls")),

``metrics/``: the Prometheus metrics (see README, "Monitoring").
``webhooks/<route>/tracking/`` and ``webhooks/<route>/inbound/``: each ESP
route's webhooks (see README, "After the relay said yes").
"""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from . import views
from .tracking.views import inbound_webhook, tracking_webhook

app_name = "django_smtprelay"

urlpatterns: list[URLPattern | URLResolver] = [
    path("metrics/", views.metrics, name="metrics"),
    path("webhooks/<slug:route>/tracking/", tracking_webhook, name="tracking_webhook"),
    path("webhooks/<slug:route>/inbound/", inbound_webhook, name="inbound_webhook"),
]
