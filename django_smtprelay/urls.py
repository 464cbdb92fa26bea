"""The app's own URLs, outside the admin. A site includes them under a prefix:

path("smtprelay/", include("django_smtprelay.urls")),

``metrics/``: the Prometheus metrics (see README, "Monitoring").
"""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from . import views

app_name = "django_smtprelay"

urlpatterns: list[URLPattern | URLResolver] = [
    path("metrics/", views.metrics, name="metrics"),
]
