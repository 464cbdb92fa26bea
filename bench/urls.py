"""URLs of the benchmark's admin-at-scale process (``BENCH_ADMIN=1``)."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
