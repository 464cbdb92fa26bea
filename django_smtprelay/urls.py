"""The app's own URLs, outside the admin. A site includes them under a prefix:

path("smtprelay/", include("django_smtprelay.urls")),

Each route with an ESP has its webhook URLs here (see django_smtprelay.tracking).
"""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from .tracking.views import inbound_webhook, tracking_webhook

app_name = "django_smtprelay"

urlpatterns: list[URLPattern | URLResolver] = [
    path("webhooks/<slug:route>/tracking/", tracking_webhook, name="tracking_webhook"),
    path("webhooks/<slug:route>/inbound/", inbound_webhook, name="inbound_webhook"),
]
