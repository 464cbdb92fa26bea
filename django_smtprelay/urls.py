"""The app's own URLs, outside the admin. A site includes them under a prefix:

path("smtprelay/", include("django_smtprelay.urls")),
"""

from __future__ import annotations

from django.urls import URLPattern, URLResolver

app_name = "django_smtprelay"

urlpatterns: list[URLPattern | URLResolver] = []
